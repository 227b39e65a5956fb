"""Evaluation metrics, evidence labelling and confusion-matrix rendering, against hand-computed cases."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from framework.evaluation.metrics import (
    classification_report,
    confusion_table_markdown,
    evaluate_rows,
    evidence_label,
    plot_confusion_matrix,
    plot_ood_scores,
    routed_report,
    split_by_evidence,
    worst_misclassified,
)

LABELS = ["a", "b", "oos", "c"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_row(intent: str, synthetic: bool | None = True, text: str = "", source: str = "gen") -> dict:
    provenance = {"generator": "g", "plugin": "builtin.template.v1"}
    if synthetic is not None:
        provenance["synthetic"] = synthetic
    return {
        "id": f"{intent}-{text}",
        "text": text or intent,
        "intent": intent,
        "source": source,
        "provenance": provenance,
    }


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_classification_report_matches_hand_computed_values() -> None:
    report = classification_report(["a", "a", "b", "oos"], ["a", "b", "b", "a"], LABELS, fallback_intent="oos")
    assert report["n"] == 4
    assert report["accuracy"] == 0.5
    assert report["per_intent"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert report["per_intent"]["b"]["precision"] == 0.5 and report["per_intent"]["b"]["recall"] == 1.0
    assert report["per_intent"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # macro over a, b, oos (c never occurs): (0.5 + 2/3 + 0) / 3; weighted by support: (0.5*2 + 2/3) / 4
    assert report["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 3)
    assert report["weighted_f1"] == pytest.approx((1 + 2 / 3) / 4)
    assert report["confusion_matrix"] == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert report["out_of_scope"] == {"recall": 0.0, "precision": None, "support": 1}
    assert report["in_scope_accuracy"] == pytest.approx(2 / 3)
    assert json.loads(json.dumps(report)) == report


def test_out_of_scope_precision_recall_and_in_scope_accuracy() -> None:
    report = classification_report(["oos", "oos", "a", "a"], ["oos", "a", "oos", "a"], LABELS, "oos")
    assert report["out_of_scope"] == {"recall": 0.5, "precision": 0.5, "support": 2}
    assert report["in_scope_accuracy"] == 0.5
    assert "out_of_scope" not in classification_report(["a"], ["a"], LABELS)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [(["a"], ["a", "b"], "lengths differ"), ([], [], "no rows"), (["zzz"], ["a"], "not in labels")],
)
def test_classification_report_rejects_bad_input(y_true: list[str], y_pred: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        classification_report(y_true, y_pred, LABELS)


def test_predictions_outside_the_labels_count_as_wrong() -> None:
    report = classification_report(["a", "a", "b"], ["a", "", "b"], ["a", "b"])
    assert report["accuracy"] == pytest.approx(2 / 3) and report["unknown_predictions"] == 1
    assert report["per_intent"]["a"]["recall"] == 0.5
    assert report["confusion_matrix"] == [[1, 0], [0, 1]]


def test_routed_report_counts_abstentions_and_wrongly_accepted_out_of_scope_rows() -> None:
    y_true = ["a", "a", "b", "oos", "oos"]
    routed = ["a", None, "a", None, "b"]  # final: a, oos, a, oos, b
    decisions = ["accept", "abstain", "accept", "abstain", "accept"]
    report = routed_report(y_true, routed, decisions, LABELS, "oos")
    assert report["accepted"] == 3 and report["coverage"] == pytest.approx(0.6)
    assert report["selective_accuracy"] == pytest.approx(1 / 3)  # accepted rows 0, 2, 4: only row 0 right
    assert report["accuracy"] == pytest.approx(2 / 5)  # rows 0 and 3 (abstained to the fallback)
    assert report["in_scope_abstained"] == pytest.approx(1 / 3)
    assert report["out_of_scope_accepted"] == 0.5  # row 4 accepted as b
    assert report["out_of_scope"] == {"recall": 0.5, "precision": 0.5, "support": 2}


def test_routed_report_without_fallback_and_with_bad_decisions() -> None:
    report = routed_report(["a", "b"], ["a", None], ["accept", "abstain"], LABELS, None)
    assert report["accuracy"] == 0.5 and report["selective_accuracy"] == 1.0
    assert report["in_scope_abstained"] == 0.5
    assert report["out_of_scope_accepted"] is None and report["out_of_scope"] is None
    with pytest.raises(ValueError, match="decisions must be one of"):
        routed_report(["a"], ["a"], ["accepted"], LABELS, None)


def test_evidence_label_and_split() -> None:
    real, synthetic, unflagged = make_row("a", False), make_row("a", True), make_row("a", None)
    assert evidence_label([real, real]) == "real"
    assert evidence_label([synthetic, synthetic]) == "synthetic"
    assert evidence_label([real, synthetic]) == "mixed"
    assert evidence_label([real, unflagged]) == "mixed"  # a row without the flag is never real
    assert evidence_label([]) == "synthetic"
    assert split_by_evidence([synthetic, real, unflagged, real]) == {"real": [1, 3], "synthetic": [0, 2]}


def test_evaluate_rows_keeps_real_and_synthetic_apart() -> None:
    rows = [make_row("a", False), make_row("b", False), make_row("a", True), make_row("oos", True)]
    y_pred = ["a", "a", "a", "a"]
    result = evaluate_rows(rows, y_pred, [0.9] * 4, ["a"] * 4, ["accept"] * 4, LABELS, "oos")
    assert result["all"]["evidence"] == "mixed" and result["all"]["benchmark_evidence"] is False
    assert result["real"]["evidence"] == "real" and result["real"]["benchmark_evidence"] is True
    assert (result["real"]["n"], result["real"]["accuracy"]) == (2, 0.5)
    assert result["synthetic"]["evidence"] == "synthetic" and result["synthetic"]["benchmark_evidence"] is False
    assert result["synthetic"]["routed"]["out_of_scope_accepted"] == 1.0
    assert [w["intent"] for w in result["all"]["worst_misclassified"]] == ["b", "oos"]
    assert json.loads(json.dumps(result)) == result


def test_evaluate_rows_synthetic_only_without_routing() -> None:
    rows = [make_row("a"), make_row("b")]
    result = evaluate_rows(rows, ["a", "b"], [0.8, 0.7], None, None, LABELS, "oos")
    assert result["real"] is None and result["synthetic"]["accuracy"] == 1.0
    assert result["all"]["evidence"] == "synthetic" and "routed" not in result["all"]
    with pytest.raises(ValueError, match="both routed and decisions"):
        evaluate_rows(rows, ["a", "b"], [0.8, 0.7], ["a", "b"], None, LABELS, "oos")


def test_worst_misclassified_orders_by_confidence_and_skips_correct_rows() -> None:
    rows = [make_row("a", text=f"t{i}", source=f"s{i}") for i in range(5)]
    y_pred = ["b", "a", "b", "oos", "b"]  # row 1 is right
    confidences = [0.6, 0.99, 0.9, 0.6, 0.3]
    worst = worst_misclassified(rows, y_pred, confidences, k=3)
    assert [w["text"] for w in worst] == ["t2", "t0", "t3"]  # tie at 0.6 keeps row order
    assert worst[0] == {
        "id": "a-t2",
        "text": "t2",
        "intent": "a",
        "predicted": "b",
        "confidence": 0.9,
        "source": "s2",
        "synthetic": True,
    }
    assert worst_misclassified(rows, y_pred, confidences, k=0) == []


def test_plot_confusion_matrix_writes_png_for_8_and_77_labels(tmp_path: Path) -> None:
    small = [[10 if i == j else 1 for j in range(8)] for i in range(8)]
    small[3] = [0] * 8  # an intent with no rows must not divide by zero
    large = [[5 if i == j else (1 if j == (i + 1) % 77 else 0) for j in range(77)] for i in range(77)]
    small_png = plot_confusion_matrix(small, [f"Intent{i}" for i in range(8)], tmp_path / "s" / "cm.png", "eval")
    large_png = plot_confusion_matrix(large, [f"intent_{i}" for i in range(77)], tmp_path / "cm77.png", "eval")
    small_size, large_size = png_size(small_png), png_size(large_png)
    assert min(small_size) >= 500
    assert large_size[0] > 2 * small_size[0] and large_size[1] > 2 * small_size[1]
    assert not list(tmp_path.rglob("*.tmp"))


def test_confusion_table_markdown_small_matrix() -> None:
    table = confusion_table_markdown([[3, 1], [0, 2]], ["a", "b|c"])
    assert table.splitlines() == [
        "| true \\ predicted | a | b\\|c |",
        "|---|---|---|",
        "| **a** | 3 | 1 |",
        "| **b\\|c** | 0 | 2 |",
    ]


def test_confusion_table_markdown_lists_top_pairs_for_many_labels() -> None:
    labels = [f"i{n}" for n in range(25)]
    matrix = [[10 if i == j else 0 for j in range(25)] for i in range(25)]
    for i in range(24):
        matrix[i][i + 1] = i + 1  # i23 -> i24 is the most confused pair
    lines = confusion_table_markdown(matrix, labels).splitlines()
    assert lines[0] == "| true | predicted | count | share of true |"
    assert lines[2] == "| i23 | i24 | 24 | 70.6% |"  # 24 of 34 rows of i23
    assert len(lines) == 2 + 20
    diagonal = [[10 if i == j else 0 for j in range(25)] for i in range(25)]
    assert confusion_table_markdown(diagonal, labels).startswith("No confusions")


def test_evaluate_rows_reports_held_out_calibration_of_the_confidences() -> None:
    rows = [make_row("a", False, text=str(i)) for i in range(10)]
    y_pred = ["a"] * 8 + ["b"] * 2  # 80% right, all at confidence 0.8: calibrated, ECE 0
    result = evaluate_rows(rows, y_pred, [0.8] * 10, None, None, LABELS, "oos", ece_bins=10)
    held_out = result["real"]["calibration"]
    assert held_out["ece"] == pytest.approx(0.0) and held_out["mce"] == pytest.approx(0.0)
    assert held_out["ece_bins"] == 10 and 0 < held_out["ece_noise_mean"] <= held_out["ece_noise_p95"]
    overconfident = evaluate_rows(rows, y_pred, [1.0] * 10, None, None, LABELS, "oos")["all"]["calibration"]
    assert overconfident["ece"] == pytest.approx(0.2)


def test_evaluate_rows_measures_the_ood_score_against_the_fallback_rows(tmp_path: Path) -> None:
    rows = [make_row("a", text="1"), make_row("b", text="2"), make_row("oos", text="3"), make_row("oos", text="4")]
    scores = [1.0, 3.0, 2.0, 9.0]  # one out-of-scope row scores below an in-scope one
    result = evaluate_rows(
        rows, ["a", "b", "a", "oos"], [0.9] * 4, None, None, LABELS, "oos", ood_scores=scores, ood_threshold=2.5
    )
    ood = result["all"]["ood"]
    assert (ood["in_scope"], ood["out_of_scope"]) == (2, 2)
    assert ood["auroc"] == 0.75  # pairs (in, out) ranked right: (1,2) (1,9) (3,9), not (3,2)
    assert ood["in_scope_kept"] == 0.5 and ood["out_of_scope_caught"] == 0.5  # 3.0 > 2.5 abstains; 2.0 is kept
    no_fallback = evaluate_rows(rows[:2], ["a", "b"], [0.9] * 2, None, None, LABELS, None, ood_scores=scores[:2])
    assert "ood" not in no_fallback["all"]  # nothing to separate without an out-of-scope intent
    with pytest.raises(ValueError, match="lengths differ"):
        evaluate_rows(rows, ["a"] * 4, [0.9] * 4, None, None, LABELS, "oos", ood_scores=scores[:3])
    inside = [False] * 200 + [True] * 50
    values = [float(v) for v in range(1, 201)] + [float(v) * 100 for v in range(1, 51)]
    png = plot_ood_scores(values, inside, 150.0, tmp_path / "ood.png", "scores")
    assert min(png_size(png)) >= 400 and not list(tmp_path.rglob("*.tmp"))
    flat = plot_ood_scores([-2.0] * 6, [False] * 3 + [True] * 3, -2.0, tmp_path / "flat.png", "equal scores")
    assert min(png_size(flat)) >= 400  # every score at the threshold: the bins still get a width
