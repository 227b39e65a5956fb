"""Calibrate stage: fit the calibrator on the exported model's eval-split logits, then the ECE gate, then the
out-of-distribution score (``calibrate.ood``): fitted on the train split, its threshold set on the eval split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field

from framework.config.schema import PluginSection, StrictModel
from framework.errors import GateFailed, StageError
from framework.evaluation.calibration import EceNoise, WorstBin, calibration_checks
from framework.io import atomic_write_json
from framework.pipeline.facts import CalibrationFacts, CalibrationMetrics
from framework.pipeline.runner import RecipeSection, StageDef, StageRun
from framework.pipeline.targets import register_stage
from framework.plugin_api import CalibrateContext, CalibrationResult
from framework.runtime.bundle import CalibrationFile
from framework.runtime.onnx_classifier import OnnxTextClassifier
from framework.stages.common import (
    bundle_file,
    exported_model_path,
    model_outputs,
    plugin_metrics,
    plugin_result,
    split_rows,
    tokenizer_path,
    trained,
    trained_labels,
)
from framework.stages.ood_fit import EvalOutputs, fit_ood

CALIBRATION_FILE = "calibration.json"


class OodSettings(StrictModel):
    """``calibrate.ood``: the out-of-distribution score the router abstains on (``framework.runtime.ood``).

    Attributes:
        method: ``mahalanobis`` (distance of the pooled embedding to the nearest in-scope class mean, fitted on
            the train split; needs the exported model's embedding output), ``energy`` or ``max_softmax`` (from
            the logits), or ``none`` (the router abstains on confidence alone).
        in_scope_recall: The threshold keeps this share of the in-scope eval rows; the rest of them, and every
            text scored above it, abstain.
    """

    method: Literal["mahalanobis", "energy", "max_softmax", "none"] = "mahalanobis"
    in_scope_recall: float = Field(default=0.98, gt=0, le=1)


class CalibrateSection(PluginSection):
    """The calibrator plugin; ``max_ece`` gates the expected calibration error after calibration (None: no gate);
    ``ood`` sets the out-of-distribution score."""

    max_ece: float | None = Field(default=0.05, ge=0, le=1)
    ood: OodSettings = Field(default_factory=OodSettings)


def exported_model(run: StageRun) -> tuple[OnnxTextClassifier, list[str]]:
    """The exported model (as the runtime will run it) and the trained model's labels in logit order."""
    model = OnnxTextClassifier(exported_model_path(run), tokenizer_path(run), trained(run).max_length)
    return model, trained_labels(run)


def run_calibrate(run: StageRun) -> CalibrationFacts:
    """Produce ``calibration.json`` (the bundle's, as ``CalibrationFile``) and the reliability diagram."""
    rows = split_rows(run, "eval")
    if not rows:
        raise StageError("calibrate: the eval split is empty; give split.ratios.eval a share (e.g. 0.1).")
    model, labels = exported_model(run)
    settings = run.recipe.section("calibrate", CalibrateSection)
    method = _ood_method(settings.ood, model, run.warn)
    logits, embeddings = model_outputs(run, model, rows, "calibrate: eval", embeddings=method == "mahalanobis")
    label_ids = np.array([labels.index(row["intent"]) for row in rows], dtype=np.int64)
    fallback = run.recipe.config.fallback_intent
    context = CalibrateContext(
        logits=logits,
        label_ids=label_ids,
        labels=labels,
        fallback_intent=fallback,
        work_dir=run.work_dir,
        warn=run.warn,
    )
    bound = run.recipe.bound("calibrate")
    result = plugin_result(bound, bound.spec.func(bound.params, context), CalibrationResult)
    fitted = {
        "temperature": result.temperature,
        "thresholds": result.thresholds,
        "global_threshold": result.global_threshold,
        "fallback_intent": fallback,
    }
    ood = None
    if method != "none":
        fallback_id = labels.index(fallback) if fallback in labels else None
        eval_outputs = EvalOutputs(logits, embeddings, label_ids, fallback_id)
        ood = fit_ood(run, model, settings.ood.in_scope_recall, method, result.temperature, eval_outputs)
        fitted["ood"] = ood.calibration()
    calibration = bundle_file(CalibrationFile, fitted, f"calibrator {bound.spec.id}").model_dump(mode="json")
    atomic_write_json(run.work_dir / CALIBRATION_FILE, calibration)
    _ece_gate(result.metrics, settings.max_ece, run.warn)
    return CalibrationFacts(
        calibration=plugin_metrics(
            bound,
            CalibrationMetrics,
            {**calibration, **result.metrics, "checks": eval_checks(result.metrics, len(rows))},
        ),
        plots=[str(p.relative_to(run.work_dir)) for p in result.plots],
        calibration_file=CALIBRATION_FILE,
        ood=ood,
    )


def _ood_method(settings: OodSettings, model: OnnxTextClassifier, warn: Callable[[str], None]) -> str:
    """The score to fit: ``calibrate.ood.method``, or ``energy`` where Mahalanobis lacks the embedding output."""
    if settings.method == "mahalanobis" and model.embedding_name is None:
        warn(
            "calibrate.ood.method=mahalanobis needs the exported model's embedding output, which this model lacks "
            "(see the export stage's warning); using the energy score instead. Set calibrate.ood.method to "
            "energy, max_softmax or none to choose."
        )
        return "energy"
    return settings.method


def eval_checks(metrics: dict[str, Any], rows: int) -> list[dict[str, Any]]:
    """The calibration checks of the eval split (see ``calibration_checks``) from a calibrator's metrics;
    empty when it reports no ``ece_after`` or no ``ece_noise_p95``."""
    if metrics.get("ece_after") is None or metrics.get("ece_noise_p95") is None:
        return []
    worst = metrics.get("worst_bin_after")
    checks = calibration_checks(
        "eval",
        int(metrics.get("n", rows)),
        metrics["ece_after"],
        EceNoise(metrics.get("ece_noise_mean", float("nan")), metrics["ece_noise_p95"]),
        fitted_here=True,
        ece_before=metrics.get("ece_before"),
        mce_before=metrics.get("mce_before"),
        mce=metrics.get("mce_after"),
        worst=WorstBin(**worst) if isinstance(worst, dict) else None,
    )
    return [check.to_dict() for check in checks]


def _ece_gate(metrics: dict[str, Any], limit: float | None, warn: Callable[[str], None]) -> None:
    """Fail when ``ece_after`` exceeds ``limit``, saying whether the excess is within chance on these rows; warn
    when the gate passes at a ``limit`` that lies within that chance (``ece_noise_*`` from the calibrator)."""
    after = metrics.get("ece_after")
    if limit is None or after is None:
        return
    noise_mean, noise_p95 = metrics.get("ece_noise_mean"), metrics.get("ece_noise_p95")
    rows = metrics.get("n", "the")
    if after <= limit:
        if noise_p95 is not None and limit < noise_p95:
            warn(
                f"calibrate.max_ece={limit} passed, but it lies within the sampling noise of an ECE measured on "
                f"{rows} eval rows: a perfectly calibrated model measures {noise_mean:.4f} on average and above "
                f"{noise_p95:.4f} one time in twenty, so this gate can pass or fail by chance. Give the eval split "
                f"more rows (split.ratios.eval) or set calibrate.max_ece above {noise_p95:.4f}."
            )
        return
    before = f"{metrics.get('ece_before', float('nan')):.4f}"
    measured = f"calibrate: expected calibration error after temperature scaling is {after:.4f} (before: {before})"
    if noise_p95 is not None and after <= noise_p95:
        raise GateFailed(
            f"{measured}, above calibrate.max_ece={limit}, but within what chance alone gives on {rows} eval rows (a "
            f"perfectly calibrated model measures {noise_mean:.4f} on average, up to {noise_p95:.4f} one time in "
            "twenty): the eval split is too small to judge calibration at this limit. Give it more rows "
            f"(split.ratios.eval) or set calibrate.max_ece above {noise_p95:.4f}."
        )
    chance = "" if noise_mean is None else f" (chance alone gives {noise_mean:.4f} on these rows)"
    raise GateFailed(
        f"{measured}, above calibrate.max_ece={limit}{chance}. More eval rows (split.ratios.eval) give a steadier "
        "fit; or relax the gate for this recipe."
    )


CALIBRATE = register_stage(
    StageDef(
        name="calibrate",
        upstream=("split", "train", "export"),
        config_keys=("intents",),
        run=run_calibrate,
        facts=CalibrationFacts,
        version=3,  # 2: calibration checks (ECE against chance, a rising MCE) in the facts; 3: the OOD score
        sections=(RecipeSection("calibrate", CalibrateSection, "calibrators"),),
    )
)
