"""The ``markdown`` reporter, on a fake run with realistic manifests and stage directories."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from framework.evaluation.calibration import EceNoise, WorstBin, calibration_checks
from framework.evaluation.metrics import evaluate_rows
from framework.plugin_api import ReportContext
from framework.plugins.reporters.markdown import MIXED_NOTE, REAL_NOTE, SYNTHETIC_BANNER, Params, markdown
from framework.registry import reporters
from framework.stages.evaluate import add_calibration_checks

LABELS = ["FindCallers", "TextSearch", "Ambiguous"]
FAKE_PNG = b"\x89PNG\r\n\x1a\n-not-really-an-image"
VERSIONS = {"python": "3.11.9", "intentcraft": "0.1.0"}


def stage(name: str, **details: object) -> dict:
    base = {"stage": name, "fingerprint": f"{name}-fp", "seconds": 1.5, "started_at": "2026-01-01T10:00:00+0000"}
    return {**base, "warnings": [], "versions": VERSIONS, **details}


def evaluation(synthetic: list[bool]) -> dict:
    truth = ["FindCallers", "TextSearch", "Ambiguous", "FindCallers"]
    rows = [
        {"id": str(i), "text": f"who calls f{i}", "intent": t, "source": "templates", "provenance": {"synthetic": s}}
        for i, (t, s) in enumerate(zip(truth, synthetic, strict=True))
    ]
    y_pred = ["FindCallers", "FindCallers", "Ambiguous", "TextSearch"]
    routed, decisions = ["FindCallers", "FindCallers", None, None], ["accept", "accept", "abstain", "abstain"]
    return evaluate_rows(rows, y_pred, [0.9, 0.8, 0.4, 0.3], routed, decisions, LABELS, "Ambiguous")


def manifests(synthetic: list[bool]) -> dict[str, dict]:
    split_counts = {"FindCallers": {"train": 80, "eval": 10, "test": 10}, "TextSearch": {"train": 79, "eval": 10}}
    return {
        "generate": stage("generate", counts={"rows": 220, "per_intent": {"FindCallers": 110, "TextSearch": 110}}),
        "validate": stage(
            "validate",
            counts={
                "input": 220,
                "accepted": 210,
                "rejected": 10,
                "accepted_per_intent": {"FindCallers": 105},
                "rejected_per_layer": {"quality": {"too_short": 10}},
            },
            examples={"quality": {"too_short": "fewer than 2 words — 'who'"}},
        ),
        "split": stage("split", counts={"input": 210, "kept": 200, "per_intent": split_counts, "dropped": {"x": 1}}),
        "train": stage("train", train={"model": "tiny-bert", "history": [{"epoch": 1, "loss": 0.52, "seconds": 3.0}]}),
        "export": stage(
            "export", export={"reference_accuracy": 0.95, "accuracy_drop": 0.01, "sizes_bytes": {"int8": 2**20}}
        ),
        "calibrate": stage(
            "calibrate",
            calibration={
                "temperature": 1.7,
                "ece_before": 0.0812,
                "ece_after": 0.0213,
                "thresholds": {"TextSearch": 0.4},
            },
            plots=["reliability.png", "missing.png", "../outside.png"],
            warnings=["fitted temperature sits on a bound " + "x" * 200 + " | widen calibrate.bounds"],
        ),
        "evaluate": stage(
            "evaluate",
            evaluation=evaluation(synthetic),
            evaluated_split="test",
            decisions={"accept": 3, "abstain": 1},
            plots=["confusion_matrix.png"],
        ),
        "bundle": stage("bundle", bundle_dir="bundle"),
    }


def make_ctx(tmp_path: Path, manifests: dict[str, dict]) -> ReportContext:
    stage_dirs = {}
    for name in manifests:
        directory = tmp_path / "cache" / name
        directory.mkdir(parents=True)
        for plot in manifests[name].get("plots", []):
            if plot != "missing.png":
                (directory / plot).write_bytes(FAKE_PNG)
        stage_dirs[name] = directory
    run_dir = tmp_path / "runs" / "code_search"
    return ReportContext("code_search", "recipes/code_search.yaml", run_dir, manifests, stage_dirs)


def report_text(tmp_path: Path, manifests: dict[str, dict], **params: object) -> str:
    path = markdown(Params.model_validate(params), make_ctx(tmp_path, manifests))
    assert path == tmp_path / "runs" / "code_search" / "report.md"
    return path.read_text(encoding="utf-8")


def test_full_report_has_every_section_in_order(tmp_path: Path) -> None:
    text = report_text(tmp_path, manifests([True] * 4))
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Summary",
        "## Data",
        "## Training",
        "## Export",
        "## Calibration",
        "## Evaluation",
        "## Stage manifests",
    ]
    assert text.startswith("# intentcraft report: code_search\n")
    assert f"| bundle | `{tmp_path / 'cache' / 'bundle' / 'bundle'}` |" in text  # inside the bundle stage
    assert "| FindCallers | 110 | 105 | 80 | 10 | 10 |" in text  # generated, accepted, train, eval, test
    assert "| quality | too_short | 10 | fewer than 2 words — 'who' |" in text
    assert "| 1 | 0.5200 | 3.0000 |" in text  # training history
    assert "| int8 | 1.00 MiB (1,048,576 bytes) |" in text
    assert "Evaluated on the **test** split." in text
    assert "| ece | 0.0812 | 0.0213 |" in text and "| TextSearch | 0.4000 |" in text
    assert "| who calls f1 | TextSearch | FindCallers | 0.8000 | templates |" in text  # worst mistake first
    # held-out calibration on test: right at 0.9 and 0.4, wrong at 0.8 and 0.3, one row per bin
    assert "### Calibration on these rows" in text
    assert "| ECE of the calibrated confidences | 0.4500 |" in text and "| MCE | 0.8000 |" in text
    assert "| evaluate | `evaluate-fp` | 2026-01-01T10:00:00+0000 | 1.5000 | 0 |" in text
    assert "Versions: python 3.11.9, intentcraft 0.1.0" in text
    assert "| calibrate | `calibrate-fp` | 2026-01-01T10:00:00+0000 | 1.5000 | 1 |" in text
    assert "- **calibrate**: fitted temperature sits on a bound " + "x" * 200 + " | widen calibrate.bounds" in text


def test_plots_are_copied_and_linked_relatively(tmp_path: Path) -> None:
    text = report_text(tmp_path, manifests([True] * 4))
    assets = tmp_path / "runs" / "code_search" / "report_assets"
    assert "![reliability](report_assets/calibrate-reliability.png)" in text
    assert "![confusion matrix](report_assets/evaluate-confusion_matrix.png)" in text
    assert (assets / "calibrate-reliability.png").read_bytes() == FAKE_PNG
    assert (assets / "evaluate-confusion_matrix.png").read_bytes() == FAKE_PNG
    assert "_Plot `missing.png` is missing from the calibrate stage._" in text
    assert "_Plot `../outside.png` is missing" in text  # never copied from outside the stage directory
    assert sorted(p.name for p in assets.iterdir()) == ["calibrate-reliability.png", "evaluate-confusion_matrix.png"]
    assert "](/" not in text and f"]({tmp_path}" not in text


def test_synthetic_banner_only_for_synthetic_evidence(tmp_path: Path) -> None:
    synthetic = report_text(tmp_path / "s", manifests([True] * 4))
    real = report_text(tmp_path / "r", manifests([False] * 4))
    assert SYNTHETIC_BANNER in synthetic and REAL_NOTE not in synthetic
    assert "| accuracy (test split, synthetic rows) |" in synthetic
    assert SYNTHETIC_BANNER not in real and REAL_NOTE in real
    assert "| accuracy (test split, real rows) |" in real


def test_mixed_evidence_reports_real_and_synthetic_parts_apart(tmp_path: Path) -> None:
    text = report_text(tmp_path, manifests([False, False, True, True]))
    assert MIXED_NOTE in text
    real, synthetic = text.index("### Real rows (benchmark evidence)"), text.index("### Synthetic rows")
    assert real < text.index(REAL_NOTE) < synthetic < text.index(SYNTHETIC_BANNER)
    assert text.count(SYNTHETIC_BANNER) == 1
    summary = text[: text.index("## Data")]
    first = summary.index("| accuracy (test split, 2 real rows: benchmark evidence) | 50.00% |")
    assert first < summary.index("| accuracy (test split, mixed rows) |")  # the real rows' number comes first


def test_calibration_checks_are_written_out_where_their_metrics_are(tmp_path: Path) -> None:
    run = manifests([False, False, True, True])
    add_calibration_checks(run["evaluate"]["evaluation"], "test")  # as the evaluate stage does: 2 rows per part
    worst = WorstBin(low=0.6, high=2 / 3, rows=2, accuracy=0.0, confidence=0.62)
    eval_checks = calibration_checks(
        "eval",
        20,
        0.0213,
        EceNoise(0.004, 0.009),
        fitted_here=True,
        ece_before=0.0812,
        mce_before=0.3,
        mce=0.62,
        worst=worst,
    )
    run["calibrate"]["calibration"].update(mce_before=0.3, mce_after=0.62, checks=[c.to_dict() for c in eval_checks])
    text = report_text(tmp_path, run)
    calibration, real, synthetic = (text.index(h) for h in ("## Calibration", "### Real rows", "### Synthetic rows"))
    ece_warning = text.index(
        "> **Warning.** Eval ECE 0.0213 after calibration is above what a perfectly calibrated model would show on 20 "
        "rows (95th percentile 0.0090): the confidences are measurably off (confidence and accuracy differ by 2.13 "
        "percentage points on average), even on the rows the temperature was fitted on"
    )
    mce_warning = text.index(
        "> **Warning.** MCE rose with calibration (0.3000 -> 0.6200). MCE is the gap between confidence and accuracy "
        "in the single worst bin, so one bin decides it: here confidences 0.60-0.67, 2 of 20 eval rows (accuracy "
        "0.00, mean confidence 0.62); one row more or less right moves its accuracy by 0.50; a perfectly calibrated "
        "bin of 2 rows at that confidence shows a gap this large 14% of the time, so this MCE is noise."
    )
    assert calibration < ece_warning < mce_warning < real
    within = (
        "**OK.** Test ECE 0.4500 is within what a perfectly calibrated model would show on 2 rows (95th percentile "
        "{p95}): no miscalibration measurable on this many rows."
    )
    assert real < text.index(within.format(p95="0.5500")) < synthetic < text.index(within.format(p95="0.6500"))


def test_missing_stages_are_skipped(tmp_path: Path) -> None:
    data_only = {name: m for name, m in manifests([True] * 4).items() if name in ("generate", "validate", "split")}
    text = report_text(tmp_path, data_only, include_manifests=False, title="Data check")
    assert text.startswith("# Data check\n")
    assert "## Data" in text and "| FindCallers | 110 | 105 | 80 | 10 | 10 |" in text
    for absent in ("## Training", "## Export", "## Calibration", "## Evaluation", "## Stage manifests", "bundle"):
        assert absent not in text
    assert not (tmp_path / "runs" / "code_search" / "report_assets").exists()


def test_manifests_without_expected_keys_do_not_crash(tmp_path: Path) -> None:
    empty = {name: {} for name in ("generate", "validate", "split", "train", "export", "calibrate", "evaluate")}
    empty["evaluate"] = {"evaluation": {"all": {"n": 3}}, "plots": "not-a-list"}
    text = report_text(tmp_path, empty)
    assert "## Training" in text and "## Evaluation" in text
    assert "| rows | 3 |" in text
    assert SYNTHETIC_BANNER in text  # evaluation without an evidence label is never reported as real
    assert "| generate | `n/a` | n/a | n/a | 0 |" in text


def test_long_tables_are_cut(tmp_path: Path) -> None:
    many = manifests([True] * 4)
    many["generate"]["counts"]["per_intent"] = {f"I{n}": n for n in range(10)}
    text = report_text(tmp_path, many, max_table_rows=3)
    assert "more rows not shown (`max_table_rows=3`)" in text
    assert "| I2 |" in text and "| I3 |" not in text


def test_the_bundles_copy_leaves_out_what_differs_between_builds(tmp_path: Path) -> None:
    facts = manifests([True] * 4)
    facts["train"]["train"].update(seconds_per_epoch=3.0, threads=2)
    facts["export"]["export"]["seconds"] = 13.7
    full = report_text(tmp_path / "run", facts)
    ctx = make_ctx(tmp_path / "bundle", facts)
    ctx.shipped = True
    shipped = markdown(Params(), ctx).read_text(encoding="utf-8")
    assert "report written" in full and "## Stage manifests" in full and "seconds_per_epoch" in full
    assert "report written" not in shipped and "## Stage manifests" not in shipped
    for timing in ("seconds_per_epoch", "`threads`", "`seconds`", "| seconds |"):
        assert timing not in shipped, timing
    assert "in the report of the run that built this bundle" in shipped
    assert "| epoch | loss |" in shipped and "## Export" in shipped  # the rest stays


def test_registered_with_strict_params() -> None:
    assert reporters.resolve("markdown").func is markdown
    assert reporters.resolve("builtin.markdown.v1").params is Params
    with pytest.raises(ValidationError):
        Params.model_validate({"max_table_rows": 0})
    with pytest.raises(ValidationError):
        Params.model_validate({"titel": "x"})
