"""The data row that flows between stages, and text normalisation shared by every stage.

A row is a plain dict (cheap to stream through JSONL) with this shape::

    {"id": str, "text": str, "intent": str, "source": str,
     "split": "train" | "eval" | "test" (after the split stage),
     "output": {...} (tool-call rows only: the call, whose tool or ``complete`` is the intent),
     "provenance": {"generator": str, "plugin": str, "synthetic": bool, "seed": int,
                    "template": str | None, "stream": "train" | "eval", "axes": {...}, ...}}

``Row`` is the pydantic model of that shape; the structural validator checks rows against it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SPLITS = ("train", "eval", "test")


class Provenance(BaseModel):
    """Where a row came from. ``synthetic`` rows are never reported as benchmark evidence."""

    model_config = ConfigDict(extra="allow")

    generator: str
    plugin: str
    synthetic: bool
    seed: int | None = None
    template: str | None = None
    stream: Literal["train", "eval"] | None = None
    axes: dict[str, Any] = Field(default_factory=dict)


class Row(BaseModel):
    """One labelled utterance (of a tool-call recipe: a query and, in ``output``, the call it needs)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    text: str
    intent: str = Field(min_length=1)
    source: str = Field(min_length=1)
    split: Literal["train", "eval", "test"] | None = None
    output: dict[str, Any] | None = None
    provenance: Provenance


_PUNCT = re.compile(r"[^\w\s]", flags=re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Casefold, NFKC-normalise, drop punctuation and collapse whitespace.

    Two rows with the same normalised text are duplicates for dedupe and the leakage guard.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _PUNCT.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def tokens(text: str) -> list[str]:
    """Word tokens of the normalised text."""
    return normalize_text(text).split()


def row_id(*parts: object) -> str:
    """A short stable id from the parts that make a row unique within a run."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()
    return digest[:16]
