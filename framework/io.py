"""File helpers: atomic writes, JSONL, checksums, atomic directory publication.

A killed run must never leave a file that a later run trusts. Single files are written to a
temporary sibling and renamed into place; whole stage directories are built under a temporary
name and renamed once complete (rename is atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
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
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
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
