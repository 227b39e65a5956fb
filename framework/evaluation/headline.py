"""The headline metrics of a run, from its stage manifests: one list of rows that the run summary, the model
card and the Markdown report all render, so the three never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HeadlineRow:
    """One metric as every renderer shows it."""

    metric: str
    value: str


def percent(value: Any) -> str:
    """``0.9943`` as ``99.43%``; anything that is not a number as ``n/a``."""
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else "n/a"


def headline(manifests: dict[str, dict[str, Any]]) -> list[HeadlineRow]:
    """Test quality, calibration, export and training, for the stages present in ``manifests`` (a figure a
    manifest does not hold is left out)."""
    return [*_quality(manifests), *_calibration(manifests), *_export(manifests), *_training(manifests)]


def _quality(manifests: dict[str, dict[str, Any]]) -> list[HeadlineRow]:
    parts = _dict(_dict(manifests.get("evaluate")).get("evaluation"))
    evaluation, real = _dict(parts.get("all")), _dict(parts.get("real"))
    if not evaluation:
        return []
    split = manifests["evaluate"].get("evaluated_split", "test")
    rows = []
    if evaluation.get("evidence") == "mixed" and real:  # the real rows are the evidence: their number comes first
        where = f"{split} split, {real.get('n', 0):,} real rows: benchmark evidence"
        rows.append(HeadlineRow(f"accuracy ({where})", percent(real.get("accuracy"))))
    rows += [
        HeadlineRow(
            f"accuracy ({split} split, {evaluation.get('evidence')} rows)", percent(evaluation.get("accuracy"))
        ),
        HeadlineRow("macro-F1", percent(evaluation.get("macro_f1"))),
    ]
    for key, name in (("oos_recall", "out-of-scope recall"), ("oos_precision", "out-of-scope precision")):
        if evaluation.get(key) is not None:
            rows.append(HeadlineRow(name, percent(evaluation[key])))
    routed = evaluation.get("routed") or {}
    if routed:
        value = f"{percent(routed.get('coverage'))} / {percent(routed.get('selective_accuracy'))}"
        rows.append(HeadlineRow("accepted share / accuracy of accepted", value))
    return rows


def _calibration(manifests: dict[str, dict[str, Any]]) -> list[HeadlineRow]:
    rows = []
    calibration = _dict(_dict(manifests.get("calibrate")).get("calibration"))
    if "ece_after" in calibration:
        value = (
            f"{calibration.get('ece_before', 0):.4f} -> {calibration.get('ece_after', 0):.4f} "
            f"(T={calibration.get('temperature', 0):.3f})"
        )
        rows.append(HeadlineRow("ECE on eval, before -> after", value))
        if "mce_before" in calibration and "mce_after" in calibration:
            value = f"{calibration['mce_before']:.4f} -> {calibration['mce_after']:.4f}"
            rows.append(HeadlineRow("MCE on eval, before -> after", value))
    evaluate = _dict(manifests.get("evaluate"))
    held_out = _dict(_dict(_dict(evaluate.get("evaluation")).get("all")).get("calibration"))
    if {"ece", "ece_noise_mean", "ece_noise_p95"} <= held_out.keys():
        value = (
            f"{held_out['ece']:.4f} (chance level {held_out['ece_noise_mean']:.4f}, "
            f"95th percentile {held_out['ece_noise_p95']:.4f})"
        )
        rows.append(HeadlineRow(f"ECE on {evaluate.get('evaluated_split', 'test')}, calibrated", value))
    return rows


def _export(manifests: dict[str, dict[str, Any]]) -> list[HeadlineRow]:
    export = _dict(_dict(manifests.get("export")).get("export"))
    rows = []
    if "reference_accuracy" in export and "exported_accuracy" in export:
        value = f"{percent(export['reference_accuracy'])} -> {percent(export['exported_accuracy'])}"
        rows.append(HeadlineRow("eval accuracy fp32 -> shipped", value))
    sizes = _dict(export.get("sizes_bytes"))
    model_file = _dict(manifests.get("export")).get("model_file")
    if model_file in sizes:
        rows.append(HeadlineRow("model file", f"{sizes[model_file] / 1e6:.1f} MB"))
    return rows


def _training(manifests: dict[str, dict[str, Any]]) -> list[HeadlineRow]:
    train = _dict(_dict(manifests.get("train")).get("train"))
    if not train:
        return []
    # no wall-clock figure: the model card renders these rows, and a deterministic re-run ships the same card
    value = f"{train.get('epochs_run')} epochs (best {train.get('best_epoch')}) on {train.get('device')}"
    return [HeadlineRow("training", value)]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def headline_markdown(rows: list[HeadlineRow]) -> list[str]:
    """The rows as a Markdown table (model card and report)."""
    if not rows:
        return []
    cells = [(row.metric.replace("|", "\\|"), row.value.replace("|", "\\|")) for row in rows]
    return ["| metric | value |", "|---|---:|", *(f"| {metric} | {value} |" for metric, value in cells)]
