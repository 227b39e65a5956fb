"""Run a command with a time limit and write its exit code and peak memory to a file.

``python _measure.py TIMEOUT REPORT CMD...``. The command is started from this small process, so its peak
resident memory (``ru_maxrss``, which on Linux keeps the high-water mark of the process it was forked from)
is its own, not that of a test runner that has imported torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def main() -> None:
    """Start CMD, kill it past TIMEOUT seconds, write ``<exit code> <peak RSS in KiB>`` to REPORT."""
    timeout, report, command = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
    child = subprocess.Popen(command)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            child.kill()
            _, status, usage = os.wait4(child.pid, 0)
            break
        time.sleep(0.02)
    with open(report, "w") as handle:
        handle.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}\n")


if __name__ == "__main__":
    main()
