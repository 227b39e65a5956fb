"""ECE measurement and the sampling noise of an ECE estimate (framework.evaluation.calibration)."""

from __future__ import annotations

import numpy as np
import pytest
from netcal.metrics import ECE, MCE

from framework.errors import GateFailed
from framework.evaluation.calibration import (
    bin_stats,
    binned_ece,
    ece_noise,
    simulated_eces,
    top_label_errors,
    worst_bin,
)
from framework.stages.calibrate import _ece_gate


@pytest.mark.parametrize(("rows", "bins"), [(7, 15), (500, 15), (3000, 10), (3000, 100)])
def test_binned_ece_equals_netcal_on_bin_edges_and_random_data(rows: int, bins: int) -> None:
    rng = np.random.default_rng(rows + bins)
    confidence = rng.beta(6, 1, rows)
    confidence[:5] = [1.0, 0.0, 1 / bins, 2 / bins, 0.5][: min(5, rows)]
    correct = (rng.random(rows) < 0.8).astype(float)
    assert binned_ece(confidence, correct, bins) == pytest.approx(ECE(bins).measure(confidence, correct), abs=1e-12)
    assert top_label_errors(confidence, correct, bins)[0] == pytest.approx(binned_ece(confidence, correct, bins))


def test_noise_shrinks_with_more_rows_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.beta(8, 1, 100), rng.beta(8, 1, 10_000)
    assert ece_noise(small, 15).mean > 3 * ece_noise(large, 15).mean
    assert ece_noise(small, 15) == ece_noise(small, 15)
    noise = ece_noise(small, 15)
    assert 0 < noise.mean < noise.p95


def test_a_calibrated_sample_sits_within_the_noise_and_a_miscalibrated_one_far_above() -> None:
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1.0, 2000)
    calibrated = (rng.random(2000) < confidence).astype(float)  # right with exactly the stated probability
    overconfident = (rng.random(2000) < confidence - 0.2).astype(float)
    noise = ece_noise(confidence, 15)
    assert top_label_errors(confidence, calibrated, 15)[0] < noise.p95
    assert top_label_errors(confidence, overconfident, 15)[0] > 5 * noise.p95


def test_simulated_eces_match_netcal_on_the_same_draws() -> None:
    confidence = np.random.default_rng(2).uniform(0.3, 1.0, 300)
    simulated = simulated_eces(confidence, 15, draws=3, seed=7)
    rng = np.random.default_rng(7)
    for value in simulated:
        drawn = (rng.random(300) < confidence).astype(float)
        assert value == pytest.approx(ECE(15).measure(confidence, drawn), abs=1e-12)


def test_empty_confidences_give_nan_not_an_error() -> None:
    noise = ece_noise(np.array([]), 15)
    assert np.isnan(noise.mean) and np.isnan(noise.p95)


def test_gate_says_whether_a_failure_is_within_chance_and_warns_on_a_pass_within_it() -> None:
    warnings: list[str] = []
    metrics = {"ece_after": 0.021, "ece_before": 0.03, "ece_noise_mean": 0.0187, "ece_noise_p95": 0.0262, "n": 989}
    with pytest.raises(GateFailed, match=r"0\.0210.*max_ece=0\.02, but within what chance alone gives on 989"):
        _ece_gate(metrics, 0.02, warnings.append)
    with pytest.raises(GateFailed, match=r"0\.0400.*max_ece=0\.03 \(chance alone gives 0\.0187 on these rows\)"):
        _ece_gate({**metrics, "ece_after": 0.04}, 0.03, warnings.append)
    assert warnings == []

    _ece_gate(metrics, 0.022, warnings.append)  # passes, at a limit below the p95 of chance
    assert len(warnings) == 1 and "989 eval rows" in warnings[0] and "above 0.0262" in warnings[0]
    warnings.clear()
    _ece_gate(metrics, 0.05, warnings.append)  # a limit clear of the noise: silent pass
    _ece_gate({"ece_after": 0.01}, 0.015, warnings.append)  # a calibrator without noise figures: no warning
    assert warnings == []
    with pytest.raises(GateFailed, match=r"max_ece=0\.005\. More eval rows"):
        _ece_gate({"ece_after": 0.01}, 0.005, warnings.append)


@pytest.mark.parametrize(("rows", "bins"), [(7, 15), (500, 15), (3000, 10)])
def test_worst_bin_is_the_bin_netcal_takes_its_mce_from(rows: int, bins: int) -> None:
    rng = np.random.default_rng(rows)
    confidence = rng.beta(6, 1, rows)
    correct = (rng.random(rows) < 0.8).astype(float)
    worst = worst_bin(confidence, correct, bins)
    assert worst is not None
    assert worst.gap == pytest.approx(MCE(bins).measure(confidence, correct), abs=1e-12)
    inside = (confidence >= worst.low) & (confidence < worst.high)
    assert worst.rows == inside.sum() > 0
    assert worst.accuracy == pytest.approx(correct[inside].mean())
    assert worst.confidence == pytest.approx(confidence[inside].mean())


def test_bin_stats_count_every_row_once_and_find_a_lone_row() -> None:
    confidence = np.array([0.99] * 50 + [0.75, 1.0, 0.0])
    correct = np.array([1.0] * 49 + [0.0, 0.0, 1.0, 0.0])  # the 0.75 row wrong: a gap of 0.75 in its own bin
    counts, accuracy, _ = bin_stats(confidence, correct, 10)
    assert counts.tolist() == [1, 0, 0, 0, 0, 0, 0, 1, 0, 51]  # 1.0 falls in the last, closed bin
    assert np.isnan(accuracy[1]) and accuracy[9] == pytest.approx(50 / 51)
    worst = worst_bin(confidence, correct, 10)
    assert (worst.low, worst.high, worst.rows, worst.accuracy) == (pytest.approx(0.7), pytest.approx(0.8), 1, 0.0)
    assert worst_bin(np.array([]), np.array([]), 10) is None
