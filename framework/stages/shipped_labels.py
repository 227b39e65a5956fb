"""Labels as the bundle ships them: an intent that ``intents_from`` renamed goes back to its label in the data.

Inside a run every stage uses intent names (``reverted_card_payment``); the bundle's ``labels.json``,
``calibration.json`` and so the router's predictions use the data's labels (``reverted card payment?``).
``bundle.json`` keeps the mapping as ``intent_names`` ({label: name}).
"""

from __future__ import annotations

from typing import Any


def shipped_labels(names: list[str], display: dict[str, str]) -> list[str]:
    """The bundle's labels, in logit order: each intent's data label, or its name when it has none."""
    return [display.get(name, name) for name in names]


def shipped_calibration(calibration: dict[str, Any], display: dict[str, str]) -> dict[str, Any]:
    """``calibration.json`` with its thresholds and fallback intent keyed by the shipped labels."""
    fallback = calibration.get("fallback_intent")
    return {
        **calibration,
        "thresholds": {display.get(name, name): value for name, value in calibration["thresholds"].items()},
        "fallback_intent": display.get(fallback, fallback) if fallback is not None else None,
    }


def intent_names(display: dict[str, str]) -> dict[str, str]:
    """``{label: intent name}``: the reverse of ``display`` (what ``bundle.json`` records)."""
    return {label: name for name, label in display.items()}


def to_intent_name(label: str | None, names: dict[str, str]) -> str | None:
    """A label the router returned, back to the recipe's intent name (None stays None)."""
    return None if label is None else names.get(label, label)
