"""Hostile files and paths through the real CLI: outputs that must not be replaced, bounded threads, bundles that
only look valid, sources that are not data files, and an outputs directory that cannot exist.

Each refusal exits 2 with one error paragraph naming the path or key, without a traceback, within the time and
memory limits of ``tests/security/hostile.py``, and leaves the files around it as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from framework.runtime import Router, write_checksums
from tests.runtime.tiny_bundle import FALLBACK, write_bundle, write_model
from tests.security.hostile import Outcome, assert_refused, run_limited, snapshot

QUICK_S = 20.0
"""A refusal of a runtime verb comes before any inference: well within this."""
TINY = Path(__file__).resolve().parents[1] / "assets" / "recipes" / "tiny.yaml"
FAKE_SECRET = "root:$6$CANARYsecretHASHv3ry$Xq0:19000:0:99999:7:::"


@pytest.fixture(scope="module")
def sealed_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny INT8 bundle with valid checksums (copy it before changing it)."""
    root = tmp_path_factory.mktemp("hostile_bundle")
    return write_bundle(root / "bundle", write_model(root / "model.onnx", int8=True))


@pytest.fixture
def bundle(sealed_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the sealed bundle."""
    return Path(shutil.copytree(sealed_bundle, tmp_path / "bundle"))


def predict(bundle: Path, *args: str, cwd: Path, stdin: str = "") -> Outcome:
    """``intentcraft predict BUNDLE ARGS`` in ``cwd``, killed after :data:`QUICK_S`."""
    return run_limited("predict", str(bundle), *args, cwd=cwd, timeout=QUICK_S, stdin=stdin)


def character_device(directory: Path) -> Path:
    """A device like /dev/full that a broken writer could replace harmlessly: a node in ``directory`` when this
    user may create one (root), else /dev/full itself (which only root could replace)."""
    node = directory / "full"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except OSError:
        return Path("/dev/full")
    return node


def assert_unchanged(path: Path, before: os.stat_result) -> None:
    """``path`` is still the same file system object, of the same type."""
    after = path.lstat()
    assert (after.st_ino, stat.S_IFMT(after.st_mode)) == (before.st_ino, stat.S_IFMT(before.st_mode)), path


# --- predict --output ---------------------------------------------------------------------------------------


def test_output_to_a_full_device_is_refused(bundle: Path, tmp_path: Path) -> None:
    device = character_device(tmp_path)
    before = device.lstat()
    outcome = predict(bundle, "who calls x", "--output", str(device), cwd=tmp_path)
    assert_refused(outcome, f"--output {device}", "a character device", "--output -", limit_s=QUICK_S)
    assert_unchanged(device, before)


def test_output_to_a_fifo_is_refused_without_blocking(bundle: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "routes.jsonl"
    os.mkfifo(fifo)
    before = fifo.lstat()
    outcome = predict(bundle, "who calls x", "--output", str(fifo), cwd=tmp_path)
    assert_refused(outcome, f"--output {fifo}", "a FIFO", limit_s=QUICK_S)
    assert_unchanged(fifo, before)


def test_output_to_a_symlink_is_refused_and_the_target_is_unchanged(bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    link = tmp_path / "routes.jsonl"
    link.symlink_to(target)
    files = snapshot(tmp_path)
    outcome = predict(bundle, "who calls x", "--output", str(link), cwd=tmp_path)
    assert_refused(outcome, f"--output {link}", "a symbolic link", limit_s=QUICK_S)
    assert link.is_symlink() and target.read_text() == "keep me\n" and snapshot(tmp_path) == files


def test_output_to_a_directory_is_refused(bundle: Path, tmp_path: Path) -> None:
    directory = tmp_path / "out"
    directory.mkdir()
    files = snapshot(tmp_path)
    outcome = predict(bundle, "who calls x", "--output", str(directory), cwd=tmp_path)
    assert_refused(outcome, f"--output {directory}", "a directory", limit_s=QUICK_S)
    assert snapshot(tmp_path) == files


def test_output_under_a_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    outcome = predict(bundle, "who calls x", "--output", "/dev/null/routes.jsonl", cwd=tmp_path)
    assert_refused(outcome, "/dev/null/routes.jsonl", "Not a directory", limit_s=QUICK_S)


def test_output_dash_streams_json_lines_to_stdout(bundle: Path, tmp_path: Path) -> None:
    files = snapshot(tmp_path)
    outcome = predict(bundle, "--output", "-", cwd=tmp_path, stdin="who calls x\nhelp\n")
    assert outcome.returncode == 0, outcome.stderr
    rows = [json.loads(line) for line in outcome.stdout.splitlines()]
    assert [row["text"] for row in rows] == ["who calls x", "help"]
    single = predict(bundle, "who calls x", "--output", "-", cwd=tmp_path)
    assert json.loads(single.stdout) == rows[0]
    assert snapshot(tmp_path) == files, "no file named '-' is written"


def test_output_to_a_regular_file_gets_the_regular_mode(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "routes.jsonl"
    outcome = predict(bundle, "who calls x", "--output", str(out), cwd=tmp_path, stdin="")
    assert outcome.returncode == 0, outcome.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert json.loads(out.read_text())["text"] == "who calls x"


@pytest.mark.parametrize(("source", "needle"), [("/dev/zero", "a character device"), (".", "a directory")])
def test_input_that_is_not_a_regular_file_is_named_so(bundle: Path, tmp_path: Path, source: str, needle: str) -> None:
    outcome = predict(bundle, "--input", source, cwd=tmp_path)
    assert_refused(outcome, f"--input {source}", needle, limit_s=QUICK_S)
    assert outcome.max_rss_mb < 500, f"peak memory {outcome.max_rss_mb:.0f} MB"


# --- predict --threads --------------------------------------------------------------------------------------


@pytest.mark.parametrize("threads", ["0", "100000", "-1", "65", "many"])
def test_threads_out_of_bounds_are_refused(bundle: Path, tmp_path: Path, threads: str) -> None:
    outcome = predict(bundle, "who calls x", "--threads", threads, cwd=tmp_path)
    assert_refused(outcome, "--threads", "from 1 to 64", repr(threads), limit_s=QUICK_S)
    assert outcome.max_rss_mb < 500, f"peak memory {outcome.max_rss_mb:.0f} MB"


def test_router_load_bounds_threads_too(bundle: Path) -> None:
    with pytest.raises(ValueError, match="threads must be a whole number from 1 to 64"):
        Router.load(bundle, threads=100_000)


# --- verify loads what it verifies -------------------------------------------------------------------------


def _reseal(bundle: Path, name: str, content: bytes) -> Path:
    """Replace one file of ``bundle`` and rewrite checksums.json to match, as an attacker (or a bad build) could."""
    (bundle / name).write_bytes(content)
    write_checksums(bundle)
    return bundle


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("model.onnx", b"", "onnxruntime cannot load the model"),
        ("tokenizer.json", b'{"version": "1.0", "model": {"type": "Nonsense"}}', "cannot read the tokenizer"),
        ("tokenizer.json", bytes(range(256)) * 4, "cannot read the tokenizer"),
    ],
    ids=["empty-model", "tokenizer-of-an-unknown-model", "binary-tokenizer"],
)
def test_verify_and_predict_refuse_a_resealed_broken_bundle(
    bundle: Path, tmp_path: Path, name: str, content: bytes, needle: str
) -> None:
    _reseal(bundle, name, content)
    for verb_args in (("verify", str(bundle)), ("predict", str(bundle), "who calls x")):
        outcome = run_limited(*verb_args, cwd=tmp_path, timeout=QUICK_S)
        assert_refused(outcome, f"Bundle {bundle}: {name}", needle, limit_s=QUICK_S)


def test_verify_still_passes_a_good_bundle(bundle: Path, tmp_path: Path) -> None:
    outcome = run_limited("verify", str(bundle), cwd=tmp_path, timeout=QUICK_S)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout.startswith("OK ") and "route a test text" in outcome.stdout


# --- Router.predict with bytes ------------------------------------------------------------------------------


def test_bytes_get_a_per_item_error(bundle: Path) -> None:
    router = Router.load(bundle)
    raw, text = router.predict([b"who calls x", "who calls x"])
    assert raw.error is not None and raw.error.startswith("expected a string, got bytes")
    assert (raw.decision, raw.intent, raw.predicted) == ("abstain", FALLBACK, None)
    assert text.error is None and text.predicted is not None


# --- run: sources and paths.outputs -------------------------------------------------------------------------


def run_with_source(tmp_path: Path, plugin: str, path: Path | str, *overrides: str) -> Outcome:
    """``intentcraft run`` of the tiny recipe plus one source ``hostile`` reading ``path``, in ``tmp_path``."""
    recipe = tmp_path / "hostile.yaml"
    source = f"sources:\n  hostile:\n    plugin: {plugin}\n    path: {json.dumps(str(path))}\n"
    recipe.write_text(TINY.read_text() + source)
    return run_limited("run", f"recipe={recipe}", "--until", "generate", *overrides, cwd=tmp_path)


def test_source_path_that_is_a_directory_is_named_so_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    files = snapshot(tmp_path) | {"hostile.yaml"}
    outcome = run_with_source(tmp_path, "csv", tmp_path / "data")
    assert_refused(outcome, "sources.hostile.path", "is a directory")
    assert "does not exist" not in outcome.stderr and snapshot(tmp_path) == files


def test_source_path_dev_zero_is_not_a_regular_file(tmp_path: Path) -> None:
    outcome = run_with_source(tmp_path, "jsonl", "/dev/zero")
    assert_refused(outcome, "sources.hostile.path", "/dev/zero is not a regular file", "a character device")
    assert not (tmp_path / "outputs").exists()


def test_a_file_that_is_not_csv_is_refused_without_echoing_it(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text(f"{FAKE_SECRET}\ndaemon:*:19000:0:99999:7:::\n")
    outcome = run_with_source(tmp_path, "csv", shadow)
    assert_refused(outcome, "sources.hostile.path", "does not look like a CSV file")
    for fragment in ("CANARY", "secretHASH", "daemon", "19000"):
        assert fragment not in outcome.stdout + outcome.stderr


def test_jsonl_nested_200k_levels_is_a_clear_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"text": "who calls x", "label": "FindCallers"}\n' + "[" * 200_000 + "]" * 200_000 + "\n")
    outcome = run_with_source(tmp_path, "jsonl", deep)
    assert_refused(outcome, "sources.hostile.path", f"line 2 of {deep}", "too deeply")


def test_outputs_under_dev_null_is_refused_before_any_work(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY.read_text())
    files = snapshot(tmp_path)
    outcome = run_limited("run", f"recipe={recipe}", "paths.outputs=/dev/null/x", cwd=tmp_path)
    assert_refused(outcome, "paths.outputs=/dev/null/x", "/dev/null is not a directory")
    assert snapshot(tmp_path) == files
