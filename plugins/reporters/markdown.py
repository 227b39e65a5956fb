"""Reporter ``markdown``: one readable ``report.md`` per run, its plots copied into ``report_assets/``.

The report reads only ``ctx.manifests`` and files inside ``ctx.stage_dirs``; a section appears only when
its stage ran, and a key a stage does not write is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from framework.evaluation.metrics import confusion_table_markdown
from framework.io import atomic_write_text
from framework.plugin_api import ReportContext
from framework.registry import PluginParams, reporters

from ._sections import (
    CALIBRATE,
    EVALUATE,
    Report,
    as_dict,
    calibration,
    check_lines,
    data,
    export,
    manifests,
    ood_table,
    summary,
    training,
)
from ._tool_calls import tool_calls

SYNTHETIC_BANNER = (
    "Synthetic data: these numbers measure agreement with the recipe's own templates, not real-world accuracy."
)
REAL_NOTE = "Real labelled rows: these numbers are benchmark evidence."
MIXED_NOTE = (
    "Mixed data: only the numbers under 'Real rows' are benchmark evidence; the synthetic rows measure "
    "agreement with the recipe's own templates."
)
HEADLINE = [
    ("rows", "n"),
    ("accuracy", "accuracy"),
    ("macro F1", "macro_f1"),
    ("weighted F1", "weighted_f1"),
    ("in-scope accuracy", "in_scope_accuracy"),
    ("predictions outside the labels", "unknown_predictions"),
]
CALIBRATION = [
    ("ECE of the calibrated confidences", "ece"),
    ("MCE", "mce"),
    ("ECE a perfectly calibrated model measures here by chance (mean)", "ece_noise_mean"),
    ("... and one time in twenty above", "ece_noise_p95"),
    ("bins", "ece_bins"),
]
ROUTED = [
    ("coverage (share accepted)", "coverage"),
    ("selective accuracy (among accepted)", "selective_accuracy"),
    ("accuracy of the final route", "accuracy"),
    ("in-scope rows abstained on", "in_scope_abstained"),
    ("out-of-scope rows accepted as an intent", "out_of_scope_accepted"),
]


class Params(PluginParams):
    """Params of the ``markdown`` reporter.

    Attributes:
        title: Heading of the report; defaults to ``intentcraft report: <recipe>``.
        include_manifests: End with each stage's fingerprint, seconds, versions and warnings.
        max_table_rows: Rows shown per table; longer tables are cut with a note.
    """

    title: str | None = None
    include_manifests: bool = True
    max_table_rows: int = Field(default=40, ge=1)


def _metrics(report: Report, facts: dict[str, Any], names: list[tuple[str, str]]) -> list[str]:
    oos = as_dict(facts.get("out_of_scope"))
    rows = [(label, facts[key]) for label, key in names if key in facts]
    rows += [(f"out-of-scope {key}", oos[key]) for key in ("recall", "precision", "support") if key in oos]
    return report.table(["metric", "value"], rows)


def _per_intent(report: Report, part: dict[str, Any], level: str) -> list[str]:
    per_intent = as_dict(part.get("per_intent"))
    rows = [
        [name, m.get("precision"), m.get("recall"), m.get("f1"), m.get("support")]
        for name, m in ((name, as_dict(m)) for name, m in per_intent.items())
    ]
    rows.sort(key=lambda row: row[3] if isinstance(row[3], float | int) else 0.0)
    table = report.table(["intent", "precision", "recall", "F1", "support"], rows)
    return [f"{level} Per intent (lowest F1 first)", "", *table] if table else []


def _confusions(part: dict[str, Any], level: str) -> list[str]:
    matrix, labels = part.get("confusion_matrix"), part.get("labels")
    if not isinstance(matrix, list) or not isinstance(labels, list) or len(matrix) != len(labels) or not labels:
        return []
    return [f"{level} Confusions", "", confusion_table_markdown(matrix, labels), ""]


def _worst(report: Report, part: dict[str, Any], level: str) -> list[str]:
    worst = [as_dict(w) for w in part.get("worst_misclassified") or []]
    rows = [[w.get("text"), w.get("intent"), w.get("predicted"), w.get("confidence"), w.get("source")] for w in worst]
    table = report.table(["text", "true", "predicted", "confidence", "source"], rows)
    return [f"{level} Most confident mistakes", "", *table] if table else []


def _evaluation_part(report: Report, part: dict[str, Any], level: str) -> list[str]:
    real = part.get("evidence") == "real"  # anything else, a missing label included, is not evidence
    lines = [f"_{REAL_NOTE}_" if real else f"> **{SYNTHETIC_BANNER}**", "", *_metrics(report, part, HEADLINE)]
    held_out = as_dict(part.get("calibration"))
    if held_out:
        lines += [f"{level} Calibration on these rows", "", *_metrics(report, held_out, CALIBRATION)]
        lines += check_lines(held_out)
    routed = as_dict(part.get("routed"))
    if routed:
        lines += [f"{level} Routing after abstention", "", *_metrics(report, routed, ROUTED)]
    ood = as_dict(part.get("ood"))
    if ood:
        method = as_dict((report.manifest(CALIBRATE) or {}).get("ood")).get("method", "the bundle's")
        lines += [f"{level} Out-of-distribution score on these rows", "", *ood_table(report, {method: ood})]
    return lines + _per_intent(report, part, level) + _confusions(part, level) + _worst(report, part, level)


def evaluation(report: Report) -> list[str]:
    """The ``evaluate_rows`` result: real and synthetic evidence kept apart, plus its plots."""
    if report.manifest(EVALUATE) is None:
        return []
    facts = report.section(EVALUATE)
    overall = as_dict(facts.get("all"))
    lines = ["## Evaluation", ""]
    split = (report.manifest(EVALUATE) or {}).get("evaluated_split")
    if split:
        lines += [f"Evaluated on the **{split}** split.", ""]
    if overall.get("evidence") == "mixed":
        lines += [f"> **{MIXED_NOTE}**", ""]
        for name, heading in (("real", "Real rows (benchmark evidence)"), ("synthetic", "Synthetic rows")):
            if as_dict(facts.get(name)):
                lines += [f"### {heading}", "", *_evaluation_part(report, as_dict(facts.get(name)), "####")]
    elif overall:
        lines += _evaluation_part(report, overall, "###")
    return lines + report.plots(EVALUATE)


SECTIONS: list[Callable[[Report], list[str]]] = [summary, data, tool_calls, training, export, calibration, evaluation]


@reporters.register("markdown", params=Params)
def markdown(params: Params, ctx: ReportContext) -> Path:
    """Write ``report.md`` and ``report_assets/`` into ``ctx.run_dir`` (the run record, or the bundle); returns
    the report's path.

    Sections: summary, data, tool calls, training, export, calibration, evaluation and (``include_manifests``, not
    in the bundle's copy) the stage manifests, each only when its stage is in ``ctx.manifests``.
    """
    report = Report(ctx, params.max_table_rows)
    lines = [f"# {params.title or f'intentcraft report: {ctx.recipe_name}'}", ""]
    for section in [*SECTIONS, *([manifests] if params.include_manifests and not ctx.shipped else [])]:
        lines += section(report)
    if ctx.shipped:
        lines += ["_Stage timings and manifests are in the report of the run that built this bundle._", ""]
    path = Path(ctx.run_dir) / "report.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
