"""Train stage: fine-tune the recipe's trainer on the train split, early-stopping on the eval split."""

from __future__ import annotations

from framework.config.schema import PluginSection
from framework.data.seeding import derive_seed
from framework.pipeline.facts import TrainFacts, TrainMetrics
from framework.pipeline.runner import RecipeSection, StageDef, StageRun
from framework.pipeline.targets import register_stage
from framework.plugin_api import TrainContext, TrainResult
from framework.stages.common import plugin_metrics, plugin_result, say, section_model_files, split_rows


class TrainSection(PluginSection):
    """The trainer plugin and its hyperparameters."""


def run_train(run: StageRun) -> TrainFacts:
    """Produce ``model/`` (Hugging Face layout) and ``training.json``; the facts name the labels in logit order."""
    config = run.recipe.config
    labels = list(config.intents)
    bound = run.recipe.bound("trainer")
    context = TrainContext(
        labels=labels,
        work_dir=run.work_dir,
        seed=derive_seed(config.seed, "train"),
        task=run.progress.task,
        warn=run.warn,
        log=say,
    )
    output = bound.spec.func(split_rows(run, "train"), split_rows(run, "eval"), bound.params, context)
    result = plugin_result(bound, output, TrainResult)
    max_length = getattr(bound.params, "max_length", 128)
    return TrainFacts(
        train=plugin_metrics(bound, TrainMetrics, result.metrics),
        model_dir=result.model_dir.name,
        max_length=max_length,
        labels=labels,
    )


TRAIN = register_stage(
    StageDef(
        name="train",
        upstream=("split",),
        config_keys=("seed",),
        run=run_train,
        facts=TrainFacts,
        files=section_model_files("trainer"),
        sections=(RecipeSection("trainer", TrainSection, "trainers"),),
    )
)
