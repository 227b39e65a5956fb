"""rich progress bars for long stages (quiet when output is not a terminal)."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
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
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )

    def __enter__(self) -> Progress:
        self._bars.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._bars.stop()

    def task(self, description: str, total: int | None) -> Callable[[int], None]:
        """Add a bar; the returned function advances it by ``n``."""
        task_id = self._bars.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            self._bars.advance(task_id, n)

        return advance
