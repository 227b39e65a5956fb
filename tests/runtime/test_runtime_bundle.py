"""Bundle verification: checksums, listing, schemas and agreement between the JSON files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from framework.errors import IntentcraftError
from framework.io import FILE_MODE, read_json, sha256_file
from framework.runtime import BundleError, verify_bundle, write_checksums
from tests.runtime.tiny_bundle import LABELS, MAX_LENGTH, BundleFactory, default_calibration


def _assert_one_paragraph(error: BundleError, bundle: Path, file: str | None) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"Bundle {bundle}: ")
    assert error.file == file
    if file is not None:
        assert file in message
    assert error.exit_code == 2 and isinstance(error, IntentcraftError)


def test_write_checksums_lists_every_other_file_and_verify_passes(bundle: Path) -> None:
    (bundle / "extra").mkdir()
    (bundle / "extra" / "notes.txt").write_text("a nested file is listed too\n")
    document = write_checksums(bundle)
    assert document == read_json(bundle / "checksums.json")
    assert document["algorithm"] == "sha256"
    expected = {"model.onnx", "tokenizer.json", "labels.json", "calibration.json", "bundle.json", "README.md"}
    assert set(document["files"]) == expected | {"extra/notes.txt"}
    assert document["files"]["model.onnx"] == sha256_file(bundle / "model.onnx")
    info = verify_bundle(bundle)
    assert info.labels == tuple(LABELS)
    assert info.calibration.fallback_intent == "Ambiguous"
    assert info.manifest.max_length == MAX_LENGTH
    assert info.manifest.model_extra == {"metrics": {"accuracy": 0.25}}
    assert info.files == document["files"]


def test_tampered_model_names_the_file_and_both_hashes(bundle: Path) -> None:
    expected = read_json(bundle / "checksums.json")["files"]["model.onnx"]
    with (bundle / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle)
    _assert_one_paragraph(caught.value, bundle, "model.onnx")
    message = str(caught.value)
    assert f"expected {expected[:12]}" in message
    assert f"got {sha256_file(bundle / 'model.onnx')[:12]}" in message
    assert "does not match checksums.json" in message and "intentcraft run" in message


def test_tampered_labels_is_refused(bundle: Path) -> None:
    (bundle / "labels.json").write_text(json.dumps({"labels": list(reversed(LABELS))}))
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle)
    _assert_one_paragraph(caught.value, bundle, "labels.json")


def test_extra_file_is_refused(bundle: Path) -> None:
    (bundle / "backdoor.py").write_text("print('hi')\n")
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle)
    _assert_one_paragraph(caught.value, bundle, "backdoor.py")
    assert "not listed in checksums.json" in str(caught.value)


def test_listed_file_missing_is_refused(bundle: Path) -> None:
    (bundle / "notes.txt").write_text("listed, then deleted\n")
    write_checksums(bundle)
    (bundle / "notes.txt").unlink()
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle)
    _assert_one_paragraph(caught.value, bundle, "notes.txt")
    assert "listed in checksums.json but missing" in str(caught.value)


@pytest.mark.parametrize("name", ["model.onnx", "tokenizer.json", "README.md", "checksums.json"])
def test_missing_required_file_is_refused(bundle: Path, name: str) -> None:
    (bundle / name).unlink()
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle)
    _assert_one_paragraph(caught.value, bundle, name)
    assert "missing" in str(caught.value)


def test_missing_directory_and_file_instead_of_directory(tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(BundleError, match="no such directory"):
        verify_bundle(tmp_path / "nowhere")
    with pytest.raises(BundleError, match="not a directory"):
        verify_bundle(bundle / "model.onnx")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("labels.json", "{not json", "labels.json is not valid JSON (line 1"),
        ("labels.json", '{"labels": []}', "labels: List should have at least 1 item"),
        ("labels.json", '{"labels": ["A", "A"]}', "repeated: A"),
        ("calibration.json", json.dumps(default_calibration(temperature=-1.0)), "temperature: Input should be greater"),
        ("calibration.json", json.dumps(default_calibration(global_threshold=1.5)), "global_threshold"),
        ("calibration.json", json.dumps(default_calibration(extra=1)), "extra: Extra inputs are not permitted"),
        ("calibration.json", json.dumps(default_calibration(temperature="2")), "temperature: Input should be a valid"),
        ("bundle.json", json.dumps({"format_version": 3}), "format_version"),
        ("checksums.json", json.dumps({"algorithm": "md5", "files": {}}), "algorithm"),
    ],
)
def test_bad_json_or_schema_names_file_and_key(bundle: Path, name: str, content: str, expected: str) -> None:
    (bundle / name).write_text(content)
    if name != "checksums.json":
        write_checksums(bundle)
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle)
    _assert_one_paragraph(caught.value, bundle, name)
    assert expected in str(caught.value)


def test_thresholds_for_unknown_label_are_refused(make_bundle: BundleFactory) -> None:
    calibration = default_calibration(thresholds={"FindCallers": 0.5, "NoSuchIntent": 0.5})
    bundle = make_bundle(calibration=calibration)
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle)
    _assert_one_paragraph(caught.value, bundle, "calibration.json")
    assert "NoSuchIntent" in str(caught.value) and "labels.json" in str(caught.value)


def test_fallback_that_is_not_a_label_is_refused(make_bundle: BundleFactory) -> None:
    bundle = make_bundle(calibration=default_calibration(fallback_intent="OutOfScope"))
    with pytest.raises(BundleError, match="fallback_intent 'OutOfScope'"):
        verify_bundle(bundle)


def test_checksums_listing_a_path_outside_the_bundle_is_refused(bundle: Path) -> None:
    document = read_json(bundle / "checksums.json")
    document["files"]["../outside.txt"] = "0" * 64
    (bundle / "checksums.json").write_text(json.dumps(document))
    with pytest.raises(BundleError, match="not a relative path to a file inside the bundle"):
        verify_bundle(bundle)


def test_every_file_of_a_bundle_has_the_regular_mode(bundle: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in bundle.iterdir()}
    assert "checksums.json" in modes and set(modes.values()) == {FILE_MODE & ~umask}, modes
