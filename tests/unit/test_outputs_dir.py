"""``framework.paths.check_outputs_dir``: an outputs directory that cannot exist is refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.errors import UserInputError
from framework.paths import check_outputs_dir


def test_a_path_under_a_file_or_a_device_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for outputs, existing in (("/dev/null/x", "/dev/null"), (str(blocker / "a" / "b"), str(blocker))):
        with pytest.raises(UserInputError) as caught:
            check_outputs_dir(outputs)
        message = str(caught.value)
        assert message.startswith(f"paths.outputs={outputs} cannot be used as the output directory: {existing} is not")
        assert "Set paths.outputs to a directory you can write" in message and "\n" not in message


def test_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(UserInputError, match="link is not a directory"):
        check_outputs_dir(tmp_path / "link" / "outputs")


def test_missing_directories_under_a_writable_one_are_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_outputs_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    monkeypatch.chdir(tmp_path)
    assert check_outputs_dir("outputs") == Path("outputs")
    assert not (tmp_path / "a").exists(), "checking creates nothing"
