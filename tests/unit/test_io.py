"""``framework.io``: atomic writers refuse what they must not replace, give files a regular mode, read JSONL safely."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from framework.errors import UserInputError
from framework.io import (
    FILE_MODE,
    atomic_open,
    atomic_write_json,
    atomic_write_text,
    iter_jsonl,
    refuse_unsafe_target,
    write_jsonl,
)


@pytest.fixture
def umask_027() -> Iterator[int]:
    """Run with umask 027 (so a file mode of 0640 proves the umask, not a fixed 0644, was applied)."""
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def char_device(tmp_path: Path) -> Path:
    """A character device that is safe to point writes at: a copy of /dev/full in ``tmp_path`` when mknod is
    allowed, else /dev/full itself (whose directory only root may change)."""
    node = tmp_path / "full"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except (PermissionError, OSError):
        return Path("/dev/full")
    return node


def test_new_and_replaced_files_get_the_regular_mode_less_the_umask(tmp_path: Path, umask_027: int) -> None:
    path = tmp_path / "a.json"
    atomic_write_json(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE & ~umask_027 == 0o640
    path.chmod(0o600)
    atomic_write_text(path, "again")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "again"


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write("new")
        raise RuntimeError("stop")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_a_symlink_is_refused_and_its_target_is_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("precious")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with pytest.raises(UserInputError, match=r"cannot write .*link\.txt: it is a symbolic link, not a regular file"):
        atomic_write_text(link, "overwritten")
    assert link.is_symlink() and target.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "target.txt"]


def test_a_directory_a_fifo_a_socket_and_a_device_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    server = socket.socket(socket.AF_UNIX)
    sock = tmp_path / "sock"
    server.bind(str(sock))
    device = char_device(tmp_path)
    cases = {tmp_path / "dir": "a directory", fifo: "a FIFO", sock: "a socket", device: "a character device"}
    (tmp_path / "dir").mkdir()
    try:
        for path, kind in cases.items():
            before = path.lstat()
            with pytest.raises(UserInputError, match=f"it is {kind}") as caught:
                write_jsonl(path, [{"a": 1}])
            assert str(path) in str(caught.value) and "\n" not in str(caught.value)
            after = path.lstat()
            assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), f"{path} was replaced"
    finally:
        server.close()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_refusal_names_the_option_and_its_fix(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as caught:
        refuse_unsafe_target(tmp_path, "--output", "Use --output - for stdout")
    assert str(caught.value).startswith(f"cannot write --output {tmp_path}: it is a directory")
    assert str(caught.value).endswith("Use --output - for stdout.")
    refuse_unsafe_target(tmp_path / "new.txt")  # absent: fine


def test_a_parent_that_is_not_a_directory_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserInputError, match=r"cannot write .*file/sub/a\.json: Not a directory"):
        atomic_write_json(blocker / "sub" / "a.json", {})
    with pytest.raises(UserInputError, match="cannot write /dev/null/x: Not a directory"):
        atomic_write_text(Path("/dev/null/x"), "x")


def test_iter_jsonl_reports_deep_nesting_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps({"ok": 1}) + "\n" + "[" * 200_000 + "]" * 200_000 + "\n")
    rows = iter_jsonl(path)
    assert next(rows) == {"ok": 1}
    with pytest.raises(ValueError, match=rf"^{path}:2: JSON nested too deeply to read$"):
        next(rows)
