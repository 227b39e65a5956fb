"""LoRA-train stage (``tool_calls`` target): the recipe's trainer (``causal_lora``) on the tool_export stage's chat
records, the train split to learn and the eval split to stop early; writes ``adapter/`` and ``training.json``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from framework.data.seeding import derive_seed
from framework.io import read_jsonl
from framework.pipeline.facts import StageFacts, TrainMetrics
from framework.pipeline.runner import RecipeSection, StageDef, StageRun
from framework.pipeline.targets import register_stage
from framework.plugin_api import TrainContext, TrainResult
from framework.stages.common import plugin_metrics, plugin_result, say, section_model_files
from framework.stages.tool_export import ToolExportFacts, tokenizer_name
from framework.stages.train import TrainSection

if TYPE_CHECKING:
    from framework.config.check import ValidatedRecipe

CHAT_TRAINERS = frozenset({"causal_lora"})
"""Trainers that learn from chat records (prompt, completion) rather than labelled texts."""


class LoraTrainFacts(StageFacts):
    """The adapter's directory, the base model it belongs to, and the training metrics."""

    train: TrainMetrics
    adapter_dir: str
    base_model: str


def _recipe_issues(recipe: ValidatedRecipe) -> list[tuple[str, str]]:
    """The trainer must learn from chat records, with the model whose chat template rendered them."""
    bound = recipe.single.get("trainer")
    if bound is None:
        return []  # the recipe checks already name the missing section
    if bound.spec.name not in CHAT_TRAINERS:
        why = f"the tool_calls target trains a causal LM on chat records; {bound.spec.name} does not"
        return [("trainer.plugin", why + " (use override /trainer: causal_lora)")]
    model = getattr(bound.params, "model", None)
    tokenizer = tokenizer_name(recipe)
    if model != tokenizer:
        why = (
            f"is {tokenizer}, but trainer.model is {model}: the chat files are rendered with the tokenizer's chat "
            "template, which the model must share; set both to the same model (or leave tool_export.tokenizer null)"
        )
        return [("tool_export.tokenizer", why)]
    return []


def run_lora_train(run: StageRun) -> LoraTrainFacts:
    """Train the adapter on the exported chat records."""
    config = run.recipe.config
    exported = run.facts("tool_export", ToolExportFacts)
    records = {split: read_jsonl(run.path("tool_export", exported.files["chat"][split])) for split in ("train", "eval")}
    bound = run.recipe.bound("trainer")
    context = TrainContext(
        labels=list(config.intents),
        work_dir=run.work_dir,
        seed=derive_seed(config.seed, "train"),
        task=run.progress.task,
        warn=run.warn,
        log=say,
        cache_dir=Path(config.paths.outputs) / "cache" / "models",
    )
    output = bound.spec.func(records["train"], records["eval"], bound.params, context)
    result = plugin_result(bound, output, TrainResult)
    return LoraTrainFacts(
        train=plugin_metrics(bound, TrainMetrics, result.metrics),
        adapter_dir=result.model_dir.name,
        base_model=str(getattr(bound.params, "model", "")),
    )


LORA_TRAIN = register_stage(
    StageDef(
        name="lora_train",
        upstream=("tool_export",),
        config_keys=("seed",),
        run=run_lora_train,
        facts=LoraTrainFacts,
        files=section_model_files("trainer"),
        sections=(RecipeSection("trainer", TrainSection, "trainers"),),
        recipe_issues=_recipe_issues,
    )
)
