"""Top-label calibration error (ECE, MCE) measured by netcal, and the sampling noise of an ECE estimate.

An ECE measured on ``n`` rows is never zero, even for a perfectly calibrated model: each bin's accuracy is
an average of a few coin flips. :func:`ece_noise` measures how large that chance part is for a given set of
confidences by simulation, so a gate such as ``calibrate.max_ece`` can be read against it: a limit below
the noise of a perfectly calibrated model fails on chance, not on miscalibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISE_DRAWS = 200
NOISE_SEED = 0


def top_label_errors(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[float, float]:
    """ECE and MCE over ``bins`` equal-width bins of the top-label ``confidence`` against ``correct`` (0/1).

    netcal is handed the (confidence, correct) pair rather than a probability matrix: given labels with at
    most two distinct values, netcal 1.4 guesses a binary task and measures class 1 instead of the top label.
    """
    from netcal.metrics import ECE, MCE  # lazy: netcal imports torch, which the runtime never loads

    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    return float(ECE(bins).measure(confidence, correct)), float(MCE(bins).measure(confidence, correct))


@dataclass(frozen=True)
class EceNoise:
    """ECE of a perfectly calibrated model with the same confidences, over simulated outcomes.

    Attributes:
        mean: Expected ECE from chance alone on this many rows.
        p95: 95th percentile: a perfectly calibrated model measures above it one time in twenty.
    """

    mean: float
    p95: float


def bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each confidence in ``[0, 1]``; the last bin is closed (1.0 falls in it)."""
    return np.minimum((np.asarray(confidence, dtype=np.float64) * bins).astype(np.int64), bins - 1)


def binned_ece(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """ECE as netcal measures it (same bins, same weights), in plain numpy: ~100x faster for simulation."""
    confidence = np.asarray(confidence, dtype=np.float64)
    index = bin_index(confidence, bins)
    gap = np.bincount(index, weights=np.asarray(correct, dtype=np.float64), minlength=bins) - np.bincount(
        index, weights=confidence, minlength=bins
    )
    return float(np.abs(gap).sum() / len(confidence))


def simulated_eces(confidence: np.ndarray, bins: int, draws: int = NOISE_DRAWS, seed: int = NOISE_SEED) -> np.ndarray:
    """ECEs of ``draws`` simulated label sets where row ``i`` is right with probability ``confidence[i]``."""
    confidence = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    rng = np.random.default_rng(seed)
    return np.array([binned_ece(confidence, rng.random(len(confidence)) < confidence, bins) for _ in range(draws)])


def ece_noise(confidence: np.ndarray, bins: int, draws: int = NOISE_DRAWS, seed: int = NOISE_SEED) -> EceNoise:
    """Mean and 95th percentile of :func:`simulated_eces` (deterministic for a given ``seed``)."""
    if len(confidence) == 0:
        return EceNoise(float("nan"), float("nan"))
    samples = simulated_eces(confidence, bins, draws, seed)
    return EceNoise(float(samples.mean()), float(np.percentile(samples, 95)))
