"""The records an LLM generator asks about: one per request batch of an intent, with its drawn axes."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field


class Queries(BaseModel):
    """The JSON answer the built-in tasks ask for: ``{"queries": ["...", ...]}``."""

    queries: list[str] = Field(min_length=1)


class ToolExample(BaseModel):
    """One written example of a tool-call recipe: a query and the call that answers it (checked later, strictly,
    against the recipe's union: a wrong call becomes a rejection with its reason, not a lost record)."""

    query: str
    call: dict[str, Any] | str  # some models write the call as JSON text inside the JSON


class ToolExamples(BaseModel):
    """The JSON answer the ``tool_calls`` task asks for: ``{"examples": [{"query": ..., "call": {...}}, ...]}``."""

    examples: list[ToolExample] = Field(min_length=1)


@dataclass(frozen=True)
class GenerationRecord:
    """What a task gets for one record.

    Attributes:
        key: Stable id of the record within its generator (``intent:index``): the journal's key.
        intent: The intent's name.
        description: The intent's description.
        examples: The intent's hand-written examples.
        axes: The diversity axis values drawn for this record (e.g. domain, persona, style).
        index: The record's number within its intent.
        n: Rows wanted from this record.
        seed: A seed for anything random the task does.
        prompt: The recipe's prompt template rendered for this record.
        system: The recipe's system prompt (None: none).
        options: The generator's ``task_options`` (free-form settings for custom tasks).
        tool_calls: The recipe's tools (a ``framework.toolcalls.spec.ToolCallsSpec``), for a tool-call recipe.
    """

    key: str
    intent: str
    description: str
    examples: tuple[str, ...]
    axes: dict[str, str]
    index: int
    n: int
    seed: int
    prompt: str
    system: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    tool_calls: Any = None


def axis_rotation(axes: dict[str, list[str]], rng: random.Random) -> list[dict[str, str]]:
    """Every combination of the axes' values, shuffled once; record ``i`` takes entry ``i % len``.

    Rotating through a shuffled Cartesian product spreads records evenly over domains x personas x styles
    instead of leaving coverage to chance.
    """
    names = sorted(axes)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*(axes[n] for n in names))]
    rng.shuffle(combos)
    return combos or [{}]


def clean_texts(texts: list[str], limit: int) -> list[str]:
    """Stripped, non-empty, single-line texts without repeats, at most ``limit``."""
    out: list[str] = []
    for text in texts:
        line = " ".join(str(text).split())
        if line and line not in out:
            out.append(line)
    return out[:limit]
