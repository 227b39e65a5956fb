"""Stage directories shared by several processes: per-process staging names, stale-staging clean-up and the
per-stage lock (an ``flock`` on ``<stage dir>.lock`` holding the holder's pid).

Several runs may share one ``outputs/``: a stage is computed under its lock, built in a staging directory
named after its process, and published with an atomic rename (``framework.io.publish_dir``). A process never
deletes another live process's staging directory, and the OS drops a killed holder's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"
_STAGING_OWNER = re.compile(r"\.staging-(\d+)@([A-Za-z0-9_]+)-")


def make_staging_dir(final: Path) -> Path:
    """A fresh, empty directory beside ``final`` to build a stage's output in, named after this process.

    The name, ``.<final>.staging-<pid>@<host>-<random>``, lets another process tell a live run's staging
    directory from one left behind by a killed run (see ``remove_stale_staging``).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-{os.getpid()}@{_HOST}-", dir=final.parent))


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _staging_owner_gone(name: str, held: str | None) -> bool:
    if held is not None and name.startswith(f".{held}.staging-"):
        return True  # the caller holds this name's lock, so no other process is writing it
    owner = _STAGING_OWNER.search(name)
    return owner is not None and owner[2] == _HOST and not pid_alive(int(owner[1]))


def remove_stale_staging(parent: Path, held: str | None = None) -> int:
    """Delete the staging directories in ``parent`` whose owner is gone; returns how many were removed.

    An owner is gone when the caller holds the lock of the name the staging directory is for (``held``, see
    ``stage_lock``), or when the pid in its name is no longer alive on this host. Another live process's
    staging directory, or one from another host, is never touched.
    """
    removed = 0
    if parent.is_dir():
        for child in parent.iterdir():
            if child.is_dir() and ".staging-" in child.name and _staging_owner_gone(child.name, held):
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
    return removed


def lock_path(final: Path) -> Path:
    """The lock file of a directory: ``<final>.lock`` beside it."""
    return final.with_name(f"{final.name}.lock")


def lock_holder(final: Path) -> int | None:
    """The pid of the live process (not this one) holding ``final``'s lock, read from the lock file; never blocks.

    A killed holder's pid stays in the file but its process is gone, so it is not reported. Reads the file
    only: the lock itself is not taken.
    """
    try:
        text = lock_path(final).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    pid = int(text) if text.isdigit() else 0
    return pid if pid != os.getpid() and pid_alive(pid) else None


def _holder_soon(final: Path, tries: int = 10) -> int | None:
    """The lock's holder, allowing it a moment to write its pid after taking the lock."""
    for _ in range(tries):
        if (pid := lock_holder(final)) is not None:
            return pid
        time.sleep(0.02)
    return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _acquire(path: Path, on_wait: Callable[[], None]) -> int:
    """Open ``path`` and ``flock`` it, calling ``on_wait()`` once if that means waiting for another process.

    A holder removes the file before it lets go, so a lock won on a file no longer at ``path`` is given up and
    taken again on the current one: two processes never both hold "the" lock.
    """
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    waited = True
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def stage_lock(final: Path, on_wait: Callable[[int | None], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<final>.lock``, with this process's pid written in it, for the block.

    When another process holds it, ``on_wait(its pid, or None if unknown)`` is called once and the call waits
    until the lock is free, however long that takes (Ctrl-C interrupts the wait). The OS releases the lock of a
    process that dies, so a killed run never blocks the next (its file stays, naming a dead pid). On release
    the file is removed, so the cache holds lock files only for stages being computed.
    """
    path = lock_path(final)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, lambda: on_wait(_holder_soon(final)) if on_wait is not None else None)
    try:
        os.ftruncate(fd, 0)  # a killed holder's pid may be in it
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # still holding the lock: a waiter on this file then finds it gone and opens a new one
        os.close(fd)  # closing the descriptor releases the lock
