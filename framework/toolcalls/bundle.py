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
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from framework.errors import IntentcraftError
from framework.io import atomic_write_json, atomic_write_text, read_json, sha256_file
from framework.runtime.bundle import BundleError, verify_checksums
from framework.toolcalls.exports import system_prompt
from framework.toolcalls.schema import ToolCallSchema
from framework.toolcalls.semantics import SemanticRules, UnsafePattern
from framework.toolcalls.spec import ToolCallsSpec

MANIFEST = "tool_router.json"
TOOLS = "tool_calls.json"
REQUIRED = (
    MANIFEST,
    TOOLS,
    "adapter/adapter_config.json",
    "adapter/adapter_model.safetensors",
    "tokenizer/tokenizer_config.json",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseModelRef(_Strict):
    """The base model the adapter belongs to: its name (a hub id or path), how it was found, and the SHA-256 of
    its weights file (a GGUF file, or ``model.safetensors``), checked when the bundle is loaded."""

    name: str
    origin: str
    weights_sha256: str


class UnsafeRule(_Strict):
    """A command code arguments must not run: an RE2 pattern (checked when the bundle is read)."""

    name: str = Field(min_length=1)
    pattern: str = Field(min_length=1, max_length=2000)
    reason: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            UnsafePattern("check", pattern, "").compiled()
        except Exception as exc:  # re2's error is not a ValueError
            raise ValueError(f"pattern {pattern!r} does not compile on RE2: {exc}") from None
        return pattern


class Semantics(_Strict):
    """The rules checked after decoding (from the recipe's ``tool_safety`` layer)."""

    code_arguments: dict[str, list[str]] = Field(default_factory=dict)
    unsafe: list[UnsafeRule] = Field(default_factory=list)
    check_paths: bool = True


class ToolBundleManifest(_Strict):
    """``tool_router.json``."""

    format: Literal[1] = 1
    kind: Literal["tool_router"] = "tool_router"
    recipe: str
    labels: list[str]
    base_model: BaseModelRef
    adapter: Literal["adapter"] = "adapter"  # fixed names: a bundle never points outside itself
    tokenizer: Literal["tokenizer"] = "tokenizer"
    max_chars: int = Field(gt=0)
    max_retries: int = Field(ge=0)
    semantics: Semantics = Field(default_factory=Semantics)


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def weights_sha256(checkpoint: Path, gguf_file: str | None = None) -> str:
    """The digest that identifies a base model: its GGUF file's, or its weights file's (the index of sharded
    weights)."""
    if gguf_file:
        return sha256_file(checkpoint / gguf_file)
    for name in WEIGHT_FILES:
        if (checkpoint / name).is_file():
            return sha256_file(checkpoint / name)
    raise IntentcraftError(
        f"{checkpoint} has none of {', '.join(WEIGHT_FILES)}, so the base model cannot be identified; give a Hugging "
        "Face model directory"
    )


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
    return _parse(root, MANIFEST, ToolBundleManifest), _parse(root, TOOLS, ToolCallsSpec)


M = TypeVar("M", bound=BaseModel)


def _parse(root: Path, name: str, model: type[M]) -> M:
    try:
        return model.model_validate(read_json(root / name))
    except (ValidationError, ValueError) as exc:
        lines = str(exc).splitlines()
        raise BundleError(root, name, f"{name} does not parse: {' '.join(lines[:3])}") from exc


def semantic_rules(manifest: ToolBundleManifest, spec: ToolCallsSpec) -> SemanticRules:
    """The rules the router checks after decoding, as the bundle records them."""
    unsafe = [UnsafePattern(rule.name, rule.pattern, rule.reason) for rule in manifest.semantics.unsafe]
    return SemanticRules(spec, manifest.semantics.code_arguments, unsafe, manifest.semantics.check_paths)
