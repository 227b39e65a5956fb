"""Markdown building blocks of the ``markdown`` reporter: the report being built, cells, tables, plots.

Everything reads manifests with ``.get``: a key a stage does not write yet is skipped, never an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from framework.evaluation.calibration import checks_markdown, stored_checks
from framework.evaluation.headline import headline, headline_markdown
from framework.io import atomic_write_bytes
from framework.plugin_api import ReportContext

ASSETS_DIR = "report_assets"
MAX_CELL_CHARS = 160

# Stage names the report looks for in ``ctx.manifests`` (and ``ctx.stage_dirs``), and the manifest key
# each one's facts live under.
GENERATE, VALIDATE, SPLIT = "generate", "validate", "split"
TRAIN, EXPORT, CALIBRATE, EVALUATE, BUNDLE = "train", "export", "calibrate", "evaluate", "bundle"
SECTION_KEYS = {TRAIN: "train", EXPORT: "export", CALIBRATE: "calibration", EVALUATE: "evaluation"}
TIMING_KEYS = frozenset({"seconds", "seconds_per_epoch", "examples_per_second", "threads"})
"""Figures of how a build ran rather than of what it built: left out of the bundle's copy of the report."""


class Cell(str):
    """Text already formatted for a table cell (``table`` leaves it as it is)."""


def fmt(value: Any) -> str:
    """One value as a short, readable Markdown cell."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.2e}"
    if isinstance(value, Mapping | list | tuple):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_rows: int) -> list[str]:
    """A Markdown table; rows past ``max_rows`` are left out with a note."""
    if not rows:
        return []
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += [
        "| " + " | ".join(cell if isinstance(cell, Cell) else fmt(cell) for cell in row) + " |"
        for row in rows[:max_rows]
    ]
    if len(rows) > max_rows:
        lines.append(f"\n_{len(rows) - max_rows:,} more rows not shown (`max_table_rows={max_rows}`)._")
    return [*lines, ""]


def key_values(facts: Mapping[str, Any], max_rows: int, skip: Iterable[str] = ()) -> list[str]:
    """A two-column table of a free-form dict's entries, in their order."""
    skipped = set(skip)
    rows = [(Cell(f"`{fmt(key)}`"), value) for key, value in facts.items() if key not in skipped]
    return table(["key", "value"], rows, max_rows)


def inline(mapping: Any) -> str:
    """A small dict on one line: ``a 1, b 2`` (``none`` when empty)."""
    return ", ".join(f"{key} {fmt(value)}" for key, value in as_dict(mapping).items()) or "none"


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else an empty one (a malformed manifest entry renders as nothing)."""
    return value if isinstance(value, dict) else {}


@dataclass
class Report:
    """The report being written: the run context and the table row limit."""

    ctx: ReportContext
    max_rows: int

    def manifest(self, stage: str) -> dict[str, Any] | None:
        """The stage's manifest, or ``None`` when the run has no such stage."""
        manifest = self.ctx.manifests.get(stage)
        return manifest if isinstance(manifest, dict) else None

    def section(self, stage: str) -> dict[str, Any]:
        """The stage's own facts (e.g. ``manifest["calibration"]``); empty when absent, timings left out when
        the report ships in the bundle."""
        facts = as_dict((self.manifest(stage) or {}).get(SECTION_KEYS.get(stage, stage)))
        return {k: v for k, v in facts.items() if k not in TIMING_KEYS} if self.ctx.shipped else facts

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
        """``table`` with this report's row limit."""
        return table(headers, rows, self.max_rows)

    def plots(self, stage: str) -> list[str]:
        """Image links for the stage's ``manifest["plots"]``, copied into ``report_assets/``."""
        names = (self.manifest(stage) or {}).get("plots") or []
        if isinstance(names, Mapping):
            names = list(names.values())
        lines = []
        for name in names if isinstance(names, list) else []:
            link = self.copy_asset(stage, str(name))
            title = Path(str(name)).stem.replace("_", " ")
            lines += [f"![{title}]({link})" if link else f"_Plot `{name}` is missing from the {stage} stage._", ""]
        return lines

    def copy_asset(self, stage: str, name: str) -> str | None:
        """Copy a file of a stage directory into ``report_assets/``; returns its relative link."""
        base = self.ctx.stage_dirs.get(stage)
        if base is None:
            return None
        source = (Path(base) / name).resolve()
        if not source.is_file() or not source.is_relative_to(Path(base).resolve()):
            return None
        target = f"{stage}-{'-'.join(Path(name).parts)}"
        atomic_write_bytes(self.ctx.run_dir / ASSETS_DIR / target, source.read_bytes())
        return f"{ASSETS_DIR}/{quote(target)}"


def _counts(report: Report, stage: str) -> dict[str, Any]:
    return as_dict((report.manifest(stage) or {}).get("counts"))


def summary(report: Report) -> list[str]:
    """Recipe, file, date, stages, bundle and the headline number with its evidence."""
    ctx = report.ctx
    rows: list[tuple[str, Any]] = [
        ("recipe", ctx.recipe_name),
        ("recipe file", Cell(f"`{fmt(ctx.recipe_file)}`")),
        *([] if ctx.shipped else [("report written", time.strftime("%Y-%m-%d %H:%M:%S %z"))]),
        ("stages", ", ".join(ctx.manifests) or "none"),
    ]
    bundle_dir = as_dict(report.manifest(BUNDLE)).get("bundle_dir")
    if bundle_dir:
        base = report.ctx.stage_dirs.get(BUNDLE)
        rows.append(("bundle", Cell(f"`{fmt(Path(base, str(bundle_dir)) if base else bundle_dir)}`")))
    lines = ["## Summary", "", *report.table(["item", "value"], rows)]
    metrics = headline_markdown(headline(dict(ctx.manifests)))
    return lines + (["### Headline metrics", "", *metrics, ""] if metrics else [])


def _data_totals(report: Report) -> list[str]:
    generate, validate, split = (_counts(report, stage) for stage in (GENERATE, VALIDATE, SPLIT))
    lines = []
    if report.manifest(GENERATE) is not None:
        lines.append(
            f"- **generate**: {fmt(generate.get('rows'))} rows; by generator: {inline(generate.get('per_generator'))}"
        )
    if report.manifest(VALIDATE) is not None:
        lines.append(
            f"- **validate**: {fmt(validate.get('input'))} in, {fmt(validate.get('accepted'))} accepted, "
            f"{fmt(validate.get('rejected'))} rejected"
        )
    if report.manifest(SPLIT) is not None:
        lines.append(
            f"- **split**: {fmt(split.get('input'))} in, {fmt(split.get('kept'))} kept after dedupe; "
            f"dropped: {inline(split.get('dropped'))}; leaks {fmt(split.get('leaks'))}"
        )
    return [*lines, ""]


def _rows_per_intent(report: Report) -> list[str]:
    columns: dict[str, dict[str, Any]] = {}
    if report.manifest(GENERATE) is not None:
        columns["generated"] = as_dict(_counts(report, GENERATE).get("per_intent"))
    if report.manifest(VALIDATE) is not None:
        columns["accepted"] = as_dict(_counts(report, VALIDATE).get("accepted_per_intent"))
    if report.manifest(SPLIT) is not None:
        per_split = as_dict(_counts(report, SPLIT).get("per_intent"))
        for split in ("train", "eval", "test"):
            columns[split] = {intent: as_dict(counts).get(split) for intent, counts in per_split.items()}
    intents = list(dict.fromkeys(intent for column in columns.values() for intent in column))
    rows = [[intent, *(column.get(intent) for column in columns.values())] for intent in intents]
    return ["### Rows per intent", "", *report.table(["intent", *columns], rows)] if rows else []


def _rejections(report: Report) -> list[str]:
    per_layer = as_dict(_counts(report, VALIDATE).get("rejected_per_layer"))
    examples = as_dict((report.manifest(VALIDATE) or {}).get("examples"))
    rows = [
        [layer, rule, count, as_dict(examples.get(layer)).get(rule)]
        for layer, rules in per_layer.items()
        for rule, count in as_dict(rules).items()
    ]
    rows.sort(key=lambda row: -row[2] if isinstance(row[2], int) else 0)
    return ["### Rejections", "", *report.table(["layer", "rule", "rows", "example"], rows)] if rows else []


def _survival(report: Report) -> list[str]:
    survival = as_dict((report.manifest(VALIDATE) or {}).get("survival"))
    rows = [
        [facet, value, as_dict(c).get("generated"), as_dict(c).get("kept"), as_dict(c).get("rate")]
        for facet, values in survival.items()
        for value, c in as_dict(values).items()
    ]
    if not rows:
        return []
    intro = "Share of generated rows that passed validation, per generating model and per diversity-axis value."
    return [
        "### Survival by model and axis",
        "",
        intro,
        "",
        *report.table(["facet", "value", "generated", "kept", "rate"], rows),
    ]


def data(report: Report) -> list[str]:
    """Rows per stage and intent, rejections by layer and rule, survival per model and axis value."""
    if all(report.manifest(stage) is None for stage in (GENERATE, VALIDATE, SPLIT)):
        return []
    sections = [*_data_totals(report), *_rows_per_intent(report), *_rejections(report), *_survival(report)]
    return ["## Data", "", *sections]


def training(report: Report) -> list[str]:
    """The trainer's free-form metrics and, when present, its per-epoch history."""
    if report.manifest(TRAIN) is None:
        return []
    facts = report.section(TRAIN)
    lines = ["## Training", "", *key_values(facts, report.max_rows, skip=("history",))]
    history = [entry for entry in facts.get("history") or [] if isinstance(entry, dict)]
    if history:
        preferred = ["epoch", "loss", "eval_accuracy", "seconds", *(key for entry in history for key in entry)]
        shown = [key for key in preferred if not (report.ctx.shipped and key in TIMING_KEYS)]
        columns = [key for key in dict.fromkeys(shown) if any(key in entry for entry in history)]
        lines += ["### History", "", *report.table(columns, [[e.get(c) for c in columns] for e in history])]
    return lines + report.plots(TRAIN)


def _size(value: Any) -> str:
    return f"{value / 2**20:.2f} MiB ({value:,} bytes)" if isinstance(value, int) else fmt(value)


def export(report: Report) -> list[str]:
    """Accuracy before and after export, parity, and artifact sizes (``sizes_bytes``: file name -> bytes)."""
    if report.manifest(EXPORT) is None:
        return []
    facts = report.section(EXPORT)
    size_keys = [key for key in ("sizes_bytes", "sizes") if isinstance(facts.get(key), dict)]
    lines = ["## Export", "", *key_values(facts, report.max_rows, skip=size_keys)]
    sizes = [(name, _size(value)) for key in size_keys for name, value in facts[key].items()]
    if sizes:
        lines += ["### Sizes", "", *report.table(["artifact", "size"], sizes)]
    return lines + report.plots(EXPORT)


def check_lines(facts: Any) -> list[str]:
    """The calibration checks kept in ``facts["checks"]``: each warning as a quote, then each check passed."""
    return checks_markdown(stored_checks(facts))


def _bin_cell(value: Any) -> Any:
    """A worst bin (``low``, ``high``, ``rows``, ``accuracy``, ``confidence``) in words; anything else as it is."""
    if not isinstance(value, dict) or not {"low", "high", "rows", "accuracy", "confidence"} <= value.keys():
        return value
    rows = f"{value['rows']:,} row{'' if value['rows'] == 1 else 's'}"
    return Cell(
        f"{value['low']:.2f}-{value['high']:.2f}: {rows}, accuracy {value['accuracy']:.2f}, "
        f"confidence {value['confidence']:.2f}"
    )


def calibration(report: Report) -> list[str]:
    """Temperature, every ``<metric>_before``/``<metric>_after`` pair, the checks, thresholds and plots."""
    if report.manifest(CALIBRATE) is None:
        return []
    facts = report.section(CALIBRATE)
    pairs = [key[: -len("_before")] for key in facts if key.endswith("_before") and key[:-7] + "_after" in facts]
    lines = ["## Calibration", ""]
    lines += report.table(
        ["metric", "before", "after"],
        [(m, _bin_cell(facts[m + "_before"]), _bin_cell(facts[m + "_after"])) for m in pairs],
    )
    lines += check_lines(facts)
    skip = {"checks", *(f"{metric}_{when}" for metric in pairs for when in ("before", "after"))}
    thresholds = facts.get("thresholds")
    if isinstance(thresholds, dict):
        skip.add("thresholds")
    lines += key_values(facts, report.max_rows, skip=skip)
    if isinstance(thresholds, dict) and thresholds:
        lines += ["### Thresholds", "", *report.table(["intent", "threshold"], list(thresholds.items()))]
    return lines + _ood_fit(report) + report.plots(CALIBRATE)


OOD_COLUMNS = ("auroc", "fpr_at_95", "threshold", "in_scope_kept", "out_of_scope_caught")


def ood_table(report: Report, measured: Mapping[str, Any]) -> list[str]:
    """One row per score: AUROC, FPR at 95% in-scope recall, threshold, in-scope kept and out-of-scope caught."""
    rows = [[name, *(as_dict(values).get(key) for key in OOD_COLUMNS)] for name, values in measured.items()]
    return report.table(
        ["score", "AUROC", "FPR at 95% in-scope recall", "threshold", "in-scope kept", "OOS caught"], rows
    )


def _share(value: Any) -> str:
    return f"{100 * value:g}%" if isinstance(value, int | float) else fmt(value)


def _ood_fit(report: Report) -> list[str]:
    """The calibrate stage's out-of-distribution score: the chosen one, and every score compared on eval."""
    ood = as_dict((report.manifest(CALIBRATE) or {}).get("ood"))
    if not ood:
        return []
    fitted = f" on {ood.get('fit_rows')} train rows of {ood.get('classes')} in-scope intents" if ood.get("file") else ""
    lines = [
        "### Out-of-distribution score",
        "",
        f"The router abstains when the **{ood.get('method')}** score exceeds {fmt(ood.get('threshold'))}, the "
        f"threshold that keeps {_share(ood.get('in_scope_recall'))} of the in-scope eval rows (fitted{fitted}). "
        "Each score below is measured on the eval split at its own threshold for that recall; AUROC and FPR need "
        "out-of-scope eval rows (the fallback intent's).",
        "",
    ]
    return lines + ood_table(report, as_dict(ood.get("eval")))


def manifests(report: Report) -> list[str]:
    """Each stage's fingerprint, start, seconds, warnings, and the library versions."""
    stages = {stage: m for stage, m in report.ctx.manifests.items() if isinstance(m, dict)}
    if not stages:
        return []
    rows = [
        (
            stage,
            Cell(f"`{fmt(m.get('fingerprint'))}`"),
            m.get("started_at"),
            m.get("seconds"),
            len(m.get("warnings") or []),
        )
        for stage, m in stages.items()
    ]
    lines = ["## Stage manifests", "", *report.table(["stage", "fingerprint", "started", "seconds", "warnings"], rows)]
    versions = {stage: as_dict(m.get("versions")) for stage, m in stages.items() if as_dict(m.get("versions"))}
    if len({json.dumps(v, sort_keys=True) for v in versions.values()}) == 1:
        lines += [f"Versions: {inline(next(iter(versions.values())))}", ""]
    elif versions:
        lines += [*(f"- **{stage}** versions: {inline(v)}" for stage, v in versions.items()), ""]
    warnings = [
        f"- **{stage}**: {' '.join(str(w).split())}" for stage, m in stages.items() for w in m.get("warnings") or []
    ]
    return lines + (["### Warnings", "", *warnings, ""] if warnings else [])
