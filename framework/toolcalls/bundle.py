"""The tool-router bundle: a LoRA adapter, a reference to its verified base model, the recipe's tools, the tokenizer
with its chat template, the decoding settings and the rules checked after decoding, under ``checksums.json``.

Layout::

    tool_router.json      what to load and how (``ToolBundleManifest``)
    tool_calls.json       the recipe's tools (the union is rebuilt from them)
    adapter/              adapter_config.json, adapter_model.safetensors
    tokenizer/            tokenizer.json, tokenizer_config.json (its chat template)
    system_prompt.txt, tool_call.schema.json, evaluation.json, model_card.md
    checksums.json        SHA-256 of every other file
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from framework.io import atomic_write_json, atomic_write_text, read_json, sha256_file
from framework.runtime.bundle import BundleError, verify_checksums
from framework.toolcalls.exports import system_prompt
from framework.toolcalls.schema import ToolCallSchema
from framework.toolcalls.semantics import SemanticRules, UnsafePattern
from framework.toolcalls.spec import ToolCallsSpec

MANIFEST = "tool_router.json"
TOOLS = "tool_calls.json"
REQUIRED = (MANIFEST, TOOLS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseModelRef(_Strict):
    """The base model the adapter belongs to: its name (a hub id or path), how it was found, and the SHA-256 of
    its weights file (a GGUF file, or ``model.safetensors``), checked when the bundle is loaded."""

    name: str
    origin: str
    weights_sha256: str


class Semantics(_Strict):
    """The rules checked after decoding (from the recipe's ``tool_safety`` layer)."""

    code_arguments: dict[str, list[str]] = Field(default_factory=dict)
    unsafe: list[dict[str, str]] = Field(default_factory=list)
    check_paths: bool = True


class ToolBundleManifest(_Strict):
    """``tool_router.json``."""

    format: int = 1
    kind: str = "tool_router"
    recipe: str
    labels: list[str]
    base_model: BaseModelRef
    adapter: str = "adapter"
    tokenizer: str = "tokenizer"
    max_chars: int = Field(gt=0)
    max_retries: int = Field(ge=0)
    semantics: Semantics = Field(default_factory=Semantics)


def weights_sha256(checkpoint: Path, gguf_file: str | None = None) -> str:
    """The digest that identifies a base model: its GGUF file's, or its ``model.safetensors``'."""
    return sha256_file(checkpoint / gguf_file if gguf_file else checkpoint / "model.safetensors")


def write_tool_bundle(
    target: Path,
    manifest: ToolBundleManifest,
    spec: ToolCallsSpec,
    adapter_dir: Path,
    tokenizer: Any,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the bundle's files into ``target`` (no checksums yet: :func:`seal` adds them last)."""
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target / MANIFEST, manifest.model_dump(mode="json"))
    atomic_write_json(target / TOOLS, spec.model_dump(mode="json"))
    atomic_write_text(target / "system_prompt.txt", system_prompt(spec) + "\n")
    atomic_write_json(target / "tool_call.schema.json", ToolCallSchema(spec).json_schema)
    adapter = target / manifest.adapter
    adapter.mkdir(exist_ok=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(adapter_dir / name, adapter / name)
    tokenizer.save_pretrained(str(target / manifest.tokenizer))
    for name, value in (extra or {}).items():
        atomic_write_json(target / name, value)
    return target


def read_tool_bundle(bundle_dir: Path | str) -> tuple[ToolBundleManifest, ToolCallsSpec]:
    """Verify the checksums, then read the manifest and the tools."""
    root = Path(bundle_dir)
    verify_checksums(root, REQUIRED)
    try:
        manifest = ToolBundleManifest.model_validate(read_json(root / MANIFEST))
        spec = ToolCallsSpec.model_validate(read_json(root / TOOLS))
    except ValueError as exc:
        raise BundleError(root, MANIFEST, f"the tool-router files do not parse: {str(exc).splitlines()[0]}") from exc
    return manifest, spec


def semantic_rules(manifest: ToolBundleManifest, spec: ToolCallsSpec) -> SemanticRules:
    """The rules the router checks after decoding, as the bundle records them."""
    unsafe = [
        UnsafePattern(rule["name"], rule["pattern"], rule.get("reason", "")) for rule in manifest.semantics.unsafe
    ]
    return SemanticRules(spec, manifest.semantics.code_arguments, unsafe, manifest.semantics.check_paths)
