"""Reading a tool-router bundle: checksums first, then strict files; a bundle never names paths outside itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework.errors import IntentcraftError
from framework.runtime.bundle import BundleError, write_checksums
from framework.toolcalls.bundle import REQUIRED, BaseModelRef, read_tool_bundle, weights_sha256
from framework.toolcalls.router import base_model_dir

TOOLS = {"tools": {"a": {"description": "d"}, "b": {"description": "e"}}}
MANIFEST = {
    "recipe": "r", "labels": ["a", "b", "complete"], "max_chars": 40, "max_retries": 1,
    "base_model": {"name": "m", "origin": "local path", "weights_sha256": "0" * 64},
}  # fmt: skip


def bundle(tmp_path: Path, manifest: dict | None = None) -> Path:
    root = tmp_path / "bundle"
    for name in REQUIRED:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}")
    (root / "tool_router.json").write_text(json.dumps(manifest or MANIFEST))
    (root / "tool_calls.json").write_text(json.dumps(TOOLS))
    write_checksums(root)
    return root


def test_a_well_formed_bundle_reads(tmp_path: Path) -> None:
    manifest, spec = read_tool_bundle(bundle(tmp_path))
    assert manifest.adapter == "adapter" and spec.labels == ["a", "b", "complete"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"adapter": "../../elsewhere"}, "tool_router.json does not parse"),
        ({"tokenizer": "/etc"}, "tool_router.json does not parse"),
        ({"format": 99}, "tool_router.json does not parse"),
        ({"semantics": {"unsafe": [{"name": "x", "pattern": "(a"}]}}, "does not compile on RE2"),
        ({"semantics": {"unsafe": [{"pattern": "a"}]}}, "tool_router.json does not parse"),
    ],
)
def test_a_bad_manifest_is_a_bundle_error(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        read_tool_bundle(bundle(tmp_path, MANIFEST | change))


def test_a_changed_file_is_found_before_anything_is_read(tmp_path: Path) -> None:
    root = bundle(tmp_path)
    (root / "adapter" / "adapter_config.json").write_text('{"changed": 1}')
    with pytest.raises(BundleError, match=r"does not match checksums\.json"):
        read_tool_bundle(root)


def test_a_base_model_recorded_by_digest_must_be_on_this_machine(tmp_path: Path) -> None:
    ref = BaseModelRef(name="some-org/absent-model", origin="local path", weights_sha256="ab" * 32)
    with pytest.raises(IntentcraftError, match="which is not on this machine"):
        base_model_dir(ref)
    local = tmp_path / "model"
    local.mkdir()
    (local / "config.json").write_text("{}")
    (local / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(IntentcraftError, match="the bundle's adapter was trained on"):
        base_model_dir(BaseModelRef(name=str(local), origin="local path", weights_sha256="ab" * 32))
    right = BaseModelRef(name=str(local), origin="local path", weights_sha256=weights_sha256(local))
    assert base_model_dir(right) == str(local.resolve())


def test_weights_without_a_known_file_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IntentcraftError, match="so the base model cannot be identified"):
        weights_sha256(tmp_path)
