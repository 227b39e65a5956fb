"""Progress of long stages: live rich bars in a terminal, plain rate-limited lines elsewhere (CI, nohup, a pipe).

Without a terminal a bar prints a line (done/total, rate, elapsed, ETA and its note) at least every
``interval`` seconds (``INTENTCRAFT_PROGRESS_INTERVAL``, default 30) and each time it crosses another tenth of
its total, and a stage with no bar moving says it is still working. Lines go where ``say()`` sends them: stderr
and the run log.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

STDERR = Console(stderr=True)
LOG = logging.getLogger("intentcraft")
INTERVAL_ENV = "INTENTCRAFT_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0  # seconds between plain lines at most, while work goes on
DIVISIONS = 10  # a plain line each time a bar crosses another tenth of its total...
MIN_GAP = 1.0  # ...unless the last line is younger than this (fast loops stay quiet)
MIN_TICK = 0.05  # the heartbeat thread never wakes more often than this

Clock = Callable[[], float]


def say(message: str, console: Console | None = None, markup: bool = True) -> None:
    """A line for the user (stderr unless ``console``, beside the progress bars) and for the run log."""
    (console or STDERR).print(message, highlight=False, markup=markup, soft_wrap=True)
    LOG.info(message)


def format_seconds(seconds: float) -> str:
    """``0.4 s``, ``12.3 s``, ``3m 05s``, ``1h 02m``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def interval_from_env(default: float = DEFAULT_INTERVAL) -> float:
    """Seconds between plain progress lines: ``INTENTCRAFT_PROGRESS_INTERVAL`` if it is a number >= 0."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, default))
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


class Pacer:
    """When a bar prints its next plain line: ``interval`` s after its last one, or when it crosses another
    ``1/divisions`` of its total, but never sooner than ``min_gap`` s after the last (``min_gap`` <= interval)."""

    def __init__(self, interval: float, started: float, divisions: int = DIVISIONS, min_gap: float = MIN_GAP) -> None:
        self.interval, self.divisions = interval, divisions
        self.min_gap = min(min_gap, interval)
        self.last = started  # when the last line was printed (or the bar started)
        self.division = 0  # the last division a line reported

    def _division(self, done: int, total: int | None) -> int:
        return done * self.divisions // total if total else 0

    def due(self, done: int, total: int | None, now: float) -> bool:
        """Whether a line is due now."""
        gap = now - self.last
        if gap >= self.interval:
            return True
        return gap >= self.min_gap and self._division(done, total) > self.division

    def mark(self, done: int, total: int | None, now: float) -> None:
        """A line was printed now."""
        self.last, self.division = now, self._division(done, total)


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


class Progress:
    """A set of progress bars; ``task()`` returns the callback that advances one bar.

    With a terminal (``console.is_terminal``) the bars are rich's live bars. Otherwise each bar prints plain
    lines paced by a ``Pacer``, and while the progress is entered a heartbeat thread keeps a line coming at
    least every ``interval`` seconds, naming the bar last moved or, with none moving, ``label`` (the stage).
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        label: str = "",
        interval: float | None = None,
        clock: Clock = time.monotonic,
        plain: bool | None = None,
    ) -> None:
        self.console = console or STDERR
        self.plain = not self.console.is_terminal if plain is None else plain
        self.label = label
        self.interval = interval_from_env() if interval is None else interval
        self.clock = clock
        self.started = self.last_line = clock()
        self.current: Bar | None = None
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._bars = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
            transient=True,
            disable=self.plain,
        )

    def __enter__(self) -> Progress:
        if self.plain:
            self._heartbeat = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)
            self._heartbeat.start()
        else:
            self._bars.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        self._bars.stop()

    def task(self, description: str, total: int | None, unit: str = "rows") -> Bar:
        """Add a bar counting ``unit``; calling the returned ``Bar`` advances it by ``n``."""
        task_id = None if self.plain else self._bars.add_task(description, total=total, note="")
        bar = Bar(self, description, total, unit, task_id)
        with self.lock:
            self.current = bar
        return bar

    def line(self, text: str, now: float) -> None:
        """Print one plain line (stderr and the run log)."""
        with self.lock:
            self.last_line = now
            say(text, self.console, markup=False)

    def tick(self) -> float:
        """Print what the heartbeat owes now; returns the seconds until the next line could be due.

        The heartbeat speaks when nothing else has for ``interval`` s (and never more than once per ``MIN_GAP`` s):
        the line of the bar last moved if it is not finished, else that the stage (``label``) is still working.
        """
        beat = max(self.interval, MIN_GAP)
        with self.lock:
            now = self.clock()
            bar = self.current
            if bar is not None and not bar.finished and not bar.idle(now, beat):
                if now - bar.pacer.last >= beat:
                    bar.print_line(now)
                return max(MIN_TICK, bar.pacer.last + beat - now)
            if now - self.last_line >= beat:
                elapsed = format_seconds(now - self.started)
                self.line(f"{self.label or 'progress'}: still working · elapsed {elapsed}", now)
            return max(MIN_TICK, self.last_line + beat - now)

    def _beat(self) -> None:
        delay = max(self.interval, MIN_GAP)
        while not self._stop.wait(delay):
            delay = self.tick()


class Bar:
    """One progress bar: ``bar(n)`` advances it, ``bar.note("loss 0.12")`` shows live figures beside it."""

    def __init__(self, progress: Progress, description: str, total: int | None, unit: str, task_id: TaskID | None):
        self._progress, self._task_id = progress, task_id
        self.description, self.total, self.unit = description, total, unit
        self.done, self.text = 0, ""
        self.started = self.moved_at = progress.clock()
        self.pacer = Pacer(progress.interval, self.started)

    @property
    def finished(self) -> bool:
        """Whether a bar with a known total has reached it."""
        return self.total is not None and self.done >= self.total

    def idle(self, now: float, seconds: float) -> bool:
        """Whether a bar without a total has not moved for ``seconds`` (it may be done: nothing says so)."""
        return self.total is None and now - self.moved_at >= seconds

    def __call__(self, n: int = 1) -> None:
        if self._task_id is not None:
            self._progress._bars.advance(self._task_id, n)
            return
        with self._progress.lock:
            self.done += n
            self.moved_at = self._progress.clock()
            self._progress.current = self
            self._maybe_line()

    def note(self, text: str) -> None:
        """Replace the text shown after the bar."""
        if self._task_id is not None:
            self._progress._bars.update(self._task_id, note=text)
            return
        with self._progress.lock:
            self.text = text  # shown by the next line; a note alone prints nothing

    def _maybe_line(self) -> None:
        now = self._progress.clock()
        if self.pacer.due(self.done, self.total, now):
            self.print_line(now)

    def print_line(self, now: float) -> None:
        """Print this bar's state as one plain line."""
        self.pacer.mark(self.done, self.total, now)
        self._progress.line(self.render(now), now)

    def render(self, now: float) -> str:
        """``desc · 120/275 steps (43%) · 3.10 steps/s · elapsed 38.7 s · ETA 50.3 s · note``."""
        elapsed = max(now - self.started, 0.0)
        if self.total:
            parts = [f"{self.done:,}/{self.total:,} {self.unit} ({100 * self.done // self.total}%)"]
        else:
            parts = [f"{self.done:,} {self.unit}"]
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts.append(f"{_rate(rate)} {self.unit}/s" if self.done else f"no {self.unit} yet")
        parts.append(f"elapsed {format_seconds(elapsed)}")
        if self.total:
            left = max(self.total - self.done, 0)
            parts.append(f"ETA {format_seconds(left / rate)}" if rate > 0 else "ETA unknown")
        if self.text:
            parts.append(self.text)
        return f"{self.description} · " + " · ".join(parts)
