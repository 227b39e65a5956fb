"""Confidence thresholds of the calibrator (underscore: not loaded as a plugin).

A prediction is accepted when its top-label confidence is at least its intent's threshold; a
threshold is the smallest confidence at which the accepted predictions reach a target precision.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np

PRECISION_SLACK = 1e-12  # float slack when comparing a precision with the target

Warn = Callable[[str], None]


def _ignore(_: str) -> None:
    return None


def top_label(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence of each row and whether its arg-max prediction is right (0.0 / 1.0)."""
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)


def smallest_threshold(confidence: np.ndarray, correct: np.ndarray, target: float) -> tuple[float | None, float]:
    """Smallest ``t`` among ``confidence`` with precision of rows ``confidence >= t`` at least ``target``.

    Returns:
        The threshold (``None`` when no cut reaches ``target``) and the best precision any cut reaches.
    """
    order = np.argsort(-confidence, kind="stable")
    sorted_confidence = confidence[order]
    precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    cut_ends = np.append(sorted_confidence[:-1] > sorted_confidence[1:], True)  # whole tie groups only
    cuts, precision = sorted_confidence[cut_ends], precision[cut_ends]
    reached = np.flatnonzero(precision >= target - PRECISION_SLACK)
    best = float(precision.max())
    return (float(cuts[reached[-1]]) if reached.size else None), best


def fit_thresholds(
    probs: np.ndarray,
    labels: np.ndarray,
    label_names: list[str],
    target_precision: float,
    min_support: int,
    max_threshold: float,
    skip: Collection[str] = (),
    *,
    warn: Warn = _ignore,
) -> tuple[dict[str, float], dict[str, int]]:
    """Per-intent thresholds on the predictions of each intent (intents in ``skip`` get none).

    Returns:
        Thresholds (capped at ``max_threshold``) of intents with at least ``min_support`` predictions,
        and the number of predictions of every intent not skipped.
    """
    confidence, correct = top_label(probs, labels)
    predicted = probs.argmax(axis=1)
    thresholds: dict[str, float] = {}
    support: dict[str, int] = {}
    for index, name in enumerate(label_names):
        if name in skip:
            continue
        mine = predicted == index
        support[name] = int(mine.sum())
        if support[name] < min_support:
            continue
        threshold, best = smallest_threshold(confidence[mine], correct[mine], target_precision)
        if threshold is None:
            warn(
                f"intent {name!r}: no threshold reaches precision {target_precision:g} on the eval split "
                f"(best {best:.3f} over {support[name]} predictions); using max_threshold {max_threshold:g}"
            )
            threshold = max_threshold
        thresholds[name] = min(threshold, max_threshold)
    return thresholds, support


def fit_global_threshold(
    probs: np.ndarray,
    labels: np.ndarray,
    target_precision: float,
    max_threshold: float,
    skip_ids: Collection[int] = (),
    *,
    warn: Warn = _ignore,
) -> float:
    """Smallest threshold at which all predictions (except of classes ``skip_ids``) reach the target precision."""
    confidence, correct = top_label(probs, labels)
    kept = ~np.isin(probs.argmax(axis=1), list(skip_ids))
    if not kept.any():
        warn(f"every eval row predicts the fallback intent; global threshold set to max_threshold {max_threshold:g}")
        return max_threshold
    threshold, best = smallest_threshold(confidence[kept], correct[kept], target_precision)
    if threshold is None:
        warn(
            f"no global threshold reaches precision {target_precision:g} on the eval split "
            f"(best {best:.3f}); using max_threshold {max_threshold:g}"
        )
        return max_threshold
    return min(threshold, max_threshold)


def accepted_mask(probs: np.ndarray, label_names: list[str], thresholds: dict[str, float]) -> np.ndarray:
    """Rows the router would route to their predicted intent (intents without a threshold: never)."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    per_label = np.array([thresholds.get(name, np.inf) for name in label_names])
    return confidence >= per_label[predicted]
