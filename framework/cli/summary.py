"""Tables printed at the end of a run and by ``status`` / ``plugins``."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from framework.data.rows import SPLITS
from framework.evaluation.calibration import manifest_checks
from framework.evaluation.headline import headline
from framework.pipeline.runner import Pipeline, StagePlan, State
from framework.registry import plugin_kinds, registry
from framework.toolcalls.evaluation import HEAD_ROWS

STATE_STYLE = {State.CURRENT: "green", State.STALE: "yellow", State.MISSING: "red", State.PARTIAL: "magenta"}


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def stage_table(plans: list[StagePlan], actions: dict[str, str], manifests: dict[str, dict[str, Any]]) -> Table:
    """Stage | action | seconds | output directory (named by the stage's fingerprint)."""
    table = Table(title="Stages", title_justify="left")
    for column, justify in (("stage", "left"), ("action", "left"), ("seconds", "right"), ("output", "left")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for plan in plans:
        manifest = manifests.get(plan.stage.name, {})
        action = actions.get(plan.stage.name, "")
        seconds = f"{manifest.get('seconds', 0):.1f}" if action == "ran" else "-"
        table.add_row(plan.stage.name, action, seconds, _shown_path(plan.directory))
    return table


def rows_table(split_manifest: dict[str, Any]) -> Table:
    """Rows per intent and split."""
    table = Table(title="Rows per intent and split", title_justify="left")
    table.add_column("intent")
    for split in (*SPLITS, "total"):
        table.add_column(split, justify="right")
    totals = dict.fromkeys(SPLITS, 0)
    for intent, counts in split_manifest["counts"]["per_intent"].items():
        table.add_row(intent, *(str(counts[s]) for s in SPLITS), str(sum(counts.values())))
        for split in SPLITS:
            totals[split] += counts[split]
    table.add_row("[bold]all", *(f"[bold]{totals[s]}" for s in SPLITS), f"[bold]{sum(totals.values())}")
    return table


def rejections_table(validate_manifest: dict[str, Any], split_manifest: dict[str, Any]) -> Table:
    """Rejections per layer and rule (plus rows dropped by dedupe), with one example reason each."""
    table = Table(title="Rejected rows per layer and reason", title_justify="left")
    for column, justify in (("layer", "left"), ("rule", "left"), ("rows", "right"), ("example", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    examples = validate_manifest.get("examples", {})
    for layer, rules in validate_manifest["counts"]["rejected_per_layer"].items():
        for rule, count in sorted(rules.items(), key=lambda item: -item[1]):
            table.add_row(layer, rule, str(count), examples.get(layer, {}).get(rule, ""))
    for rule, count in split_manifest["counts"]["dropped"].items():
        table.add_row("dedupe", rule, str(count), "")
    if not table.row_count:
        table.add_row("-", "none", "0", "")
    return table


def model_table(manifests: dict[str, dict[str, Any]]) -> Table:
    """The shipped model's headline metrics (``framework.evaluation.headline``: as the card and report show them)."""
    table = Table(title="Model", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for row in headline(manifests):
        table.add_row(row.metric, row.value)
    return table


def exports_table(manifest: dict[str, Any], directory: Path) -> Table:
    """The tool_export stage's files: format, split, lines, path; and the tokens leaving nulls out saves."""
    tokens = manifest.get("tokens") or {}
    saved = tokens.get("saved_per_example_mean")
    caption = (
        f"assistant turns: {tokens.get('completion_tokens_mean')} tokens per example on {manifest['tokenizer']['name']}"
    )
    caption += f", {saved} saved by leaving null fields out" if saved is not None else ""
    table = Table(title="Exported training files", title_justify="left", caption=caption, caption_justify="left")
    for column, justify in (("format", "left"), ("split", "left"), ("lines", "right"), ("file", "left")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for fmt, per_split in manifest.get("files", {}).items():
        for split, name in per_split.items():
            table.add_row(fmt, split, str(manifest.get("lines", {}).get(split, "")), _shown_path(directory / name))
    return table


def tool_scores_table(manifest: dict[str, Any]) -> Table:
    """The tool router's scores on the test split, before (base model, zero-shot) and after LoRA."""
    table = Table(title=f"Tool router on the test split ({manifest.get('evidence')} rows)", title_justify="left")
    for column, justify in (("metric", "left"), ("base model, zero-shot", "right"), ("after LoRA", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    before, after = manifest.get("before") or {}, manifest.get("after") or {}
    for label, key, percent in (
        ("JSON validity", "json_valid", True), ("schema pass", "schema_pass", True),
        ("tool accuracy", "tool_accuracy", True), ("status accuracy", "status_accuracy", True),
        ("call exact match", "call_exact_match", True), ("latency p50 (ms)", "latency_ms_p50", False),
    ):  # fmt: skip
        cells = [_score(part.get(key), percent) if part else "-" for part in (before, after)]
        table.add_row(label, *cells)
    return table


def tool_heads_table(manifest: dict[str, Any], selector: dict[str, Any]) -> Table:
    """The two heads of one spec on the same test rows: the LoRA router (``tool_evaluate``) and the encoder
    selector (``tool_selector``)."""
    after = manifest.get("after") or {}
    table = Table(title=f"Two heads on the same {selector.get('rows')} test rows", title_justify="left")
    for column, justify in (("", "left"), ("LoRA router", "right"), ("encoder selector", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for label, key in HEAD_ROWS:
        percent = not key.startswith("latency")
        table.add_row(label, _score(after.get(key), percent), _score(selector.get(key), percent))
    return table


def _score(value: Any, percent: bool) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if percent else f"{value}"


def print_calibration_checks(console: Console, manifests: dict[str, dict[str, Any]]) -> None:
    """Each calibration check on its own line: ``warning`` (yellow) or ``ok`` (green), its stage, its text."""
    for stage, check in manifest_checks(manifests):
        verdict = "[green]ok[/]" if check.ok else "[yellow]warning[/]"
        console.print(f"{verdict} {stage}: {escape(check.text)}", highlight=False)


def print_run_summary(console: Console, pipeline: Pipeline, plans: list[StagePlan], actions: dict[str, str]) -> None:
    """Everything a user wants to see after ``intentcraft run``."""
    manifests = {plan.stage.name: pipeline.manifest(plan) for plan in plans}
    if all(action == "cached" for action in actions.values()):
        console.print(
            f"[green]Nothing to do:[/] all {len(plans)} stages of {pipeline.recipe.name} are current (cached)."
        )
    console.print(stage_table(plans, actions, manifests))
    if "split" in manifests and "validate" in manifests:
        console.print(rows_table(manifests["split"]))
        console.print(rejections_table(manifests["validate"], manifests["split"]))
    exported = next((plan for plan in plans if plan.stage.name == "tool_export"), None)
    if exported is not None and "files" in manifests["tool_export"]:
        console.print(exports_table(manifests["tool_export"], exported.directory))
    if "tool_evaluate" in manifests and "after" in manifests["tool_evaluate"]:
        console.print(tool_scores_table(manifests["tool_evaluate"]))
        if manifests.get("tool_selector", {}).get("enabled"):
            console.print(tool_heads_table(manifests["tool_evaluate"], manifests["tool_selector"]))
    if "evaluate" in manifests or "train" in manifests:
        console.print(model_table(manifests))
    print_calibration_checks(console, manifests)
    warnings = [f"{name}: {w}" for name, m in manifests.items() for w in m.get("warnings", [])]
    for warning in warnings:
        console.print(f"[yellow]warning[/] {warning}")


def status_table(plans: list[StagePlan]) -> Table:
    """Stage | state | reason | fingerprint."""
    table = Table(title="Stage status", title_justify="left")
    for column in ("stage", "state", "why", "fingerprint"):
        table.add_column(column)
    for plan in plans:
        style = STATE_STYLE[plan.state]
        table.add_row(plan.stage.name, f"[{style}]{plan.state.value}", plan.reason, plan.fingerprint[:12])
    return table


def _type_name(annotation: Any) -> str:
    """A short readable name for a field's type (``list[str] | None``, ``Literal['a', 'b']``)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def param_lines(model: type[BaseModel], prefix: str = "") -> list[str]:
    """``name: type = default`` for every field, nested models flattened to dotted names."""
    lines = []
    for field, info in model.model_fields.items():
        name = f"{prefix}{info.alias or field}"
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += param_lines(annotation, f"{name}.")
            continue
        default = "(required)" if info.is_required() else repr(info.get_default(call_default_factory=True))
        lines.append(f"{name}: {_type_name(annotation)} = {default}")
    return lines


def plugins_tables(kind: str | None = None) -> tuple[list[Table], list[str]]:
    """One table per plugin kind that has plugins (each plugin, its origin and params), and the empty kinds."""
    tables, empty = [], []
    for name in plugin_kinds() if kind is None else (kind,):
        specs = registry(name).all()
        if not specs:
            empty.append(name)
            continue
        table = Table(title=f"{name} ({len(specs)})", title_justify="left")
        for column in ("plugin", "origin", "summary", "params"):
            table.add_column(column, overflow="fold")
        for spec in specs:
            table.add_row(spec.id, spec.origin, spec.summary, "\n".join(param_lines(spec.params)) or "-")
        tables.append(table)
    return tables, empty
