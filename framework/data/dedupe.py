"""Dedupe before splitting, and the leakage guard after it.

``dedupe_rows`` drops repeated texts and every row of a text that carries more than one intent: a
router must not learn one text with two labels. Of repeated texts it keeps the most held-out pinned
row (``split: test`` over ``eval`` over unpinned or ``train``; the first in input order among equals),
so an official test set stays whole and its training copies go. ``find_leaks`` lists normalised texts
that landed in more than one split; the core fails the split stage on any.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from framework.data.rows import normalize_text

DedupeMode = Literal["normalized", "exact", "none"]
DEDUPE_MODES: tuple[str, ...] = ("normalized", "exact", "none")
_MAX_IDS_IN_REASON = 5
_PIN_RANK = {"eval": 1, "test": 2}


def _pin_rank(row: dict[str, Any]) -> int:
    """How held-out a row's pinned split is: 2 for ``test``, 1 for ``eval``, 0 for ``train`` or no pin."""
    return _PIN_RANK.get(row.get("split") or "", 0)


def _dedupe_key(text: str, mode: str) -> str:
    return normalize_text(text) if mode == "normalized" else text


def _group_by_key(rows: Sequence[dict[str, Any]], mode: str) -> dict[str, list[int]]:
    """Row indices per dedupe key, keys in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(_dedupe_key(row["text"], mode), []).append(index)
    return groups


def _drop(row: dict[str, Any], rule: str, reason: str) -> dict[str, Any]:
    return {"row": row, "rule": rule, "reason": reason}


def _conflict_drops(key: str, group: list[dict[str, Any]]) -> list[dict[str, Any]]:
    intents = sorted({row["intent"] for row in group})
    ids = ", ".join(str(row["id"]) for row in group[:_MAX_IDS_IN_REASON])
    if len(group) > _MAX_IDS_IN_REASON:
        ids += f" and {len(group) - _MAX_IDS_IN_REASON} more"
    reason = f"text {key!r} is labelled with {len(intents)} intents: {', '.join(intents)} (rows {ids})"
    return [_drop(row, "label_conflict", reason) for row in group]


def _duplicate_drops(group: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Drops (by position in ``group``) for every row but the kept one: the most held-out pin, then the first."""
    keep_at = max(range(len(group)), key=lambda i: (_pin_rank(group[i]), -i))
    kept = group[keep_at]
    pinned = f" (kept because it is pinned to {kept['split']})" if _pin_rank(kept) > _pin_rank(group[0]) else ""
    drops = {}
    for position, row in enumerate(group):
        if position == keep_at:
            continue
        if row["text"] == kept["text"]:
            drops[position] = _drop(row, "exact_duplicate", f"duplicate of row {kept['id']}{pinned}")
        else:
            drops[position] = _drop(row, "normalized_duplicate", f"same normalised text as row {kept['id']}{pinned}")
    return drops


def dedupe_rows(rows: Sequence[dict[str, Any]], mode: DedupeMode) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``rows`` into (kept, dropped); both keep input order.

    Of rows sharing a key, the kept one is the first pinned to ``test``, else the first pinned to
    ``eval``, else the first in input order.

    Args:
        rows: Rows with ``id``, ``text`` and ``intent``.
        mode: ``"exact"`` keys on the raw text, ``"normalized"`` on ``normalize_text(text)``;
            ``"none"`` keeps duplicates but still drops label conflicts on identical raw text.

    Returns:
        The kept rows, and one ``{"row", "rule", "reason"}`` dict per dropped row with rule
        ``exact_duplicate``, ``normalized_duplicate`` or ``label_conflict``.
    """
    if mode not in DEDUPE_MODES:
        raise ValueError(f"dedupe mode must be one of {', '.join(DEDUPE_MODES)}, got {mode!r}")
    dropped_at: dict[int, dict[str, Any]] = {}
    for key, indices in _group_by_key(rows, mode).items():
        group = [rows[i] for i in indices]
        if len({row["intent"] for row in group}) > 1:
            dropped_at.update(zip(indices, _conflict_drops(key, group), strict=True))
        elif mode != "none":
            dropped_at.update((indices[at], drop) for at, drop in _duplicate_drops(group).items())
    kept = [row for index, row in enumerate(rows) if index not in dropped_at]
    dropped = [dropped_at[index] for index in sorted(dropped_at)]
    return kept, dropped


def find_leaks(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Normalised texts that appear in more than one split (rows without a split are ignored).

    Returns:
        One ``{"normalized", "splits", "row_ids"}`` dict per leaking text, in order of first
        appearance; ``splits`` is sorted and ``row_ids`` follows input order.
    """
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        split = row.get("split")
        if split is None:
            continue
        entry = seen.setdefault(normalize_text(row["text"]), {"splits": set(), "row_ids": []})
        entry["splits"].add(split)
        entry["row_ids"].append(row["id"])
    return [
        {"normalized": text, "splits": sorted(entry["splits"]), "row_ids": entry["row_ids"]}
        for text, entry in seen.items()
        if len(entry["splits"]) > 1
    ]
