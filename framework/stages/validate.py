"""Validate stage: run the layers in order; keep every rejection with its layer, rule and reason."""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any, cast

from framework.data.seeding import derive_seed
from framework.errors import GateFailed, StageError
from framework.io import read_jsonl, write_jsonl
from framework.pipeline.facts import GenerateFacts, ValidateFacts
from framework.pipeline.runner import StageDef, StageRun
from framework.pipeline.targets import register_stage
from framework.plugin_api import Rejection, ValidateContext

ACCEPTED_FILE, REJECTED_FILE = "accepted.jsonl", "rejected.jsonl"


def _enabled_layers(recipe: Any) -> dict[str, Any]:
    return {name: bound for name, bound in recipe.layers.items() if bound.section.enabled}


def _warn_from(run: StageRun, layer: str, message: str) -> None:
    run.warn(f"{layer}: {message}")


def run_validate(run: StageRun) -> ValidateFacts:
    """Produce ``accepted.jsonl`` and ``rejected.jsonl``; fail the gate on too many rejections."""
    rows = read_jsonl(run.path("generate", run.facts("generate", GenerateFacts).rows_file))
    config = run.recipe.config
    accepted, rejected = rows, []
    per_layer: dict[str, Counter[str]] = defaultdict(Counter)
    for layer, bound in _enabled_layers(run.recipe).items():
        context = ValidateContext(
            layer=layer,
            intents=config.intents,
            seed=derive_seed(config.seed, "validate", layer),
            advance=run.progress.task(f"validate: {layer}", len(accepted)),
            warn=functools.partial(_warn_from, run, layer),
            tool_calls=config.tool_calls,
        )
        verdicts: dict[str, Rejection] = {}
        for rejection in cast(Iterable[Rejection], bound.spec.func(accepted, bound.params, context)):
            verdicts.setdefault(rejection.row_id, rejection)
        by_id = {row["id"] for row in accepted}
        unknown = set(verdicts) - by_id
        if unknown:
            raise StageError(f"validate: layer {layer!r} rejected row ids it was not given ({sorted(unknown)[:3]})")
        for row in accepted:
            verdict = verdicts.get(row["id"])
            if verdict is not None:
                per_layer[layer][verdict.rule] += 1
                rejected.append({**row, "rejection": {"layer": layer, "rule": verdict.rule, "reason": verdict.reason}})
        accepted = [row for row in accepted if row["id"] not in verdicts]
    write_jsonl(run.work_dir / ACCEPTED_FILE, accepted)
    write_jsonl(run.work_dir / REJECTED_FILE, rejected)
    _rejection_gate(len(rows), rejected, config.validate_.max_rejected_fraction)
    return ValidateFacts(
        counts={
            "input": len(rows),
            "accepted": len(accepted),
            "rejected": len(rejected),
            "accepted_per_intent": dict(sorted(Counter(r["intent"] for r in accepted).items())),
            "rejected_per_layer": {layer: dict(rules) for layer, rules in per_layer.items()},
        },
        examples=_examples(rejected),
        survival=survival_rates(rows, accepted) or None,
        accepted_file=ACCEPTED_FILE,
        rejected_file=REJECTED_FILE,
    )


def survival_rates(rows: list[dict[str, Any]], accepted: list[dict[str, Any]]) -> dict[str, dict[str, dict]]:
    """Share of rows that passed validation per generating model and per axis value (where rows name them).

    Returns ``{"model": {name: {"generated", "kept", "rate"}}, "<axis>": {value: {...}}}``.
    """
    kept_ids = {row["id"] for row in accepted}
    generated: dict[str, Counter] = {}
    kept: dict[str, Counter] = {}
    for row in rows:
        provenance = row.get("provenance") or {}
        facets = [("model", provenance["model"])] if provenance.get("model") else []
        facets += [(str(axis), str(value)) for axis, value in sorted((provenance.get("axes") or {}).items())]
        for facet, value in facets:
            generated.setdefault(facet, Counter())[value] += 1
            kept.setdefault(facet, Counter())[value] += row["id"] in kept_ids
    return {
        facet: {
            value: {"generated": n, "kept": kept[facet][value], "rate": round(kept[facet][value] / n, 4)}
            for value, n in sorted(counts.items())
        }
        for facet, counts in generated.items()
    }


def _examples(rejected: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """One example reason per layer and rule, for the summary table."""
    seen: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rejected:
        info = row["rejection"]
        seen[info["layer"]].setdefault(info["rule"], f"{info['reason']} — {row['text'][:60]!r}")
    return dict(seen)


def _rejection_gate(total: int, rejected: list[dict[str, Any]], limit: float) -> None:
    if total == 0:
        raise StageError(
            "validate: the generate stage produced no rows; check generate.samples_per_intent and the generators"
        )
    share = len(rejected) / total
    if share > limit:
        top = Counter(f"{r['rejection']['layer']}/{r['rejection']['rule']}" for r in rejected).most_common(3)
        listing = ", ".join(f"{rule} ({n})" for rule, n in top)
        raise GateFailed(
            f"validate: {len(rejected)} of {total} rows rejected ({share:.1%}), more than "
            f"validate.max_rejected_fraction={limit}. Most frequent: {listing}. Read rejected.jsonl (kept below) "
            "for every reason, then fix the templates or loosen the layer that rejects them."
        )


VALIDATE = register_stage(
    StageDef(
        name="validate",
        upstream=("generate",),
        config_keys=("seed", "intents", "tool_calls", "validate"),
        facts=ValidateFacts,
        run=run_validate,
        plugins=lambda recipe: list(_enabled_layers(recipe).values()),
        plugin_kinds=("validators",),
    )
)
