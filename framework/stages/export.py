"""Export stage: the exporter plugin, then the accuracy-drop gate."""

from __future__ import annotations

from pydantic import Field

from framework.config.schema import PluginSection
from framework.errors import GateFailed
from framework.pipeline.facts import ExportFacts, ExportMetrics
from framework.pipeline.runner import RecipeSection, StageDef, StageRun
from framework.pipeline.targets import register_stage
from framework.plugin_api import ExportContext, ExportResult
from framework.stages.common import plugin_metrics, plugin_result, split_rows, trained, trained_labels


class ExportSection(PluginSection):
    """The exporter plugin; ``max_accuracy_drop`` gates INT8 accuracy against the fp32 model on the eval split."""

    max_accuracy_drop: float = Field(default=0.02, ge=0, le=1)


def run_export(run: StageRun) -> ExportFacts:
    """Produce the runtime model file; fail the gate if it loses too much accuracy."""
    facts = trained(run)
    bound = run.recipe.bound("export")
    context = ExportContext(
        model_dir=run.path("train", facts.model_dir),
        labels=trained_labels(run),
        eval_rows=split_rows(run, "eval"),
        max_length=facts.max_length,
        work_dir=run.work_dir,
        task=run.progress.task,
        warn=run.warn,
    )
    result = plugin_result(bound, bound.spec.func(bound.params, context), ExportResult)
    drop = result.reference_accuracy - result.exported_accuracy
    limit = run.recipe.section("export", ExportSection).max_accuracy_drop
    if drop > limit:
        raise GateFailed(
            f"export: the exported model's eval accuracy is {result.exported_accuracy:.4f} against "
            f"{result.reference_accuracy:.4f} for the PyTorch model, a drop of {drop:.4f} > "
            f"export.max_accuracy_drop={limit}. Try export.per_channel=true and "
            "export.reduce_range=true where they are off, quantize fewer op types (export.op_types), or ship fp32 "
            "with export.quantize=false."
        )
    accuracy = {
        "reference_accuracy": result.reference_accuracy,
        "exported_accuracy": result.exported_accuracy,
        "accuracy_drop": drop,
        "max_accuracy_drop": limit,
    }
    return ExportFacts(
        export=plugin_metrics(bound, ExportMetrics, {**accuracy, **result.metrics}), model_file=result.model_path.name
    )


EXPORT = register_stage(
    StageDef(
        name="export",
        upstream=("split", "train"),
        config_keys=(),
        run=run_export,
        facts=ExportFacts,
        sections=(RecipeSection("export", ExportSection, "exporters"),),
    )
)
