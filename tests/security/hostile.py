"""Run the real CLI against hostile input and check that it is refused cleanly.

Every hostile case must: exit 2, print one error paragraph that names the offending key (no traceback),
execute nothing, write nothing outside the run's output directory, and finish within a time and memory limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TIME_LIMIT_S = 60.0
MEMORY_LIMIT_MB = 1500.0
MEASURE = Path(__file__).with_name("_measure.py")


@dataclass(frozen=True)
class Outcome:
    """What a CLI child did: exit code, both streams, wall time and peak resident memory."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float


def run_limited(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = TIME_LIMIT_S, stdin: str = ""
) -> Outcome:
    """Run ``python -m framework ARGS`` and measure its wall time and peak memory (killed at ``timeout``).

    The CLI is started by ``_measure.py``, a small process of its own: a child forked straight from this test
    process would report this process's memory (torch included) as its own peak.
    """
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report"
        command = [sys.executable, str(MEASURE), str(timeout), str(report), sys.executable, "-m", "framework", *args]
        done = subprocess.run(
            command, cwd=cwd, env=full_env, input=stdin, capture_output=True, text=True, timeout=timeout + 30
        )
        returncode, rss_kib = (int(part) for part in report.read_text().split())
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return Outcome(returncode, done.stdout, done.stderr, seconds, rss_kib / 1024)


def snapshot(root: Path) -> set[str]:
    """Every path under ``root`` (files, links and folders), relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_refused(outcome: Outcome, *needles: str, limit_s: float = TIME_LIMIT_S) -> None:
    """Exit 2, no traceback, an ``error:`` paragraph that contains every needle, within the time limit."""
    text = outcome.stdout + outcome.stderr
    assert outcome.returncode == 2, f"exit {outcome.returncode} after {outcome.seconds:.1f}s\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    assert "\nerror:" in "\n" + outcome.stderr, outcome.stderr[-3000:]  # (a library's warning may come first)
    for needle in needles:
        assert needle in outcome.stderr, f"{needle!r} not in:\n{outcome.stderr[-3000:]}"
    assert outcome.seconds < limit_s, f"took {outcome.seconds:.1f}s"
    assert outcome.max_rss_mb < MEMORY_LIMIT_MB, f"peak memory {outcome.max_rss_mb:.0f} MB"
