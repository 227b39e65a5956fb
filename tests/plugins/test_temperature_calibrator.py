"""The ``temperature`` calibrator: temperature fit, netcal metrics, thresholds, plot and params."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from pydantic import ValidationError

from framework.evaluation.calibration import SMALL_BIN_ROWS
from framework.plugin_api import CalibrateContext, CalibrationResult
from framework.plugins.calibrators._plots import MIN_ALPHA, Panel, reliability_figure
from framework.plugins.calibrators._thresholds import smallest_threshold
from framework.plugins.calibrators.temperature import (
    TemperatureParams,
    calibration_errors,
    fit_global_threshold,
    fit_temperature,
    fit_thresholds,
    nll,
    softmax,
    temperature,
)
from framework.registry import calibrators

LABELS = ["Alarm", "Music", "Timer", "Weather", "OutOfScope"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic(seed: int = 0, n: int = 2000, scale: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """True logits and labels drawn from their softmax: ``true_logits`` are perfectly calibrated."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(size=(n, len(LABELS))) * scale
    cumulative = softmax(true_logits).cumsum(axis=1)
    labels = (cumulative > rng.random((n, 1))).argmax(axis=1)
    return true_logits, labels


def run(
    logits: np.ndarray, labels: np.ndarray, work_dir: Path, fallback: str | None = "OutOfScope", **params: object
) -> tuple[CalibrationResult, list[str]]:
    warnings: list[str] = []
    ctx = CalibrateContext(logits, labels, LABELS, fallback, work_dir, warn=warnings.append)
    return temperature(TemperatureParams.model_validate(params), ctx), warnings


def reference_errors(probs: np.ndarray, labels: np.ndarray, bins: int) -> tuple[float, float]:
    """Top-label ECE and MCE over equal-width bins [a, b) (the last one closed), written out plainly."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = mce = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence >= low) & ((confidence < high) if high < 1.0 else (confidence <= high))
        if inside.any():
            gap = abs(correct[inside].mean() - confidence[inside].mean())
            ece += inside.mean() * gap
            mce = max(mce, gap)
    return ece, mce


def accepted_precision(probs: np.ndarray, labels: np.ndarray, rows: np.ndarray, threshold: float) -> float:
    accepted = rows & (probs.max(axis=1) >= threshold)
    return float((probs.argmax(axis=1) == labels)[accepted].mean())


@pytest.fixture(scope="module")
def overconfident(tmp_path_factory: pytest.TempPathFactory) -> tuple[CalibrationResult, list[str], np.ndarray]:
    true_logits, labels = synthetic()
    result, warnings = run(3.0 * true_logits, labels, tmp_path_factory.mktemp("calibrate"))
    return result, warnings, labels


def test_registered_under_its_name() -> None:
    spec = calibrators.resolve("temperature")
    assert spec.func is temperature and spec.params is TemperatureParams


def test_softmax_is_stable_and_tempered() -> None:
    logits = np.array([[1e4, 0.0, -1e4], [2.0, 1.0, 0.0]])
    probs = softmax(logits)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0)
    assert probs[0, 0] == pytest.approx(1.0)
    assert np.allclose(softmax(logits + 123.0), probs)
    assert np.allclose(softmax(logits[1:], 2.0), softmax(logits[1:] / 2.0))


@pytest.mark.parametrize(("scale", "expected"), [(3.0, 3.0), (0.5, 0.5)])
def test_fit_recovers_the_miscalibration_factor(scale: float, expected: float) -> None:
    true_logits, labels = synthetic()
    fitted = fit_temperature(scale * true_logits, labels)
    assert fitted == pytest.approx(expected, rel=0.1)
    assert nll(scale * true_logits, labels, fitted) <= nll(scale * true_logits, labels, expected) + 1e-9


def test_overconfident_model_is_cooled_and_ece_drops(overconfident) -> None:
    result, warnings, _ = overconfident
    metrics = result.metrics
    assert result.temperature == pytest.approx(3.0, rel=0.1)
    assert metrics["ece_after"] < 0.05 < metrics["ece_before"]
    assert metrics["mce_after"] < metrics["mce_before"]
    assert metrics["nll_after"] < metrics["nll_before"]
    assert metrics["brier_after"] < metrics["brier_before"]
    assert (metrics["bins"], metrics["n"]) == (15, 2000)
    # the labels are drawn from the true probabilities: once cooled, the ECE left is chance, not miscalibration
    assert metrics["ece_after"] < metrics["ece_noise_p95"] < metrics["ece_before"]
    assert not any("bound" in warning for warning in warnings)


def test_ece_matches_a_reference_binning() -> None:
    true_logits, labels = synthetic(seed=3, n=700)
    for probs in (softmax(3.0 * true_logits), softmax(true_logits)):
        for bins in (2, 10, 15):
            assert calibration_errors(probs, labels, bins) == pytest.approx(reference_errors(probs, labels, bins))


def test_ece_survives_an_eval_split_with_two_intents() -> None:
    """netcal 1.4.0 reads <= 2 distinct labels as binary flags and raises for more columns; we do not."""
    from netcal.metrics import ECE

    true_logits, labels = synthetic(seed=4, n=300)
    two = np.where(labels % 2 == 0, 0, 2)
    probs = softmax(true_logits)
    with pytest.raises(RuntimeError, match="binary"):
        ECE(10).measure(probs, two)
    assert calibration_errors(probs, two, 10) == pytest.approx(reference_errors(probs, two, 10))
    assert calibration_errors(probs, labels, 10)[0] == pytest.approx(ECE(10).measure(probs, labels))


def test_temperature_is_kept_within_bounds_and_warns(tmp_path: Path) -> None:
    true_logits, labels = synthetic(n=500)
    result, warnings = run(3.0 * true_logits, labels, tmp_path, bounds=(0.1, 2.0))
    assert result.temperature == pytest.approx(2.0, rel=1e-3)
    [warning] = [w for w in warnings if "bound" in w]
    assert "overconfident" in warning and "calibrate.bounds" in warning

    separable = np.eye(len(LABELS))[labels] * 5.0
    result, warnings = run(separable, labels, tmp_path, bounds=(0.5, 20.0))
    assert result.temperature == pytest.approx(0.5, rel=1e-3)
    assert any("bound" in w and "perfectly separated" in w for w in warnings)


def test_thresholds_are_the_smallest_that_meet_the_target(overconfident) -> None:
    result, _, labels = overconfident
    probs = softmax(3.0 * synthetic()[0], result.temperature)
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    for index, name in enumerate(LABELS[:-1]):
        mine = predicted == index
        threshold = result.thresholds[name]
        assert accepted_precision(probs, labels, mine, threshold) >= 0.95
        lower = confidence[mine & (confidence < threshold)]
        assert all(accepted_precision(probs, labels, mine, cut) < 0.95 for cut in lower)
    kept = predicted != LABELS.index("OutOfScope")
    assert accepted_precision(probs, labels, kept, result.global_threshold) >= 0.95
    metrics = result.metrics
    assert metrics["precision_at_thresholds"] >= 0.95 and 0 < metrics["coverage_at_thresholds"] < 1


def test_fallback_intent_gets_no_threshold(overconfident) -> None:
    result, _, _ = overconfident
    assert set(result.thresholds) == set(LABELS) - {"OutOfScope"}
    assert set(result.metrics["threshold_support"]) == set(LABELS) - {"OutOfScope"}
    assert sum(result.metrics["threshold_support"].values()) < 2000


def test_unreachable_target_uses_max_threshold_and_warns() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8], [0.1, 0.9]] * 2)
    labels = np.array([1, 1, 0, 1, 1] * 2)  # 'A' is right 1 time in 3: best precision 1/3
    warnings: list[str] = []
    thresholds, support = fit_thresholds(probs, labels, ["A", "B"], 0.9, 2, 0.97, warn=warnings.append)
    assert thresholds == {"A": 0.97, "B": pytest.approx(0.8)}
    assert support == {"A": 6, "B": 4}
    [warning] = warnings
    assert "'A'" in warning and "best 0.333" in warning and "0.97" in warning


def test_low_support_intents_keep_the_global_threshold(tmp_path: Path) -> None:
    true_logits, labels = synthetic(n=400)
    result, _ = run(true_logits, labels, tmp_path, min_support=10_000, global_threshold=0.6)
    assert result.global_threshold == 0.6
    assert result.thresholds == dict.fromkeys(LABELS[:-1], 0.6)


def test_global_threshold_is_fitted_and_capped() -> None:
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.6, 0.4], [0.55, 0.45]])
    labels = np.array([0, 0, 0, 1])
    assert fit_global_threshold(probs, labels, 1.0, 0.99) == pytest.approx(0.6)
    assert fit_global_threshold(probs, labels, 1.0, 0.7) == pytest.approx(0.6)
    assert fit_global_threshold(probs, labels, 1.0, 0.5) == 0.5
    warnings: list[str] = []
    assert fit_global_threshold(probs, labels, 1.0, 0.99, skip_ids=[0], warn=warnings.append) == 0.99
    assert "fallback" in warnings[0]


def test_ties_are_accepted_or_rejected_together() -> None:
    confidence = np.array([0.9, 0.8, 0.8, 0.7])
    correct = np.array([1.0, 1.0, 0.0, 1.0])
    assert smallest_threshold(confidence, correct, 0.75) == (pytest.approx(0.7), pytest.approx(1.0))
    assert smallest_threshold(confidence, correct, 0.8) == (pytest.approx(0.9), pytest.approx(1.0))


def test_reliability_plot_is_a_png(overconfident) -> None:
    result, _, _ = overconfident
    [plot] = result.plots
    assert plot.name == "reliability.png" and plot.is_file()
    data = plot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > height > 100


def test_worst_bins_name_the_bin_behind_each_mce(overconfident) -> None:
    result, _, _ = overconfident
    for when in ("before", "after"):
        worst = result.metrics[f"worst_bin_{when}"]
        assert abs(worst["accuracy"] - worst["confidence"]) == pytest.approx(result.metrics[f"mce_{when}"], abs=1e-9)
        assert 1 <= worst["rows"] <= result.metrics["n"] and worst["high"] - worst["low"] == pytest.approx(1 / 15)


def _rgb(color: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(c, 3) for c in color[:3])


def _colours(artists: list) -> set[tuple[float, ...]]:
    """Every visible face, edge (hatch) and line colour the artists draw, without alpha."""
    seen = set()
    for artist in artists:
        for getter in ("get_facecolor", "get_edgecolor", "get_color"):
            color = getattr(artist, getter, lambda: None)()
            if color is not None and to_rgba(color)[3] > 0:
                seen.add(_rgb(to_rgba(color)))
    return seen


def test_reliability_diagram_counts_rows_fades_small_bins_and_legends_every_colour() -> None:
    # 0.35: one wrong row; 0.65: 300 rows right 90% of the time (under-confident); 0.95: 200 rows right 75% (over)
    confidence = np.array([0.95] * 200 + [0.65] * 300 + [0.35])
    correct = np.array([1.0] * 150 + [0.0] * 50 + [1.0] * 270 + [0.0] * 30 + [0.0])
    figure = reliability_figure([Panel("after", confidence, correct)], bins=10)
    reliability_ax, count_ax = figure.axes
    [legend] = figure.legends
    drawn = _colours([*reliability_ax.patches, *reliability_ax.lines])
    named = _colours(legend.legend_handles)
    assert drawn <= named, f"colours drawn without a legend entry: {drawn - named}"
    assert {_rgb((0.839, 0.153, 0.157, 1)), _rgb((1.0, 0.498, 0.055, 1))} <= drawn  # over- and under-confidence
    labels = [text.get_text() for text in legend.texts]
    assert labels == [
        "accuracy of the bin",
        "over-confident: confidence above accuracy",
        "under-confident: accuracy above confidence",
        f"faded: under {SMALL_BIN_ROWS} rows",
        "perfect calibration",
    ]
    assert [text.get_text() for text in count_ax.texts] == ["1", "300", "200"]  # one count per non-empty bin
    alpha = {round(patch.get_x() + patch.get_width() / 2, 2): patch.get_alpha() for patch in reliability_ax.patches}
    assert alpha == {0.35: MIN_ALPHA, 0.65: 1.0, 0.95: 1.0}  # the one-row bin is faded, gap included
    assert count_ax.get_yscale() == "log"


def test_calibration_is_deterministic(tmp_path: Path) -> None:
    true_logits, labels = synthetic(seed=7, n=500)
    first, _ = run(2.0 * true_logits, labels, tmp_path / "a")
    second, _ = run(2.0 * true_logits, labels, tmp_path / "b")
    assert (first.temperature, first.thresholds, first.global_threshold, first.metrics) == (
        second.temperature,
        second.thresholds,
        second.global_threshold,
        second.metrics,
    )
    assert first.plots[0].read_bytes() == second.plots[0].read_bytes()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bounds": (20.0, 0.05)}, "0 < low < high"),
        ({"bounds": (0.0, 1.0)}, "0 < low < high"),
        ({"bins": 1}, "greater than or equal to 2"),
        ({"target_precision": 1.5}, "less than or equal to 1"),
        ({"global_threshold": 0.995}, "must not exceed max_threshold"),
        ({"temprature": 2.0}, "Extra inputs are not permitted"),
    ],
)
def test_params_are_validated(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TemperatureParams.model_validate(params)


def test_bad_logits_are_refused(tmp_path: Path) -> None:
    logits = np.zeros((3, len(LABELS)))
    logits[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        run(logits, np.array([0, 1, 2]), tmp_path)
    with pytest.raises(ValueError, match="label_ids must lie"):
        run(np.zeros((2, len(LABELS))), np.array([0, 9]), tmp_path)
