"""The headline metrics of a run, from its stages' typed facts: one list of rows that the run summary, the model
card and the Markdown report all render, so the three never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from framework.evaluation.run_facts import RunFacts
from framework.pipeline.facts import EvaluateFacts, ExportFacts, TrainFacts


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
    stage does not report is left out)."""
    facts = RunFacts.from_manifests(manifests)
    return [
        *_quality(facts.evaluate),
        *_out_of_distribution(facts),
        *_calibration(facts),
        *_export(facts.export),
        *_training(facts.train),
    ]


def _quality(evaluate: EvaluateFacts | None) -> list[HeadlineRow]:
    overall = evaluate.evaluation.get("all") if evaluate else None
    if evaluate is None or overall is None:
        return []
    split, real = evaluate.evaluated_split, evaluate.evaluation.get("real")
    rows = []
    if overall.evidence == "mixed" and real:  # the real rows are the evidence: their number comes first
        where = f"{split} split, {real.n:,} real rows: benchmark evidence"
        rows.append(HeadlineRow(f"accuracy ({where})", percent(real.accuracy)))
    rows += [
        HeadlineRow(f"accuracy ({split} split, {overall.evidence} rows)", percent(overall.accuracy)),
        HeadlineRow("macro-F1", percent(overall.macro_f1)),
    ]
    if overall.in_scope_accuracy is not None and overall.out_of_scope and overall.out_of_scope.support:
        rows.append(HeadlineRow("in-scope accuracy", percent(overall.in_scope_accuracy)))
    routed = overall.routed
    out_of_scope = routed.out_of_scope if routed and routed.out_of_scope else overall.out_of_scope
    if out_of_scope is not None:  # as the router decides: abstentions count as the out-of-scope intent
        rows.append(HeadlineRow("out-of-scope recall / precision", _pair(out_of_scope.recall, out_of_scope.precision)))
    if routed is not None:
        rows.append(
            HeadlineRow("accepted share / accuracy of accepted", _pair(routed.coverage, routed.selective_accuracy))
        )
    return rows


def _out_of_distribution(facts: RunFacts) -> list[HeadlineRow]:
    """The out-of-distribution score: what it is, and how it separates the evaluated split's out-of-scope rows."""
    ood = facts.calibrate.ood if facts.calibrate else None
    if ood is None:
        return []
    rows = [
        HeadlineRow("out-of-distribution score", f"{ood.method}, keeps {percent(ood.in_scope_recall)} of in-scope eval")
    ]
    overall = facts.evaluate.evaluation.get("all") if facts.evaluate else None
    measured = overall.ood if overall else None
    if facts.evaluate is None or measured is None:
        return rows
    split = facts.evaluate.evaluated_split
    if measured.auroc is not None:
        value = f"{measured.auroc:.4f} / {percent(measured.fpr_at_95)}"
        rows.append(HeadlineRow(f"OOD AUROC / FPR at 95% in-scope recall ({split})", value))
    if measured.in_scope_kept is not None:
        value = _pair(measured.in_scope_kept, measured.out_of_scope_caught)
        rows.append(HeadlineRow(f"OOD threshold: in-scope kept / out-of-scope caught ({split})", value))
    return rows


def _pair(first: float | None, second: float | None) -> str:
    return f"{percent(first)} / {percent(second)}"


def _calibration(facts: RunFacts) -> list[HeadlineRow]:
    rows = []
    fitted = facts.calibrate.calibration if facts.calibrate else None
    if fitted is not None and fitted.ece_after is not None:
        value = f"{fitted.ece_before or 0:.4f} -> {fitted.ece_after:.4f} (T={fitted.temperature:.3f})"
        rows.append(HeadlineRow("ECE on eval, before -> after", value))
        if fitted.mce_before is not None and fitted.mce_after is not None:
            rows.append(
                HeadlineRow("MCE on eval, before -> after", f"{fitted.mce_before:.4f} -> {fitted.mce_after:.4f}")
            )
    overall = facts.evaluate.evaluation.get("all") if facts.evaluate else None
    held_out = overall.calibration if overall else None
    if facts.evaluate and held_out and held_out.ece_noise_mean is not None and held_out.ece_noise_p95 is not None:
        value = (
            f"{held_out.ece:.4f} (chance level {held_out.ece_noise_mean:.4f}, "
            f"95th percentile {held_out.ece_noise_p95:.4f})"
        )
        rows.append(HeadlineRow(f"ECE on {facts.evaluate.evaluated_split}, calibrated", value))
    return rows


def _export(export: ExportFacts | None) -> list[HeadlineRow]:
    if export is None:
        return []
    metrics = export.export
    value = f"{percent(metrics.reference_accuracy)} -> {percent(metrics.exported_accuracy)}"
    rows = [HeadlineRow("eval accuracy fp32 -> shipped", value)]
    if export.model_file in metrics.sizes_bytes:
        rows.append(HeadlineRow("model file", f"{metrics.sizes_bytes[export.model_file] / 1e6:.1f} MB"))
    return rows


def _training(train: TrainFacts | None) -> list[HeadlineRow]:
    if train is None:
        return []
    metrics = train.train
    if metrics.epochs_run is None:  # a trainer that reports no epochs
        return []
    # no wall-clock figure: the model card renders these rows, and a deterministic re-run ships the same card
    best = "" if metrics.best_epoch is None else f" (best {metrics.best_epoch})"
    device = "" if metrics.device is None else f" on {metrics.device}"
    return [HeadlineRow("training", f"{metrics.epochs_run} epochs{best}{device}")]


def headline_markdown(rows: list[HeadlineRow]) -> list[str]:
    """The rows as a Markdown table (model card and report)."""
    if not rows:
        return []
    cells = [(row.metric.replace("|", "\\|"), row.value.replace("|", "\\|")) for row in rows]
    return ["| metric | value |", "|---|---:|", *(f"| {metric} | {value} |" for metric, value in cells)]
