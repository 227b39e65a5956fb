"""Calibration checks in plain words (framework.evaluation.calibration.calibration_checks) and their three renderers:
the run summary, the Markdown report and the model card all show the same sentences."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from framework.cli.summary import model_table, print_calibration_checks
from framework.config.schema import IntentSpec, RecipeConfig
from framework.evaluation.calibration import (
    SMALL_BIN_ROWS,
    CalibrationCheck,
    EceNoise,
    WorstBin,
    bin_gap_chance,
    calibration_checks,
    stored_checks,
)
from framework.evaluation.model_card import render_card
from framework.plugin_api import ReportContext
from framework.plugins.reporters.markdown import Params, markdown
from framework.stages.calibrate import eval_checks
from framework.stages.evaluate import add_calibration_checks

NOISE = EceNoise(mean=0.0007, p95=0.0031)
ONE_ROW_BIN = WorstBin(low=11 / 15, high=12 / 15, rows=1, accuracy=0.0, confidence=0.7733)
DEFAULT_RUN_EVAL = {  # the default run's eval-split calibration metrics (MCE rose on a one-row bin)
    "ece_before": 0.0555,
    "ece_after": 0.0031,
    "mce_before": 0.4437,
    "mce_after": 0.7733,
    "ece_noise_mean": 0.0019,
    "ece_noise_p95": 0.0030,
    "worst_bin_after": ONE_ROW_BIN.to_dict(),
    "n": 878,
}
ECE_ABOVE = (
    "Test ECE 0.0052 is above what a perfectly calibrated model would show on 1,020 rows (95th percentile 0.0031): "
    "the confidences are measurably off (confidence and accuracy differ by 0.52 percentage points on average)."
)
MCE_ROSE = (
    "MCE rose with calibration (0.4437 -> 0.7733). MCE is the gap between confidence and accuracy in the single "
    "worst bin, so one bin decides it: here confidences 0.73-0.80, 1 of 878 eval rows (accuracy 0.00, mean "
    "confidence 0.77); one row more or less right moves its accuracy by 1.00; a perfectly calibrated bin of 1 row "
    "at that confidence shows a gap this large 23% of the time, so this MCE is noise."
)


def test_held_out_ece_above_the_chance_p95_is_a_warning_with_what_to_do() -> None:
    [check] = calibration_checks("test", 1020, 0.0052, NOISE, fitted_here=False)
    assert check.check == "ece_vs_chance" and check.ok is False
    assert check.text.startswith(ECE_ABOVE)
    assert "split.ratios.eval" in check.text and "real labelled rows" in check.text


def test_ece_on_the_rows_the_temperature_was_fitted_on_says_so() -> None:
    [check] = calibration_checks("eval", 878, 0.0040, NOISE, fitted_here=True)
    assert not check.ok
    assert check.text.startswith("Eval ECE 0.0040 after calibration is above what a perfectly calibrated model")
    assert "even on the rows the temperature was fitted on" in check.text


@pytest.mark.parametrize("ece", [0.0012, 0.0031])  # below, and exactly at, the 95th percentile
def test_ece_within_chance_is_said_briefly(ece: float) -> None:
    [check] = calibration_checks("test", 1020, ece, NOISE, fitted_here=False)
    assert check.ok is True
    assert check.text == (
        f"Test ECE {ece:.4f} is within what a perfectly calibrated model would show on 1,020 rows "
        "(95th percentile 0.0031): no miscalibration measurable on this many rows."
    )


def test_unknown_noise_gives_no_ece_verdict() -> None:
    assert calibration_checks("test", 0, 0.2, EceNoise(float("nan"), float("nan")), fitted_here=False) == []


def test_mce_rising_on_a_one_row_bin_is_explained_as_noise_with_the_ece_trend() -> None:
    checks = calibration_checks(
        "eval",
        878,
        0.0031,
        EceNoise(0.0019, 0.0030),
        fitted_here=True,
        ece_before=0.0555,
        mce_before=0.4437,
        mce=0.7733,
        worst=ONE_ROW_BIN,
    )
    assert [c.check for c in checks] == ["ece_vs_chance", "mce_rose"]
    mce = checks[1]
    assert mce.ok is False and mce.text.startswith(MCE_ROSE)
    assert "ECE, which weights every bin by its rows, falls (here 0.0555 -> 0.0031)" in mce.text


def test_mce_rising_on_a_full_bin_is_called_real_and_a_rising_ece_too() -> None:
    full = WorstBin(low=0.6, high=2 / 3, rows=SMALL_BIN_ROWS * 4, accuracy=0.40, confidence=0.63)
    checks = calibration_checks(
        "eval", 900, 0.09, NOISE, fitted_here=True, ece_before=0.05, mce_before=0.1, mce=0.23, worst=full
    )
    text = checks[1].text
    assert (
        "120 of 900 eval rows (accuracy 0.40, mean confidence 0.63); a perfectly calibrated bin of 120 rows at that "
        "confidence shows a gap this large less than 1% of the time: confidences in that range are off" in text
    )
    assert "noise" not in text and "moves its accuracy" not in text
    assert "ECE rose too (0.0500 -> 0.0900): calibration made these confidences worse overall." in text


def test_mce_on_a_small_bin_beyond_chance_is_not_waved_away_as_noise() -> None:
    ten_wrong = WorstBin(low=11 / 15, high=12 / 15, rows=10, accuracy=0.0, confidence=0.77)
    [_, check] = calibration_checks(
        "eval", 878, 0.002, NOISE, fitted_here=True, mce_before=0.4, mce=0.77, worst=ten_wrong
    )
    assert "10 of 878 eval rows" in check.text and "moves its accuracy by 0.10" in check.text
    assert "a perfectly calibrated bin of 10 rows at that confidence shows a gap this large less than 1%" in check.text
    assert "noise" not in check.text


@pytest.mark.parametrize(("before", "after"), [(0.7733, 0.4437), (0.3, 0.3)])
def test_mce_that_falls_or_holds_gives_no_warning(before: float, after: float) -> None:
    checks = calibration_checks(
        "eval", 878, 0.001, NOISE, fitted_here=True, ece_before=0.05, mce_before=before, mce=after, worst=ONE_ROW_BIN
    )
    assert [c.check for c in checks] == ["ece_vs_chance"] and checks[0].ok


def test_stored_checks_read_back_and_skip_malformed_entries() -> None:
    check = CalibrationCheck("ece_vs_chance", False, "Test ECE is off")
    facts = {"checks": [check.to_dict(), {"check": "x"}, "text", {"text": 3}]}
    assert stored_checks(facts) == [check]
    assert stored_checks({"checks": "nope"}) == stored_checks(None) == stored_checks({}) == []


def test_calibrate_stage_builds_eval_checks_from_the_calibrators_metrics() -> None:
    checks = eval_checks(DEFAULT_RUN_EVAL, 878)
    assert [(c["check"], c["ok"]) for c in checks] == [("ece_vs_chance", False), ("mce_rose", False)]
    assert checks[0]["text"].startswith("Eval ECE 0.0031 after calibration is above what a perfectly calibrated")
    assert checks[1]["text"].startswith(MCE_ROSE)
    assert eval_checks({"ece_after": 0.01}, 10) == []  # a calibrator without noise figures: nothing to judge


def test_evaluate_stage_puts_checks_beside_each_parts_held_out_ece() -> None:
    part = {"n": 1020, "calibration": {"ece": 0.0052, "ece_noise_mean": 0.0007, "ece_noise_p95": 0.0031}}
    evaluation = {"all": part, "real": None, "synthetic": {"n": 3}}
    add_calibration_checks(evaluation, "test")
    [check] = part["calibration"]["checks"]
    assert check["ok"] is False and check["text"].startswith(ECE_ABOVE)
    assert "checks" not in evaluation["synthetic"]


EXPORTED = {"reference_accuracy": 0.99, "exported_accuracy": 0.99, "accuracy_drop": 0.0}


def manifests() -> dict[str, dict]:
    """A run whose eval MCE rose on a one-row bin and whose test ECE is above chance (the default run's numbers)."""
    calibration = {
        "temperature": 0.4515,
        "thresholds": {"FindCallers": 0.9},
        "global_threshold": 0.68,
        "fallback_intent": "Ambiguous",
        **DEFAULT_RUN_EVAL,
        "worst_bin_before": {"low": 0.4, "high": 0.4667, "rows": 9, "accuracy": 0.0, "confidence": 0.4437},
    }
    calibration["checks"] = eval_checks(calibration, 878)
    held_out = {"ece": 0.0052, "mce": 0.0052, "ece_noise_mean": 0.0007, "ece_noise_p95": 0.0031, "ece_bins": 15}
    part = {"n": 1020, "accuracy": 0.99, "macro_f1": 0.99, "evidence": "synthetic", "calibration": held_out}
    evaluation = {"all": part, "real": None, "synthetic": part}
    add_calibration_checks({"all": part}, "test")
    return {
        "train": {"train": {"model": "tiny", "epochs_run": 2, "best_epoch": 2}, "model_dir": "model", "max_length": 32},
        "export": {"export": {**EXPORTED, "max_accuracy_drop": 0.02}, "model_file": "model.onnx"},
        "calibrate": {"calibration": calibration, "plots": []},
        "evaluate": {
            "evaluation": evaluation,
            "evaluated_split": "test",
            "decisions": {"accept": 1000, "abstain": 20},
            "plots": [],
        },
    }


def test_summary_prints_every_check_and_the_chance_percentile() -> None:
    console = Console(file=io.StringIO(), width=2000, color_system=None)
    facts = manifests()
    print_calibration_checks(console, facts)
    console.print(model_table(facts))
    out = console.file.getvalue()
    lines = out.splitlines()
    assert lines[0].startswith("warning calibrate: Eval ECE 0.0031 after calibration is above")
    assert lines[1].startswith(f"warning calibrate: {MCE_ROSE}")
    assert lines[2].startswith(f"warning evaluate: {ECE_ABOVE}")
    assert "0.0052 (chance level 0.0007, 95th percentile 0.0031)" in out
    assert "MCE on eval, before -> after" in out and "0.4437 -> 0.7733" in out


def test_report_shows_each_check_where_its_metric_is(tmp_path: Path) -> None:
    facts = manifests()
    stage_dirs = {name: tmp_path / name for name in facts}
    ctx = ReportContext("code_search", "recipes/code_search.yaml", tmp_path / "run", facts, stage_dirs)
    text = markdown(Params(), ctx).read_text(encoding="utf-8")
    calibration, evaluation = text.index("## Calibration"), text.index("## Evaluation")
    assert calibration < text.index(f"> **Warning.** {MCE_ROSE}") < evaluation
    assert evaluation < text.index(f"> **Warning.** {ECE_ABOVE}")
    assert "| worst_bin | 0.40-0.47: 9 rows, accuracy 0.00, confidence 0.44 | 0.73-0.80: 1 row, accuracy 0.00" in text
    assert "`checks`" not in text  # rendered as sentences, not as a raw key


def card_recipe() -> SimpleNamespace:
    """What ``render_card`` reads of a recipe: a real config with one intent, and the recipe's file."""
    config = RecipeConfig.model_construct(name="cs", description="", intents={"FindCallers": IntentSpec()})
    return SimpleNamespace(config=config, source="r.yaml")


def test_model_card_shows_the_warnings_before_the_checks_passed() -> None:
    facts = manifests()
    facts["calibrate"]["calibration"]["checks"][0] = CalibrationCheck("ece_vs_chance", True, "Eval is fine.").to_dict()
    recipe = card_recipe()
    card = render_card(recipe, facts, {"test": {"synthetic": 1020}})
    section = card[card.index("### Calibration checks") :]
    assert section.index(f"> **Warning.** {MCE_ROSE}") < section.index(f"> **Warning.** {ECE_ABOVE}")
    assert section.index(f"> **Warning.** {ECE_ABOVE}") < section.index("**OK.** Eval is fine.")


def test_no_checks_no_section() -> None:
    facts = manifests()
    del facts["calibrate"]["calibration"]["checks"], facts["evaluate"]["evaluation"]["all"]["calibration"]["checks"]
    recipe = card_recipe()
    assert "Calibration checks" not in render_card(recipe, facts, {})
    console = Console(file=io.StringIO(), width=2000, color_system=None)
    print_calibration_checks(console, facts)
    assert console.file.getvalue() == ""


@pytest.mark.parametrize(
    ("confidence", "rows", "accuracy", "expected"),
    [
        (0.81, 1, 0.0, 0.19),  # one wrong row at 0.81: a calibrated model errs there 19% of the time
        (0.62, 2, 0.0, 0.38**2),  # both wrong; one right (gap 0.12) and both right (gap 0.38) are closer
        (0.77, 10, 0.0, 0.23**10),
        (1.0, 5, 0.8, 0.0),  # a calibrated model at confidence 1 never errs
        (0.5, 4, 0.5, 1.0),  # no gap: every outcome is at least as far
    ],
)
def test_bin_gap_chance_is_the_exact_binomial_tail(
    confidence: float, rows: int, accuracy: float, expected: float
) -> None:
    assert bin_gap_chance(confidence, rows, accuracy) == pytest.approx(expected, abs=1e-12)
