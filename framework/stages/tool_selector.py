"""Tool-selector stage (``tool_calls`` target): the second head of one spec. The recipe's ``selector`` trainer (the
encoder classifier) learns the tool name (or ``complete``) of each query on the same split as the LoRA router, is
exported to ONNX INT8 like a classifier bundle, and routes the test split one query at a time with the torch-free
runtime. ``tool_evaluate`` sets its tool accuracy and latency beside the LoRA router's, on the same rows.

``selector.enabled: false`` leaves the stage with nothing to do (no model is trained).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from framework.config.schema import PluginSection
from framework.data.seeding import derive_seed
from framework.errors import StageError
from framework.io import write_jsonl
from framework.models import model_files
from framework.pipeline.facts import StageFacts, TrainMetrics
from framework.pipeline.runner import RecipeSection, StageDef, StageRun, labelled_files
from framework.pipeline.targets import register_stage
from framework.plugin_api import ExportContext, ExportResult, TrainContext, TrainResult
from framework.stages.common import plugin_metrics, plugin_result, say, split_rows
from framework.stages.lora_train import CHAT_TRAINERS

if TYPE_CHECKING:
    from framework.config.check import ValidatedRecipe

PREDICTIONS = "predictions.jsonl"


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


def _recipe_issues(recipe: ValidatedRecipe) -> list[tuple[str, str]]:
    bound = recipe.single.get("selector")
    if bound is None or bound.spec.name not in CHAT_TRAINERS:
        return []
    why = f"the selector classifies queries into tools; {bound.spec.name} trains on chat records"
    why += " (use selector: encoder)"
    return [("selector.plugin", why)]


def _model_files(recipe: ValidatedRecipe) -> dict[str, Path]:
    bound = recipe.single.get("selector")
    model = getattr(bound.params, "model", None) if bound is not None else None
    return labelled_files("selector.model", model_files(model)) if isinstance(model, str) else {}


def _export(run: StageRun, model_dir: Any, labels: list[str], max_length: int) -> ExportResult:
    """The trained selector in ONNX INT8, with the exporter's default settings (parity and accuracy checked)."""
    from framework.registry import exporters

    spec = exporters.resolve("onnx")
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

    section = run.recipe.section("selector", SelectorSection)
    if not section.enabled:
        say("tool_selector: selector.enabled is false; no selector is trained")
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
    test = split_rows(run, "test")
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
    )


TOOL_SELECTOR = register_stage(
    StageDef(
        name="tool_selector",
        upstream=("split",),
        config_keys=("seed",),
        run=run_tool_selector,
        facts=ToolSelectorFacts,
        files=_model_files,
        sections=(RecipeSection("selector", SelectorSection, "trainers"),),
        recipe_issues=_recipe_issues,
    )
)
