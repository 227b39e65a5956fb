"""rich progress bars for long stages (quiet when output is not a terminal)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

STDERR = Console(stderr=True)


class Progress:
    """A set of progress bars; ``task()`` returns the callback that advances one bar."""

    def __init__(self, console: Console | None = None) -> None:
        console = console or STDERR
        self._bars = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )

    def __enter__(self) -> Progress:
        self._bars.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._bars.stop()

    def task(self, description: str, total: int | None) -> Bar:
        """Add a bar; calling the returned ``Bar`` advances it by ``n``."""
        return Bar(self._bars, self._bars.add_task(description, total=total, note=""))


class Bar:
    """One progress bar: ``bar(n)`` advances it, ``bar.note("loss 0.12")`` shows live figures beside it."""

    def __init__(self, bars: RichProgress, task_id: TaskID) -> None:
        self._bars, self._task_id = bars, task_id

    def __call__(self, n: int = 1) -> None:
        self._bars.advance(self._task_id, n)

    def note(self, text: str) -> None:
        """Replace the text shown after the bar."""
        self._bars.update(self._task_id, note=text)
