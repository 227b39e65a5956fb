"""Top-label calibration error (ECE, MCE) measured by netcal, and the sampling noise of an ECE estimate.

An ECE measured on ``n`` rows is never zero, even for a perfectly calibrated model: each bin's accuracy is
an average of a few coin flips. :func:`ece_noise` measures how large that chance part is for a given set of
confidences by simulation, so a gate such as ``calibrate.max_ece`` can be read against it: a limit below
the noise of a perfectly calibrated model fails on chance, not on miscalibration.

:func:`calibration_checks` turns these figures into plain-words verdicts (an ECE above the noise's 95th
percentile, an MCE that rose with calibration and the rows of the bin behind it); stages keep them as data
under ``checks`` and the run summary, the Markdown report and the model card render the same sentences.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from framework.evaluation.run_facts import RunFacts

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


SMALL_BIN_ROWS = 30  # fewer rows than this in a bin: its accuracy is mostly noise (faded in the diagram)
CHANCE_LEVEL = 0.05  # a gap a perfectly calibrated model shows at least this often is called noise


def bin_stats(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin (netcal's bins): row count, accuracy and mean confidence (NaN where empty)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    index = bin_index(confidence, bins)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=np.asarray(correct, dtype=np.float64), minlength=bins) / counts
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
    return counts, accuracy, mean_confidence


@dataclass(frozen=True)
class WorstBin:
    """The bin that sets the MCE: its confidence range, rows, accuracy and mean confidence."""

    low: float
    high: float
    rows: int
    accuracy: float
    confidence: float

    @property
    def gap(self) -> float:
        """``|accuracy - confidence|``: the MCE."""
        return abs(self.accuracy - self.confidence)

    def to_dict(self) -> dict[str, float | int]:
        """Plain JSON for a manifest (``WorstBin(**d)`` reads it back)."""
        return asdict(self)


def worst_bin(confidence: np.ndarray, correct: np.ndarray, bins: int) -> WorstBin | None:
    """The non-empty bin with the largest gap between accuracy and mean confidence (``None`` without rows)."""
    counts, accuracy, mean_confidence = bin_stats(confidence, correct, bins)
    if not counts.any():
        return None
    gaps = np.where(counts > 0, np.abs(accuracy - mean_confidence), -1.0)
    index = int(np.argmax(gaps))
    return WorstBin(
        index / bins, (index + 1) / bins, int(counts[index]), float(accuracy[index]), float(mean_confidence[index])
    )


@dataclass(frozen=True)
class CalibrationCheck:
    """A verdict on a calibration metric in plain words; ``ok`` false makes it a warning.

    Attributes:
        check: ``ece_vs_chance`` (ECE against a perfectly calibrated model's) or ``mce_rose``.
        ok: Whether the metric is what a well calibrated model would show.
        text: The sentence a user reads in the run summary, the report and the model card.
    """

    check: str
    ok: bool
    text: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for a manifest."""
        return asdict(self)


def _points(value: float) -> str:
    return f"{100 * value:.2f} percentage points"


def ece_check(split: str, rows: int, ece: float, noise: EceNoise, fitted_here: bool) -> CalibrationCheck:
    """ECE against the 95th percentile of a perfectly calibrated model's ECE on the same confidences."""
    name = f"{split.capitalize()} ECE {ece:.4f}" + (" after calibration" if fitted_here else "")
    chance = f"what a perfectly calibrated model would show on {rows:,} rows (95th percentile {noise.p95:.4f})"
    if ece <= noise.p95:
        return CalibrationCheck(
            "ece_vs_chance", True, f"{name} is within {chance}: no miscalibration measurable on this many rows."
        )
    off = f"the confidences are measurably off (confidence and accuracy differ by {_points(ece)} on average)"
    if fitted_here:
        advice = (
            f"{off}, even on the rows the temperature was fitted on: one temperature, fitted for likelihood, leaves "
            "this gap. The reliability diagram shows which bins carry it; more eval rows (split.ratios.eval) give a "
            "steadier fit."
        )
    else:
        advice = (
            f"{off}. The temperature was fitted on the eval split: either these rows differ from the eval rows, or "
            "one temperature does not fit every confidence level. Compare with the eval reliability diagram, give "
            "the eval split more rows (split.ratios.eval), and check on real labelled rows before relying on the "
            "confidences or the thresholds built on them."
        )
    return CalibrationCheck("ece_vs_chance", False, f"{name} is above {chance}: {advice}")


def bin_gap_chance(confidence: float, rows: int, accuracy: float) -> float:
    """How often a perfectly calibrated bin of ``rows`` rows at ``confidence`` shows an accuracy at least as far
    from it as ``accuracy`` (exact binomial, both sides)."""
    from scipy.stats import binom  # lazy, as netcal: the runtime never loads it

    right = np.arange(rows + 1)
    far = np.abs(right / rows - confidence) >= abs(accuracy - confidence) - 1e-9
    return float(binom.pmf(right[far], rows, confidence).sum())


def _share(chance: float) -> str:
    return f"{chance:.0%}" if chance >= 0.01 else "less than 1%"


def _worst_bin_words(worst: WorstBin, rows: int, split: str) -> str:
    where = (
        f": here confidences {worst.low:.2f}-{worst.high:.2f}, {worst.rows:,} of {rows:,} {split} rows "
        f"(accuracy {worst.accuracy:.2f}, mean confidence {worst.confidence:.2f})"
    )
    small = worst.rows < SMALL_BIN_ROWS
    swing = f"one row more or less right moves its accuracy by {1 / worst.rows:.2f}; " if small else ""
    chance = bin_gap_chance(worst.confidence, worst.rows, worst.accuracy)
    size = f"{worst.rows:,} row{'' if worst.rows == 1 else 's'}"
    odds = (
        f"a perfectly calibrated bin of {size} at that confidence shows a gap this large {_share(chance)} of the time"
    )
    if chance >= CHANCE_LEVEL:
        return f"{where}; {swing}{odds}, so this MCE is noise."
    return f"{where}; {swing}{odds}: confidences in that range are off, and thresholds inside it inherit the error."


def mce_check(
    split: str, rows: int, mce_before: float, mce: float, worst: WorstBin | None, ece_before: float | None, ece: float
) -> CalibrationCheck:
    """Why an MCE that rose after calibration (``mce > mce_before``) does or does not matter."""
    text = f"MCE rose with calibration ({mce_before:.4f} -> {mce:.4f}). MCE is the gap between confidence and "
    text += "accuracy in the single worst bin, so one bin decides it"
    text += _worst_bin_words(worst, rows, split) if worst is not None and worst.rows > 0 else "."
    if ece_before is not None and ece < ece_before:
        text += (
            " Scaling moves rows between bins, so one bin can get worse while ECE, which weights every bin by its "
            f"rows, falls (here {ece_before:.4f} -> {ece:.4f}); judge calibration by ECE and the reliability "
            "diagram's bin counts."
        )
    elif ece_before is not None:
        text += f" ECE rose too ({ece_before:.4f} -> {ece:.4f}): calibration made these confidences worse overall."
    return CalibrationCheck("mce_rose", False, text)


def calibration_checks(
    split: str,
    rows: int,
    ece: float,
    noise: EceNoise,
    *,
    fitted_here: bool,
    ece_before: float | None = None,
    mce_before: float | None = None,
    mce: float | None = None,
    worst: WorstBin | None = None,
) -> list[CalibrationCheck]:
    """Every calibration verdict for one set of rows: the one source of the warnings the summary, the report
    and the model card render.

    Args:
        split: The rows' split (``eval``, ``test``), named in the text.
        rows: How many rows ``ece`` was measured on.
        ece: ECE of the calibrated confidences; ``noise``: :func:`ece_noise` of the same confidences.
        fitted_here: True when the calibration was fitted on these very rows.
        ece_before, mce_before: The uncalibrated figures, when known; ``mce``: MCE after calibration.
        worst: The bin that sets ``mce`` (see :func:`worst_bin`).

    Returns:
        An ``ece_vs_chance`` check (always, when the noise is known: a warning above its 95th percentile),
        then an ``mce_rose`` warning when ``mce > mce_before``.
    """
    checks = []
    if np.isfinite(noise.p95) and np.isfinite(ece):
        checks.append(ece_check(split, rows, ece, noise, fitted_here))
    if mce is not None and mce_before is not None and mce > mce_before:
        checks.append(mce_check(split, rows, mce_before, mce, worst, ece_before, ece))
    return checks


def stored_checks(facts: Any) -> list[CalibrationCheck]:
    """The checks kept under ``facts["checks"]`` in a manifest, malformed entries skipped (renderers read them)."""
    entries = facts.get("checks") if isinstance(facts, dict) else None
    return [
        CalibrationCheck(str(entry.get("check", "")), bool(entry.get("ok")), entry["text"])
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("text"), str)
    ]


def manifest_checks(manifests: dict[str, dict[str, Any]]) -> list[tuple[str, CalibrationCheck]]:
    """(stage, check): the eval split's calibration checks (calibrate), then the evaluated split's (all rows)."""
    facts = RunFacts.from_manifests(manifests)
    fitted = facts.calibrate.calibration.checks if facts.calibrate else []
    overall = facts.evaluate.evaluation.get("all") if facts.evaluate else None
    held_out = overall.calibration.checks if overall and overall.calibration else []
    return [
        *(("calibrate", check) for check in stored_checks({"checks": fitted})),
        *(("evaluate", check) for check in stored_checks({"checks": held_out})),
    ]


def checks_markdown(checks: list[CalibrationCheck]) -> list[str]:
    """Checks as Markdown lines (report and model card): each warning as a quote, then each check passed."""
    lines = []
    for check in sorted(checks, key=lambda check: check.ok):
        lines += [f"**OK.** {check.text}" if check.ok else f"> **Warning.** {check.text}", ""]
    return lines
