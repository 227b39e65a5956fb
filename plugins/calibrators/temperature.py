"""Built-in ``temperature`` calibrator: temperature scaling plus per-intent confidence thresholds.

One scalar ``T`` divides the exported model's logits; it is fitted by minimising the negative
log-likelihood on the eval split. Thresholds are then fitted on the calibrated probabilities so
that accepted predictions reach a target precision. ECE and MCE come from ``netcal``; ``ece_noise_mean``
and ``ece_noise_p95`` give the ECE that a perfectly calibrated model would measure by chance on the same
rows (see ``framework.evaluation.calibration``), the yardstick for ``ece_after`` on a small eval split;
``worst_bin_before``/``worst_bin_after`` name the bin that sets each MCE and its row count.

Example::

    calibrate:
      plugin: temperature
      target_precision: 0.95
      max_ece: 0.05

The threshold helpers live in ``_thresholds`` and the plot in ``_plots``; ``fit_thresholds`` and
``fit_global_threshold`` are importable from here too. scipy, netcal and matplotlib are imported on
first use, so loading the plugin registry stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator, model_validator

from framework.evaluation.calibration import ece_noise, top_label_errors, worst_bin
from framework.plugin_api import CalibrateContext, CalibrationResult
from framework.registry import PluginParams, calibrators

from ._plots import Panel, write_reliability_diagram
from ._thresholds import Warn, accepted_mask, fit_global_threshold, fit_thresholds, top_label

PLOT_NAME = "reliability.png"
BOUND_TOLERANCE = 1e-3  # relative distance (in log T) at which an optimum counts as sitting on a bound


class TemperatureParams(PluginParams):
    """Params of the ``temperature`` calibrator.

    Attributes:
        bounds: Search interval ``[low, high]`` for the temperature, ``0 < low < high``.
        bins: Equal-width confidence bins for ECE, MCE and the reliability diagram (2..100).
        target_precision: Precision that the accepted predictions of each intent must reach on the eval
            split; each intent's threshold is the smallest confidence that achieves it (0..1).
        min_support: Eval predictions an intent needs for its own threshold; intents with fewer keep the
            global threshold.
        global_threshold: Threshold for intents without their own; ``None`` fits it as the smallest
            confidence at which all accepted predictions together reach ``target_precision``.
        max_threshold: Cap on every fitted threshold, and the threshold used where the target is unreachable.
    """

    bounds: tuple[float, float] = (0.05, 20.0)
    bins: int = Field(default=15, ge=2, le=100)
    target_precision: float = Field(default=0.95, ge=0, le=1)
    min_support: int = Field(default=5, ge=1)
    global_threshold: float | None = Field(default=None, ge=0, le=1)
    max_threshold: float = Field(default=0.99, gt=0, le=1)

    @field_validator("bounds")
    @classmethod
    def _ordered_bounds(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not (math.isfinite(high) and 0 < low < high):
            raise ValueError(f"bounds must satisfy 0 < low < high, e.g. [0.05, 20.0], got [{low}, {high}]")
        return value

    @model_validator(mode="after")
    def _global_within_cap(self) -> TemperatureParams:
        if self.global_threshold is not None and self.global_threshold > self.max_threshold:
            raise ValueError(
                f"global_threshold ({self.global_threshold}) must not exceed max_threshold ({self.max_threshold})"
            )
        return self


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``log(softmax(logits / temperature))``, stable for large logits."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise probabilities ``softmax(logits / temperature)``."""
    return np.exp(log_softmax(logits, temperature))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    log_probs = log_softmax(logits, temperature)
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature in ``bounds`` that minimises the NLL (bounded Brent search over ``log T``).

    The NLL is convex in ``1/T``, hence unimodal in ``log T``, so the bounded search finds the optimum.
    """
    from scipy.optimize import minimize_scalar

    low, high = bounds
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, math.exp(log_t)),
        bounds=(math.log(low), math.log(high)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(result.x))


def calibration_errors(probs: np.ndarray, labels: np.ndarray, bins: int) -> tuple[float, float]:
    """Top-label ECE and MCE of a probability matrix over ``bins`` equal-width bins, measured by netcal."""
    return top_label_errors(*top_label(probs, labels), bins)


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over rows of the squared distance between ``probs`` and the one-hot label."""
    one_hot = np.zeros_like(probs)
    one_hot[np.arange(len(labels)), labels] = 1.0
    return float(((probs - one_hot) ** 2).sum(axis=1).mean())


def _checked_inputs(ctx: CalibrateContext) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(ctx.logits, dtype=np.float64)
    label_ids = np.asarray(ctx.label_ids)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] != len(ctx.labels):
        raise ValueError(f"logits must have shape (n > 0, {len(ctx.labels)}), got {logits.shape}")
    if label_ids.shape != (logits.shape[0],) or not np.issubdtype(label_ids.dtype, np.integer):
        raise ValueError(f"label_ids must be {logits.shape[0]} integers, got {label_ids.dtype} {label_ids.shape}")
    if label_ids.min() < 0 or label_ids.max() >= logits.shape[1]:
        raise ValueError(f"label_ids must lie in [0, {logits.shape[1]}), got [{label_ids.min()}, {label_ids.max()}]")
    if not np.isfinite(logits).all():
        raise ValueError(f"the exported model produced {int((~np.isfinite(logits)).sum())} non-finite logits")
    return logits, label_ids


def _warn_if_on_bound(temperature: float, bounds: tuple[float, float], warn: Warn) -> None:
    low, high = bounds
    span = math.log(high) - math.log(low)
    if math.log(temperature) - math.log(low) <= BOUND_TOLERANCE * span:
        why = "the model is underconfident or the eval split is perfectly separated"
    elif math.log(high) - math.log(temperature) <= BOUND_TOLERANCE * span:
        why = "the model is extremely overconfident or its logits carry little signal"
    else:
        return
    warn(
        f"fitted temperature {temperature:.4g} sits on a bound of {list(bounds)}: {why}; the NLL optimum may lie "
        "beyond it, so widen calibrate.bounds or inspect the eval logits"
    )


def _skipped(ctx: CalibrateContext) -> tuple[set[str], list[int]]:
    fallback = ctx.fallback_intent
    if fallback is None:
        return set(), []
    if fallback not in ctx.labels:
        ctx.warn(f"fallback intent {fallback!r} is not among the model's labels; every intent gets a threshold")
        return set(), []
    return {fallback}, [ctx.labels.index(fallback)]


def _metrics(logits: np.ndarray, label_ids: np.ndarray, temperature: float, bins: int) -> dict[str, float | int]:
    before, after = softmax(logits), softmax(logits, temperature)
    (ece_before, mce_before), (ece_after, mce_after) = (calibration_errors(p, label_ids, bins) for p in (before, after))
    noise = ece_noise(after.max(axis=1), bins)
    worst = {when: worst_bin(*top_label(p, label_ids), bins) for when, p in (("before", before), ("after", after))}
    return {
        "ece_before": ece_before,
        "ece_after": ece_after,
        "mce_before": mce_before,
        "mce_after": mce_after,
        "nll_before": nll(logits, label_ids),
        "nll_after": nll(logits, label_ids, temperature),
        "brier_before": brier_score(before, label_ids),
        "brier_after": brier_score(after, label_ids),
        "accuracy": float((before.argmax(axis=1) == label_ids).mean()),
        "ece_noise_mean": noise.mean,
        "ece_noise_p95": noise.p95,
        **{f"worst_bin_{when}": b.to_dict() for when, b in worst.items() if b is not None},
        "bins": bins,
        "n": len(label_ids),
    }


def _errors_title(metrics: dict, when: str) -> str:
    return f"ECE {metrics[f'ece_{when}']:.3f}, MCE {metrics[f'mce_{when}']:.3f}"


def _fit_all_thresholds(
    params: TemperatureParams, ctx: CalibrateContext, probs: np.ndarray, label_ids: np.ndarray
) -> tuple[dict[str, float], float, dict[str, int]]:
    """Every non-fallback intent's threshold (its own, or the global one), the global one, and the support."""
    skip, skip_ids = _skipped(ctx)
    global_threshold = params.global_threshold
    if global_threshold is None:
        global_threshold = fit_global_threshold(
            probs, label_ids, params.target_precision, params.max_threshold, skip_ids, warn=ctx.warn
        )
    own, support = fit_thresholds(
        probs,
        label_ids,
        ctx.labels,
        params.target_precision,
        params.min_support,
        params.max_threshold,
        skip,
        warn=ctx.warn,
    )
    thresholds = {name: own.get(name, global_threshold) for name in ctx.labels if name not in skip}
    return thresholds, float(global_threshold), support


def _acceptance(probs: np.ndarray, label_ids: np.ndarray, labels: list[str], thresholds: dict[str, float]) -> dict:
    """Share of eval rows routed to an intent, and the precision among them (``None`` when none is)."""
    accepted = accepted_mask(probs, labels, thresholds)
    right = probs.argmax(axis=1) == label_ids
    return {
        "coverage_at_thresholds": float(accepted.mean()),
        "precision_at_thresholds": float(right[accepted].mean()) if accepted.any() else None,
    }


@calibrators.register("temperature", params=TemperatureParams)
def temperature(params: TemperatureParams, ctx: CalibrateContext) -> CalibrationResult:
    """Temperature scaling fitted by NLL on the eval split, with per-intent thresholds for a target precision.

    Args:
        params: ``bounds``, ``bins``, ``target_precision``, ``min_support``, ``global_threshold`` and
            ``max_threshold`` (see ``TemperatureParams``).
        ctx: Eval-split logits and labels, the fallback intent (it gets no threshold: the router abstains
            to it anyway), the work directory for ``reliability.png`` and the warning sink.

    Returns:
        The temperature, thresholds of every non-fallback intent, the global threshold, before/after
        metrics (ECE, MCE, NLL, Brier, accuracy, coverage and precision at the thresholds) and the plot.
    """
    logits, label_ids = _checked_inputs(ctx)
    fitted_t = fit_temperature(logits, label_ids, params.bounds)
    _warn_if_on_bound(fitted_t, params.bounds, ctx.warn)
    probs = softmax(logits, fitted_t)
    thresholds, global_threshold, support = _fit_all_thresholds(params, ctx, probs, label_ids)
    metrics = {
        **_metrics(logits, label_ids, fitted_t, params.bins),
        "threshold_support": support,
        **_acceptance(probs, label_ids, ctx.labels, thresholds),
    }
    panels = [
        Panel(f"before (T = 1, {_errors_title(metrics, 'before')})", *top_label(softmax(logits), label_ids)),
        Panel(f"after (T = {fitted_t:.3g}, {_errors_title(metrics, 'after')})", *top_label(probs, label_ids)),
    ]
    plot = write_reliability_diagram(Path(ctx.work_dir) / PLOT_NAME, panels, params.bins)
    return CalibrationResult(fitted_t, thresholds, global_threshold, metrics, [plot])
