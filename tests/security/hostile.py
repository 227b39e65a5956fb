"""Run the real CLI against hostile input and check that it is refused cleanly.

Every hostile case must: exit 2, print one error paragraph that names the offending key (no traceback),
execute nothing, write nothing outside the run's output directory, and finish within a time and memory limit.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TIME_LIMIT_S = 60.0
MEMORY_LIMIT_MB = 1500.0


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
    """Run ``python -m framework ARGS`` and measure its wall time and peak memory (killed at ``timeout``)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "framework", *args],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            text=True,
        )
        assert child.stdin is not None
        child.stdin.write(stdin)
        child.stdin.close()
        status, usage = _wait_with_usage(child, timeout)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    rss = usage.ru_maxrss / 1024
    return Outcome(child.returncode, stdout, stderr, seconds, rss)


def _wait_with_usage(child: subprocess.Popen, timeout: float) -> tuple[int, resource.struct_rusage]:
    """Reap ``child`` (killing it at ``timeout``) and return its wait status and resource usage."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            return status, usage
        if time.monotonic() > deadline:
            child.kill()
            _, status, usage = os.wait4(child.pid, 0)
            return status, usage
        time.sleep(0.02)


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
