"""What the core hands to plugins, and what plugins hand back.

Plugins are plain functions ``plugin(inputs, params, ctx)`` registered in ``framework.registry``:

- generator: ``(params, ctx: GenerateContext) -> Iterable[dict]`` yields rows (see ``framework.rows``).
- validator: ``(rows: Sequence[dict], params, ctx: ValidateContext) -> Iterable[Rejection]``; a layer
  sees only the rows every earlier layer accepted.
- splitter: ``(rows: Sequence[dict], params, ctx: SplitContext) -> SplitResult``; rows arrive already
  deduplicated, and the core re-checks that no normalised text lands in two splits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framework.config.schema import IntentSpec


def _ignore(*_: object) -> None:
    return None


@dataclass
class GenerateContext:
    """Inputs of one generator instance.

    Attributes:
        name: The generator's key in ``generate.generators`` (written to ``provenance.generator``).
        plugin_id: Canonical plugin id (written to ``provenance.plugin``).
        intents: Every intent of the recipe.
        slots: Slot lists per intent (recipe-level overlaid with the intent's own).
        counts: Rows wanted per intent from this generator.
        seed: Seed for this generator instance (already mixed with its name).
        work_dir: Directory where the generator may write extra artifacts.
        advance: Progress callback; call with the number of rows just produced.
        warn: Records a warning that is shown in the run summary and kept in the manifest.
    """

    name: str
    plugin_id: str
    intents: dict[str, IntentSpec]
    slots: dict[str, dict[str, list[str]]]
    counts: dict[str, int]
    seed: int
    work_dir: Path
    advance: Callable[[int], None] = _ignore
    warn: Callable[[str], None] = _ignore


@dataclass
class ValidateContext:
    """Inputs of one validation layer."""

    layer: str
    intents: dict[str, IntentSpec]
    seed: int
    advance: Callable[[int], None] = _ignore
    warn: Callable[[str], None] = _ignore


@dataclass(frozen=True)
class Rejection:
    """Why a row was rejected. The stage adds the layer name."""

    row_id: str
    rule: str
    reason: str


@dataclass
class SplitContext:
    """Inputs of the splitter."""

    intents: dict[str, IntentSpec]
    seed: int
    advance: Callable[[int], None] = _ignore
    warn: Callable[[str], None] = _ignore


@dataclass
class SplitResult:
    """Row id -> split name for every row, plus facts for the report and manifest."""

    assignments: dict[str, str]
    report: dict[str, Any] = field(default_factory=dict)
