"""Plain progress lines without a terminal: paced by time and by fraction (a fake clock), a heartbeat, the run log."""

from __future__ import annotations

import io
import logging
import time

import pytest
from rich.console import Console

from framework.pipeline import progress as progress_module
from framework.pipeline.progress import INTERVAL_ENV, Pacer, Progress, format_seconds, interval_from_env


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain_console() -> tuple[Console, io.StringIO]:
    """A console that is not a terminal, and what it printed."""
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=80), out


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_pacer_is_due_after_the_interval_without_any_new_tenth() -> None:
    pacer = Pacer(interval=30, started=0.0)
    assert not pacer.due(done=5, total=1000, now=29.9)
    assert pacer.due(done=5, total=1000, now=30.0)
    pacer.mark(done=5, total=1000, now=30.0)
    assert not pacer.due(done=9, total=1000, now=59.9)
    assert pacer.due(done=9, total=1000, now=60.0)


def test_pacer_is_due_on_each_new_tenth_but_not_twice_within_the_minimum_gap() -> None:
    pacer = Pacer(interval=30, started=0.0, min_gap=1.0)
    assert not pacer.due(done=9, total=100, now=5.0)
    assert pacer.due(done=10, total=100, now=5.0)
    pacer.mark(done=10, total=100, now=5.0)
    assert not pacer.due(done=19, total=100, now=9.0), "still in the same tenth"
    assert not pacer.due(done=20, total=100, now=5.5), "a new tenth, but 0.5 s after the last line"
    assert pacer.due(done=20, total=100, now=6.0)
    pacer.mark(done=35, total=100, now=6.0)
    assert not pacer.due(done=39, total=100, now=8.0), "35 reported the fourth tenth already"
    assert pacer.due(done=40, total=100, now=8.0)


def test_pacer_without_a_total_is_paced_by_time_only() -> None:
    pacer = Pacer(interval=30, started=0.0)
    assert not pacer.due(done=10**6, total=None, now=29.0)
    assert pacer.due(done=10**6, total=None, now=30.0)


def test_pacer_with_interval_zero_is_always_due() -> None:
    pacer = Pacer(interval=0, started=0.0)
    assert pacer.min_gap == 0
    assert pacer.due(done=0, total=None, now=0.0)


def test_a_bar_prints_a_line_every_interval_and_every_tenth_with_rate_and_eta() -> None:
    console, out = plain_console()
    clock = FakeClock()
    progress = Progress(console, interval=30, clock=clock)
    bar = progress.task("train: epoch 1/2", 200, unit="steps")
    printed_at = []
    for step in range(1, 201):
        clock.now += 0.5  # 2 steps/s: a tenth (20 steps) takes 10 s, less than the interval
        bar.note(f"loss {1 / step:.4f}")
        before = len(lines(out))
        bar(1)
        if len(lines(out)) > before:
            printed_at.append(step)
    assert printed_at == [20, 40, 60, 80, 100, 120, 140, 160, 180, 200]
    first = "train: epoch 1/2 · 20/200 steps (10%) · 2.00 steps/s · elapsed 10.0 s · ETA 1m 30s · loss 0.0500"
    assert lines(out)[0] == first
    assert lines(out)[-1].startswith("train: epoch 1/2 · 200/200 steps (100%) · 2.00 steps/s · elapsed 1m 40s · ETA")


def test_a_slow_bar_prints_every_interval_between_tenths() -> None:
    console, out = plain_console()
    clock = FakeClock()
    progress = Progress(console, interval=30, clock=clock)
    bar = progress.task("evaluate: test split", 100)
    printed_at = []
    for row in range(1, 21):
        clock.now += 12.0  # a tenth takes 120 s: the 30 s interval comes first
        before = len(lines(out))
        bar(1)
        if len(lines(out)) > before:
            printed_at.append((row, clock.now - 1000.0))
    assert printed_at == [(3, 36.0), (6, 72.0), (9, 108.0), (10, 120.0), (13, 156.0), (16, 192.0), (19, 228.0),
                          (20, 240.0)]  # fmt: skip
    assert lines(out)[0] == "evaluate: test split · 3/100 rows (3%) · 0.08 rows/s · elapsed 36.0 s · ETA 19m 24s"


def test_a_note_alone_prints_nothing_but_shows_in_the_next_line() -> None:
    console, out = plain_console()
    clock = FakeClock()
    bar = Progress(console, interval=30, clock=clock).task("generate: llm", 50)
    clock.now += 100
    bar.note("3 rows · 0 failed records · 4 in flight")
    assert out.getvalue() == ""
    bar(3)
    assert lines(out) == [
        "generate: llm · 3/50 rows (6%) · 0.03 rows/s · elapsed 1m 40s · ETA 26m 07s · "
        "3 rows · 0 failed records · 4 in flight"
    ]


def test_heartbeat_repeats_an_idle_bar_and_says_the_stage_is_still_working_without_one() -> None:
    console, out = plain_console()
    clock = FakeClock()
    progress = Progress(console, label="export", interval=30, clock=clock)
    assert progress.tick() == 30
    clock.now += 29
    assert progress.tick() == pytest.approx(1) and out.getvalue() == ""
    clock.now += 1
    progress.tick()
    assert lines(out) == ["export: still working · elapsed 30.0 s"]
    bar = progress.task("calibrate: eval logits", 1000)
    clock.now += 30
    progress.tick()
    assert lines(out)[-1] == "calibrate: eval logits · 0/1,000 rows (0%) · no rows yet · elapsed 30.0 s · ETA unknown"
    clock.now += 5
    bar(1000)
    assert lines(out)[-1].startswith("calibrate: eval logits · 1,000/1,000 rows (100%) · 28.6 rows/s · elapsed 35.0 s")
    clock.now += 29
    progress.tick()
    assert len(lines(out)) == 3, "the bar is finished and printed 29 s ago: nothing is due yet"
    clock.now += 1
    progress.tick()
    assert lines(out)[-1] == "export: still working · elapsed 1m 35s"


def test_heartbeat_drops_a_bar_without_total_once_it_stops_moving() -> None:
    """A ``read:`` bar has no total, so nothing says it is done: once it stops, the stage is "still working"."""
    console, out = plain_console()
    clock = FakeClock()
    progress = Progress(console, label="generate", interval=30, clock=clock)
    bar = progress.task("read: train", None)
    clock.now += 20
    bar(5000)
    clock.now += 20
    progress.tick()
    assert lines(out)[-1].startswith("read: train · 5,000 rows · "), "moved 20 s ago: still its line"
    clock.now += 30
    progress.tick()
    assert lines(out)[-1] == "generate: still working · elapsed 1m 10s"
    clock.now += 30
    progress.tick()
    assert lines(out)[-1] == "generate: still working · elapsed 1m 40s"
    assert sum(line.startswith("read: train") for line in lines(out)) == 1


def test_heartbeat_thread_speaks_while_nothing_advances(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "MIN_GAP", 0.05)
    console, out = plain_console()
    with Progress(console, label="export", interval=0.05):
        deadline = time.monotonic() + 5
        while "export: still working" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert lines(out)[0].startswith("export: still working · elapsed 0.")


def test_plain_lines_reach_the_run_log(caplog: pytest.LogCaptureFixture) -> None:
    console, _ = plain_console()
    clock = FakeClock()
    bar = Progress(console, interval=30, clock=clock).task("split", 10)
    with caplog.at_level(logging.INFO, logger="intentcraft"):
        clock.now += 2
        bar(10)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("intentcraft", logging.INFO, "split · 10/10 rows (100%) · 5.00 rows/s · elapsed 2.0 s · ETA 0.0 s")
    ]


def test_a_terminal_gets_rich_bars_and_no_plain_lines(caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80)
    with caplog.at_level(logging.INFO, logger="intentcraft"), Progress(console, interval=0) as progress:
        assert not progress.plain
        bar = progress.task("train: epoch 1/1", 4, unit="steps")
        for _ in range(4):
            bar(1)
    assert "steps/s" not in out.getvalue() and not caplog.records


def test_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert interval_from_env() == 30.0
    for value, expected in (("0", 0.0), ("2.5", 2.5), ("-1", 30.0), ("soon", 30.0), ("nan", 30.0), ("inf", 30.0)):
        monkeypatch.setenv(INTERVAL_ENV, value)
        assert interval_from_env() == expected, value
    monkeypatch.setenv(INTERVAL_ENV, "7")
    assert Progress(plain_console()[0]).interval == 7.0


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.04, "0.0 s"), (12.34, "12.3 s"), (59.94, "59.9 s"), (185, "3m 05s"), (3725, "1h 02m")]
)
def test_format_seconds(seconds: float, shown: str) -> None:
    assert format_seconds(seconds) == shown
