"""Tool-selector stage (``tool_calls`` target): the second head of one spec. The recipe's ``selector`` trainer (the
encoder classifier) learns the tool name (or ``complete``) of each query on the same split as the LoRA router, is
exported to ONNX INT8 like a classifier bundle, and routes the test split one query at a time with the torch-free
runtime: the rows ``tool_evaluate`` scores the LoRA router on (``tool_evaluate.max_rows``), so that the run summary
and the report set the two heads' tool accuracy and latency side by side. The two stages do not depend on each
other: retraining the selector never re-decodes with the LoRA router.

A recipe without a ``selector`` section, or with ``selector.enabled: false``, trains no selector.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from framework.config.schema import PluginSection
from framework.data.seeding import derive_seed
from framework.errors import StageError
from framework.io import write_jsonl
from framework.pipeline.facts import StageFacts, TrainMetrics
from framework.pipeline.runner import RecipeSection, StageDef, StageRun
from framework.pipeline.targets import register_stage
from framework.plugin_api import ExportContext, ExportResult, TrainContext, TrainResult
from framework.stages.common import plugin_metrics, plugin_result, say, section_model_files, split_rows
from framework.stages.lora_train import CHAT_TRAINERS
from framework.stages.tool_evaluate import ToolEvaluateSettings

if TYPE_CHECKING:
    from framework.config.check import ValidatedRecipe

PREDICTIONS = "predictions.jsonl"
EXPORTER = "onnx"


class SelectorSection(PluginSection):
    """The selector's trainer plugin (an encoder classifier) and its hyperparameters; ``enabled`` turns it off."""

    enabled: bool = True


class ToolSelectorFacts(StageFacts):
    """What the selector scored on the test split, and where its per-row predictions are (None: disabled)."""

    enabled: bool
    train: TrainMetrics | None = None
    model_file: str | None = None
    predictions: str | None = None
    rows: int = 0
    tool_accuracy: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    export_accuracy_drop: float | None = None
    """fp32 minus INT8 accuracy on the eval split."""


def _recipe_issues(recipe: ValidatedRecipe) -> list[tuple[str, str]]:
    bound = recipe.single.get("selector")
    if bound is None or bound.spec.name not in CHAT_TRAINERS:
        return []
    why = f"the selector classifies queries into tools; {bound.spec.name} trains on chat records"
    why += " (use selector: encoder)"
    return [("selector.plugin", why)]


@dataclass(frozen=True)
class _Exporter:
    """The exporter the selector is shipped with, as ``StageDef.plugins`` lists it (its code is fingerprinted)."""

    spec: Any


def _exporter(recipe: ValidatedRecipe) -> list[_Exporter]:
    from framework.registry import exporters

    return [_Exporter(exporters.resolve(EXPORTER))]


def _export(run: StageRun, model_dir: Any, labels: list[str], max_length: int) -> ExportResult:
    """The trained selector in ONNX INT8 with the exporter's default settings: its fp32 graph must match PyTorch
    (the exporter's parity check); the INT8 accuracy drop on eval is measured and reported, not gated."""
    spec = _exporter(run.recipe)[0].spec
    work = run.work_dir / "export"
    work.mkdir(exist_ok=True)
    context = ExportContext(
        model_dir=model_dir, labels=labels, eval_rows=split_rows(run, "eval"), max_length=max_length,
        work_dir=work, task=run.progress.task, warn=run.warn,
    )  # fmt: skip
    result = spec.func(spec.params(), context)
    if not isinstance(result, ExportResult):
        raise StageError(f"plugin {spec.id} returned a {type(result).__name__}, not an ExportResult (plugin bug)")
    return result


def run_tool_selector(run: StageRun) -> ToolSelectorFacts:
    """Train, export and score the selector on the test split, one query at a time."""
    from framework.runtime.onnx_classifier import OnnxTextClassifier

    section = getattr(run.recipe.config, "selector", None)
    if not isinstance(section, SelectorSection) or not section.enabled:
        say("tool_selector: the recipe has no selector (or selector.enabled is false); none is trained")
        return ToolSelectorFacts(enabled=False)
    config = run.recipe.config
    labels = list(config.intents)
    bound = run.recipe.bound("selector")
    context = TrainContext(
        labels=labels, work_dir=run.work_dir, seed=derive_seed(config.seed, "selector"), task=run.progress.task,
        warn=run.warn, log=say,
    )  # fmt: skip
    output = bound.spec.func(split_rows(run, "train"), split_rows(run, "eval"), bound.params, context)
    trained = plugin_result(bound, output, TrainResult)
    max_length = int(getattr(bound.params, "max_length", 64))
    exported = _export(run, trained.model_dir, labels, max_length)
    test = split_rows(run, "test")[: run.recipe.section("tool_evaluate", ToolEvaluateSettings).max_rows]
    if not test:
        raise StageError("tool_selector: the test split is empty; give split.ratios.test a share")
    classifier = OnnxTextClassifier(exported.model_path, trained.model_dir / "tokenizer.json", max_length)
    classifier.logits([test[0]["text"]])  # warm-up, not timed
    predictions = []
    for row in test:
        started = time.perf_counter()
        logits = classifier.logits([row["text"]])
        latency = (time.perf_counter() - started) * 1000
        predictions.append({"id": row["id"], "predicted": labels[int(np.argmax(logits[0]))], "latency_ms": latency})
    write_jsonl(run.work_dir / PREDICTIONS, predictions)
    latencies = np.array([p["latency_ms"] for p in predictions])
    right = sum(p["predicted"] == row["intent"] for p, row in zip(predictions, test, strict=True))
    return ToolSelectorFacts(
        enabled=True,
        train=plugin_metrics(bound, TrainMetrics, trained.metrics),
        model_file=str(exported.model_path.relative_to(run.work_dir)),
        predictions=PREDICTIONS,
        rows=len(test),
        tool_accuracy=round(right / len(test), 4),
        latency_ms_p50=round(float(np.percentile(latencies, 50)), 2),
        latency_ms_p95=round(float(np.percentile(latencies, 95)), 2),
        export_accuracy_drop=round(exported.reference_accuracy - exported.exported_accuracy, 4),
    )


TOOL_SELECTOR = register_stage(
    StageDef(
        name="tool_selector",
        upstream=("split",),
        config_keys=("seed", "tool_evaluate"),
        run=run_tool_selector,
        facts=ToolSelectorFacts,
        files=section_model_files("selector"),
        plugins=_exporter,
        sections=(RecipeSection("selector", SelectorSection, "trainers", required=False),),
        recipe_issues=_recipe_issues,
    )
)
