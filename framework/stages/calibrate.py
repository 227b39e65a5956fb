"""Calibrate stage: fit the calibrator on the exported model's eval-split logits, then the ECE gate."""

from __future__ import annotations

from typing import Any

import numpy as np

from framework.errors import GateFailed, StageError
from framework.io import atomic_write_json
from framework.pipeline import StageDef, StageRun
from framework.plugin_api import CalibrateContext
from framework.runtime.onnx_classifier import OnnxTextClassifier
from framework.stages.common import exported_model_path, runtime_facts, split_rows

CALIBRATION_FILE = "calibration.json"


def exported_model(run: StageRun) -> tuple[OnnxTextClassifier, dict[str, Any]]:
    """The exported model (as the runtime will run it) and the trained model's labels and max_length."""
    facts = runtime_facts(run.inputs["train"])
    model_file = exported_model_path(run.inputs["export"])
    tokenizer = run.inputs["train"] / "model" / "tokenizer.json"
    return OnnxTextClassifier(model_file, tokenizer, facts["max_length"]), facts


def run_calibrate(run: StageRun) -> dict[str, Any]:
    """Produce ``calibration.json`` and the reliability diagram."""
    rows = split_rows(run, "eval")
    if not rows:
        raise StageError("calibrate: the eval split is empty; give split.ratios.eval a share (e.g. 0.1).")
    model, facts = exported_model(run)
    labels = facts["labels"]
    bar = run.progress.task("calibrate: eval logits", len(rows))
    logits = model.logits([row["text"] for row in rows])
    bar(len(rows))
    fallback = run.recipe.config.fallback_intent
    context = CalibrateContext(
        logits=logits,
        label_ids=np.array([labels.index(row["intent"]) for row in rows], dtype=np.int64),
        labels=labels,
        fallback_intent=fallback,
        work_dir=run.work_dir,
        warn=run.warn,
    )
    bound = run.recipe.bound("calibrate")
    result = bound.spec.func(bound.params, context)
    calibration = {
        "temperature": result.temperature,
        "thresholds": result.thresholds,
        "global_threshold": result.global_threshold,
        "fallback_intent": fallback,
    }
    atomic_write_json(run.work_dir / CALIBRATION_FILE, calibration)
    _ece_gate(result.metrics, run.recipe.config.calibrate.max_ece)
    return {
        "calibration": {**calibration, **result.metrics},
        "plots": [str(p.relative_to(run.work_dir)) for p in result.plots],
    }


def _ece_gate(metrics: dict[str, Any], limit: float | None) -> None:
    after = metrics.get("ece_after")
    if limit is not None and after is not None and after > limit:
        raise GateFailed(
            f"calibrate: expected calibration error after temperature scaling is {after:.4f} (before: "
            f"{metrics.get('ece_before', float('nan')):.4f}), above calibrate.max_ece={limit}. More eval rows "
            "(split.ratios.eval) give a steadier fit; or relax the gate for this recipe."
        )


CALIBRATE = StageDef(
    name="calibrate",
    upstream=("split", "train", "export"),
    config_keys=("calibrate", "intents"),
    run=run_calibrate,
    plugins=lambda recipe: [recipe.bound("calibrate")],
)
