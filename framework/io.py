"""File helpers: atomic writes, JSONL, checksums, atomic directory publication.

A killed run must never leave a file that a later run trusts. Single files are written to a
temporary sibling and renamed into place; whole stage directories are built under a temporary
name and renamed once complete (rename is atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from framework.errors import UserInputError


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


FILE_MODE = 0o666
"""Mode of every file written: the kernel takes the umask away (0644 under the usual umask 022), as for ``open``."""
_TEMP_TRIES = 100


def special_kind(mode: int) -> str | None:
    """What a file of this ``st_mode`` is when it is not a regular file, or None for a regular file."""
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), None if stat.S_ISREG(mode) else "a special file")


def refuse_unsafe_target(path: Path, label: str = "", fix: str = "") -> None:
    """Raise ``UserInputError`` unless ``path`` is absent or a regular file that an atomic write may replace.

    A rename over a symlink, directory, device, FIFO or socket would replace that thing itself (or fail),
    so such a path is refused before anything is written. ``label`` names the option that gave the path;
    ``fix`` replaces the default advice.
    """
    path = Path(path)
    try:
        kind = special_kind(os.lstat(path).st_mode)
    except FileNotFoundError:
        return
    except OSError as exc:  # e.g. a parent that is a file: /dev/null/x
        raise _write_error(path, label, exc) from None
    if kind is None:
        return
    what = f"{label} {path}" if label else str(path)
    advice = fix or "Give the path of a regular file: a new name, or a file intentcraft may replace"
    if kind == "a symbolic link" and not fix:
        advice += f" (to write where the link points, give that path: {os.path.realpath(path)})"
    raise UserInputError(
        f"cannot write {what}: it is {kind}, not a regular file. intentcraft writes a complete temporary file beside "
        f"the target and renames it over the target, so the target must be a regular file or not exist. {advice}."
    )


def _write_error(path: Path, label: str, exc: OSError) -> UserInputError:
    """One paragraph for an ``OSError`` met while preparing or finishing a write to ``path``."""
    what = f"{label} {path}" if label else str(path)
    reason = exc.strerror or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    return UserInputError(
        f"cannot write {what}: {reason}{where}. Give a path whose parent is a directory you can write "
        "(it is created when missing), on a filesystem with free space."
    )


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, empty sibling of ``path`` opened for writing, with :data:`FILE_MODE` (less the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMP_TRIES):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


def _prepare(path: Path) -> tuple[int, Path]:
    """Check the target, create its directory and open a temporary sibling; OS errors become one paragraph."""
    refuse_unsafe_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _create_temp(path)
    except OSError as exc:
        raise _write_error(path, "", exc) from None


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path`` atomically.

    Readers see the old file or the whole new one, never a torn write; on error nothing changes. The
    target must be absent or a regular file (see :func:`refuse_unsafe_target`); the new file gets
    :data:`FILE_MODE` less the umask, like any file a program creates.

    Raises:
        UserInputError: the target is a symlink, directory or special file, or its directory cannot be
            created or written.
    """
    path = Path(path)
    fd, tmp = _prepare(path)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        refuse_unsafe_target(path)  # again: it may have changed while the file was written
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_error(path, "", exc) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Atomic UTF-8 text write."""
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_canonical(obj: Any) -> str:
    """JSON with sorted keys and no whitespace variance: the basis of every fingerprint."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomic, human-readable JSON write."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Atomically write rows as JSON Lines (streamed); returns the number written."""
    count = 0
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the rows of a JSON Lines file."""
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            except RecursionError:
                raise ValueError(f"{path}:{number}: JSON nested too deeply to read") from None
            yield row


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All rows of a JSON Lines file."""
    return list(iter_jsonl(path))


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"
_STAGING_OWNER = re.compile(r"\.staging-(\d+)@([A-Za-z0-9_]+)-")


def make_staging_dir(final: Path) -> Path:
    """A fresh, empty directory beside ``final`` to build a stage's output in, named after this process.

    The name, ``.<final>.staging-<pid>@<host>-<random>``, lets another process tell a live run's staging
    directory from one left behind by a killed run (see ``remove_stale_staging``).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-{os.getpid()}@{_HOST}-", dir=final.parent))


def publish_dir(staging: Path, final: Path) -> bool:
    """Move a completed staging directory to ``final`` atomically.

    Returns False (and discards ``staging``) when ``final`` already exists (a ``--force`` rerun of a
    published stage).
    """
    try:
        os.rename(staging, final)
    except OSError:
        if final.exists():
            shutil.rmtree(staging, ignore_errors=True)
            return False
        raise
    _fsync_dir(final.parent)
    return True


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
