"""Split stage: dedupe, split with the recipe's splitter, then guard against leakage."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import Field

from framework.config.schema import PluginSection
from framework.data.dedupe import dedupe_rows, find_leaks
from framework.data.rows import SPLITS
from framework.data.seeding import derive_seed
from framework.errors import StageError
from framework.io import read_jsonl, write_jsonl
from framework.pipeline.facts import SplitFacts, ValidateFacts
from framework.pipeline.runner import RecipeSection, StageDef, StageRun
from framework.pipeline.targets import register_stage
from framework.plugin_api import SplitContext, SplitResult
from framework.stages.common import plugin_result

MIN_ROWS_PER_INTENT = 3


class SplitSection(PluginSection):
    """Dedupe settings (core) plus the splitter plugin and its params."""

    dedupe: Literal["normalized", "exact", "none"] = Field(default="normalized")


def _check_enough_rows(rows: list[dict[str, Any]], intents: list[str]) -> None:
    counts = Counter(row["intent"] for row in rows)
    short = {intent: counts.get(intent, 0) for intent in intents if counts.get(intent, 0) < MIN_ROWS_PER_INTENT}
    if short:
        listing = ", ".join(f"{intent} ({n})" for intent, n in sorted(short.items()))
        raise StageError(
            f"split: too few rows left after validation and dedupe for {listing}; each intent needs at least "
            f"{MIN_ROWS_PER_INTENT}. Add templates or slot values to these intents, or read rejected.jsonl in the "
            "validate stage to see what removed them."
        )


def run_split(run: StageRun) -> SplitFacts:
    """Produce ``train.jsonl``, ``eval.jsonl``, ``test.jsonl`` and ``dropped.jsonl``."""
    config = run.recipe.config
    rows = read_jsonl(run.path("validate", run.facts("validate", ValidateFacts).accepted_file))
    kept, dropped = dedupe_rows(rows, run.recipe.section("split", SplitSection).dedupe)
    _check_enough_rows(kept, list(config.intents))
    bound = run.recipe.bound("split")
    context = SplitContext(
        intents=config.intents,
        seed=derive_seed(config.seed, "split"),
        advance=run.progress.task("split", len(kept)),
        warn=run.warn,
    )
    result = plugin_result(bound, bound.spec.func(kept, bound.params, context), SplitResult)
    missing = [row["id"] for row in kept if result.assignments.get(row["id"]) not in SPLITS]
    if missing:
        raise StageError(f"split: splitter {bound.spec.id} left {len(missing)} rows without a valid split (plugin bug)")
    moved = [row["id"] for row in kept if row.get("split") and result.assignments[row["id"]] != row["split"]]
    if moved:
        raise StageError(
            f"split: splitter {bound.spec.id} moved {len(moved)} rows pinned to a split by their source (plugin bug)"
        )
    for row in kept:
        row["split"] = result.assignments[row["id"]]
    leaks = find_leaks(kept)
    if leaks:
        raise StageError(
            f"split: leakage guard: {len(leaks)} normalised texts in two splits, e.g. {leaks[0]} (plugin bug)"
        )
    files = {split: f"{split}.jsonl" for split in SPLITS}
    for split, name in files.items():
        write_jsonl(run.work_dir / name, [row for row in kept if row["split"] == split])
    write_jsonl(
        run.work_dir / "dropped.jsonl",
        [{**d["row"], "dropped": {"rule": d["rule"], "reason": d["reason"]}} for d in dropped],
    )
    table = Counter((row["intent"], row["split"]) for row in kept)
    real = Counter(row["split"] for row in kept if not row["provenance"].get("synthetic", True))
    counts = {
        "input": len(rows),
        "kept": len(kept),
        "dropped": dict(Counter(d["rule"] for d in dropped)),
        "per_intent": {i: {s: table.get((i, s), 0) for s in SPLITS} for i in config.intents},
        "leaks": 0,
        "real_per_split": {split: real.get(split, 0) for split in SPLITS},
    }
    return SplitFacts(counts=counts, splitter=result.report, files=files)


SPLIT = register_stage(
    StageDef(
        name="split",
        upstream=("validate",),
        config_keys=("seed",),
        run=run_split,
        facts=SplitFacts,
        sections=(RecipeSection("split", SplitSection, "splitters"),),
    )
)
