"""Export stage: the exporter plugin, then the accuracy-drop gate."""

from __future__ import annotations

from typing import Any

from framework.errors import GateFailed
from framework.pipeline import StageDef, StageRun
from framework.plugin_api import ExportContext
from framework.stages.common import runtime_facts, split_rows


def run_export(run: StageRun) -> dict[str, Any]:
    """Produce the runtime model file; fail the gate if it loses too much accuracy."""
    train_dir = run.inputs["train"]
    facts = runtime_facts(train_dir)
    bound = run.recipe.bound("export")
    context = ExportContext(
        model_dir=train_dir / "model",
        labels=facts["labels"],
        eval_rows=split_rows(run, "eval"),
        max_length=facts["max_length"],
        work_dir=run.work_dir,
        task=run.progress.task,
        warn=run.warn,
    )
    result = bound.spec.func(bound.params, context)
    drop = result.reference_accuracy - result.exported_accuracy
    limit = run.recipe.config.export.max_accuracy_drop
    if drop > limit:
        raise GateFailed(
            f"export: the exported model's eval accuracy is {result.exported_accuracy:.4f} against "
            f"{result.reference_accuracy:.4f} for the PyTorch model, a drop of {drop:.4f} > "
            f"export.max_accuracy_drop={limit}. Try export.per_channel=true and "
            "export.reduce_range=true where they are off, quantize fewer op types (export.op_types), or ship fp32 "
            "with export.quantize=false."
        )
    return {
        "export": {
            "reference_accuracy": result.reference_accuracy,
            "exported_accuracy": result.exported_accuracy,
            "accuracy_drop": drop,
            "max_accuracy_drop": limit,
            **result.metrics,
        },
        "model_file": result.model_path.name,
    }


EXPORT = StageDef(
    name="export",
    upstream=("split", "train"),
    config_keys=("export",),
    run=run_export,
    plugins=lambda recipe: [recipe.bound("export")],
)
