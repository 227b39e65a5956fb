"""Built-in ``stratified`` splitter: per-intent train/eval/test split over leakage-safe units.

A *unit* is a set of rows that must share a split: every row with the same normalised text (so no
text leaks whichever dedupe mode ran), and with ``group_by: template`` every row of one template.
Units are shuffled per intent with a seeded RNG, then placed biggest first into the split furthest
below its row target; a repair pass moves small units into splits left under ``min_rows_per_split``.
Rows that arrive with ``split`` set (pinned by their source, e.g. an official test set) keep it: a
unit holding a pinned row goes to that split (to the most held-out pin, test > eval > train, if its
rows disagree), and the ratios divide only the unpinned units.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from framework.data.rows import SPLITS, normalize_text
from framework.data.seeding import make_rng
from framework.plugin_api import SplitContext, SplitResult
from framework.registry import PluginParams, splitters

Row = dict[str, Any]
Unit = list[Row]
RATIO_TOLERANCE = 1e-6


class StratifiedParams(PluginParams):
    """Params of the ``stratified`` splitter.

    Attributes:
        ratios: Share of each intent's rows per split; a missing split gets 0. Every share is >= 0,
            ``train`` is > 0 and the shares sum to 1 (within 1e-6).
        group_by: ``"template"`` keeps all rows of one ``provenance.template`` in one split, so test
            rows are not paraphrases of training rows; ``"none"`` groups only equal normalised texts.
        honor_streams: If an intent has rows with ``provenance.stream == "eval"``, its train-stream
            rows go to train and its eval-stream rows are divided between eval and test.
        min_rows_per_split: Rows of each intent that every split with a positive ratio should get;
            when an intent's units cannot provide them, a warning names the intent.
    """

    ratios: dict[Literal["train", "eval", "test"], Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=lambda: {"train": 0.8, "eval": 0.1, "test": 0.1}
    )
    group_by: Literal["none", "template"] = "none"
    honor_streams: bool = True
    min_rows_per_split: int = Field(default=1, ge=0)

    @field_validator("ratios")
    @classmethod
    def _complete_ratios(cls, ratios: dict[str, float]) -> dict[str, float]:
        full = {split: float(ratios.get(split, 0.0)) for split in SPLITS}
        if full["train"] <= 0:
            raise ValueError("ratios.train must be > 0")
        total = sum(full.values())
        if abs(total - 1.0) > RATIO_TOLERANCE:
            raise ValueError(f"ratios must sum to 1, got {total:g}")
        return full


def _provenance(row: Row) -> dict[str, Any]:
    return row.get("provenance") or {}


def _build_units(rows: Sequence[Row], normalized: dict[str, str], group_by: str) -> list[Unit]:
    """Union-find over normalised text (and template): rows of one unit must share a split."""
    parent = list(range(len(rows)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first_seen: dict[tuple[str, str], int] = {}
    for index, row in enumerate(rows):
        keys = [("text", normalized[row["id"]])]
        template = _provenance(row).get("template")
        if group_by == "template" and template is not None:
            keys.append(("template", str(template)))
        for key in keys:
            parent[root(index)] = root(first_seen.setdefault(key, index))
    groups: dict[int, Unit] = {}
    for index, row in enumerate(rows):
        groups.setdefault(root(index), []).append(row)
    # A canonical order (not input order) so the split depends only on the rows and the seed.
    return sorted(groups.values(), key=lambda unit: min(str(row["id"]) for row in unit))


def _row_targets(n_rows: int, ratios: dict[str, float], min_rows: int) -> dict[str, int]:
    """Largest-remainder row targets, raised to ``min_rows`` where the biggest split can spare rows."""
    quotas = {split: n_rows * ratios[split] for split in SPLITS}
    targets = {split: int(quota + 1e-9) for split, quota in quotas.items()}
    leftover = n_rows - sum(targets.values())
    by_remainder = sorted(SPLITS, key=lambda s: (targets[s] - quotas[s], SPLITS.index(s)))
    for split in by_remainder[:leftover]:
        targets[split] += 1
    positive = [split for split in SPLITS if ratios[split] > 0]
    for split in positive:
        while targets[split] < min_rows:
            donor = max(positive, key=lambda s: (targets[s], -SPLITS.index(s)))
            if donor == split or targets[donor] <= min_rows:
                break
            targets[donor] -= 1
            targets[split] += 1
    return targets


def _greedy_fill(sizes: list[int], targets: dict[str, int], splits: list[str]) -> list[str]:
    """Biggest unit first (stable, so shuffled order breaks ties) into the largest deficit."""
    filled = dict.fromkeys(splits, 0)
    choice = [""] * len(sizes)
    for index in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        split = max(splits, key=lambda s: (targets[s] - filled[s], -SPLITS.index(s)))
        choice[index] = split
        filled[split] += sizes[index]
    return choice


def _repair_short_splits(
    sizes: list[int], choice: list[str], targets: dict[str, int], splits: list[str], min_rows: int
) -> None:
    """Move units into splits below ``min_rows`` from splits that stay at or above it."""
    filled = dict.fromkeys(splits, 0)
    for size, split in zip(sizes, choice, strict=True):
        filled[split] += size

    def cost(index: int, receiver: str) -> tuple[int, int]:
        donor, size = choice[index], sizes[index]
        change = abs(filled[donor] - size - targets[donor]) - abs(filled[donor] - targets[donor])
        change += abs(filled[receiver] + size - targets[receiver]) - abs(filled[receiver] - targets[receiver])
        return change, index

    for split in splits:
        while filled[split] < min_rows:
            movable = [i for i, s in enumerate(choice) if s != split and filled[s] - sizes[i] >= min_rows]
            if not movable:
                break
            index = min(movable, key=lambda i: cost(i, split))
            filled[choice[index]] -= sizes[index]
            filled[split] += sizes[index]
            choice[index] = split


def _assign(units: list[Unit], ratios: dict[str, float], min_rows: int) -> list[str]:
    """Split name per unit so that row counts approach ``ratios``."""
    splits = [split for split in SPLITS if ratios[split] > 0]
    sizes = [len(unit) for unit in units]
    targets = _row_targets(sum(sizes), ratios, min_rows)
    choice = _greedy_fill(sizes, targets, splits)
    _repair_short_splits(sizes, choice, targets, splits, min_rows)
    return choice


def _is_eval_stream(unit: Unit) -> bool:
    """A unit follows its majority stream; rows without a stream count as train, ties go to train."""
    eval_rows = sum(1 for row in unit if _provenance(row).get("stream") == "eval")
    return eval_rows * 2 > len(unit)


def _split_intent(units: list[Unit], params: StratifiedParams) -> tuple[list[str], bool]:
    """Split name per unit of one intent, and whether provenance streams decided it."""
    ratios, min_rows = params.ratios, params.min_rows_per_split
    held_out = ratios["eval"] + ratios["test"]
    has_eval_stream = any(_provenance(row).get("stream") == "eval" for unit in units for row in unit)
    if not (params.honor_streams and has_eval_stream and held_out > 0):
        return _assign(units, ratios, min_rows), False
    choice = ["train"] * len(units)
    eval_units = [i for i, unit in enumerate(units) if _is_eval_stream(unit)]
    held_ratios = {"train": 0.0, "eval": ratios["eval"] / held_out, "test": ratios["test"] / held_out}
    eval_choice = _assign([units[i] for i in eval_units], held_ratios, min_rows)
    for index, split in zip(eval_units, eval_choice, strict=True):
        choice[index] = split
    return choice, True


def _pin(rows: Iterable[Row]) -> str | None:
    """The most held-out split (test > eval > train) that any of ``rows`` is pinned to, or None."""
    pins = {row.get("split") for row in rows} & set(SPLITS)
    return max(pins, key=SPLITS.index) if pins else None


def _unify_cross_intent_texts(rows: Sequence[Row], normalized: dict[str, str], assignments: dict[str, str]) -> int:
    """Put rows of one normalised text under different intents into one split; returns texts moved.

    Such rows are label conflicts that dedupe modes ``exact``/``none`` let through; they go to the
    most held-out pin among them, else to the first split (train, eval, test order) any of them got,
    so the leakage guard holds regardless.
    """
    rows_by_text: dict[str, list[Row]] = {}
    for row in rows:
        rows_by_text.setdefault(normalized[row["id"]], []).append(row)
    moved = 0
    for group in rows_by_text.values():
        splits = {assignments[row["id"]] for row in group}
        if len(splits) > 1:
            target = _pin(group) or min(splits, key=SPLITS.index)
            assignments.update(dict.fromkeys((row["id"] for row in group), target))
            moved += 1
    return moved


def _shortfall_warning(
    intent: str, counts: dict[str, int], n_units: int, params: StratifiedParams, streams_used: bool, pinned: int = 0
) -> str | None:
    """One sentence naming the intent and the splits left under ``min_rows_per_split``, if any.

    ``n_units`` counts the units the ratios placed; ``pinned`` the rows placed by a pin instead.
    """
    min_rows = params.min_rows_per_split
    positive = [split for split in SPLITS if params.ratios[split] > 0]
    short = [split for split in positive if counts[split] < min_rows]
    if not short:
        return None
    word = "template groups" if params.group_by == "template" else "distinct texts"
    word = f"unpinned {word}" if pinned else word
    if streams_used:
        cause = f"{n_units} {word} placed by provenance.stream cannot fill {len(positive)} splits"
    elif n_units < len(positive):
        cause = f"{n_units} {word} cannot fill {len(positive)} splits"
    else:
        n_rows = sum(counts.values()) - pinned
        cause = f"{n_units} {word} ({n_rows} rows) cannot give {len(positive)} splits {min_rows} rows each"
    if params.group_by == "template":
        cause += " with group_by=template"
    missing = [
        f"{split} gets no rows" if counts[split] == 0 else f"{split} gets only {counts[split]} (min {min_rows})"
        for split in short
    ]
    return f"{intent}: {cause}; {', '.join(missing)}"


@dataclass
class _Placement:
    """What the per-intent placement decided: row id -> split, plus facts for the report and warnings.

    Attributes:
        units: Units per intent; ``free_units`` those the ratios placed (no pinned row).
        pinned: Intent -> split -> rows placed by a pin (rows of a unit that holds a pinned row).
        mixed_pins: One example per unit whose rows are pinned to different splits.
    """

    assignments: dict[str, str] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)
    free_units: dict[str, int] = field(default_factory=dict)
    streams_used: list[str] = field(default_factory=list)
    pinned: dict[str, dict[str, int]] = field(default_factory=dict)
    mixed_pins: list[str] = field(default_factory=list)


def _place_intent(intent: str, units: list[Unit], params: StratifiedParams, placement: _Placement) -> None:
    """Pinned units go to their pin; the ratios (and streams) divide the rest."""
    pins = [_pin(unit) for unit in units]
    free = [unit for unit, pin in zip(units, pins, strict=True) if pin is None]
    choice, used_streams = _split_intent(free, params)
    free_choice = iter(choice)
    for unit, pin in zip(units, pins, strict=True):
        split = pin or next(free_choice)
        placement.assignments.update(dict.fromkeys((row["id"] for row in unit), split))
        if pin is None:
            continue
        placement.pinned.setdefault(intent, dict.fromkeys(SPLITS, 0))[pin] += len(unit)
        pinned_to = sorted({row["split"] for row in unit if row.get("split") in SPLITS}, key=SPLITS.index)
        if len(pinned_to) > 1:
            placement.mixed_pins.append(f"{intent} rows {', '.join(str(r['id']) for r in unit[:3])}: {pinned_to}")
    placement.units[intent] = len(units)
    placement.free_units[intent] = len(free)
    if used_streams:
        placement.streams_used.append(intent)


def _report(rows: Sequence[Row], placement: _Placement, params: StratifiedParams) -> dict[str, Any]:
    counts: dict[str, dict[str, int]] = {intent: dict.fromkeys(SPLITS, 0) for intent in placement.units}
    for row in rows:
        counts[row["intent"]][placement.assignments[row["id"]]] += 1
    totals = {split: sum(c[split] for c in counts.values()) for split in SPLITS}
    n_rows = max(len(rows), 1)
    return {
        "counts": counts,
        "effective_ratios": {split: round(totals[split] / n_rows, 6) for split in SPLITS},
        "units": placement.units,
        "group_by": params.group_by,
        "pinned": placement.pinned,
    }


def _warnings(placement: _Placement, report: dict[str, Any], params: StratifiedParams, moved: int) -> list[str]:
    """Shortfalls per intent, then units with disagreeing pins, then texts shared across intents."""
    warnings = []
    for intent, counts in report["counts"].items():
        pinned = sum(placement.pinned.get(intent, {}).values())
        streams = intent in placement.streams_used
        warning = _shortfall_warning(intent, counts, placement.free_units[intent], params, streams, pinned)
        if warning:
            warnings.append(warning)
    if placement.mixed_pins:
        n = len(placement.mixed_pins)
        warnings.append(
            f"{n} {'text holds rows' if n == 1 else 'texts hold rows'} pinned to different splits by their sources "
            f"(e.g. {placement.mixed_pins[0]}); each went to its most held-out pin (test > eval > train)"
        )
    if moved:
        warnings.append(
            f"{moved} normalised {'text carries' if moved == 1 else 'texts carry'} more than one intent "
            "(the dedupe mode let them through); their rows were put in one split"
        )
    return warnings


@splitters.register("stratified", params=StratifiedParams)
def stratified(rows: Sequence[Row], params: StratifiedParams, ctx: SplitContext) -> SplitResult:
    """Split each intent by ratios, keeping equal texts (and optionally templates) in one split and pins in place."""
    normalized = {row["id"]: normalize_text(row["text"]) for row in rows}
    by_intent: dict[str, list[Row]] = {}
    for row in rows:
        by_intent.setdefault(row["intent"], []).append(row)
    placement = _Placement()
    for intent, intent_rows in by_intent.items():
        units = _build_units(intent_rows, normalized, params.group_by)
        make_rng(ctx.seed, intent).shuffle(units)
        _place_intent(intent, units, params, placement)
        ctx.advance(len(intent_rows))
    moved = _unify_cross_intent_texts(rows, normalized, placement.assignments)
    report = _report(rows, placement, params)
    warnings = _warnings(placement, report, params, moved)
    for warning in warnings:
        ctx.warn(warning)
    report.update(streams_used=placement.streams_used, warnings=warnings)
    return SplitResult(placement.assignments, report=report)
