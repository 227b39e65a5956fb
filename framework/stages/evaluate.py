"""Evaluate stage: assemble the bundle as it will ship, load it with the runtime Router, score the test split."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from framework import __version__
from framework.config.schema import StrictModel
from framework.evaluation.calibration import EceNoise, calibration_checks
from framework.evaluation.metrics import evaluate_rows, plot_confusion_matrix, plot_ood_scores
from framework.io import atomic_write_json, atomic_write_text, read_json, write_jsonl
from framework.pipeline.facts import CalibrationFacts, EvaluateFacts
from framework.pipeline.runner import RecipeSection, StageDef, StageRun
from framework.pipeline.targets import register_stage
from framework.runtime import Router, write_checksums
from framework.runtime.bundle import BundleManifest, CalibrationFile, LabelsFile
from framework.stages.common import (
    bundle_file,
    exported_model_path,
    model_input_names,
    split_rows,
    tokenizer_path,
    trained,
    trained_labels,
)
from framework.stages.shipped_labels import intent_names, shipped_calibration, shipped_labels, to_intent_name

BUNDLE_DIR = "bundle"
OOD_PLOT = "ood_scores.png"
PLACEHOLDER_CARD = "Bundle evaluated by intentcraft; the bundle stage writes its model card.\n"


class EvaluateSettings(StrictModel):
    """The recipe's ``evaluate`` section: what the evaluate stage reports.

    Attributes:
        worst_examples: Most confident mistakes kept per evidence part.
        batch_size: Texts handed to the Router per call (progress steps); results do not depend on it.
        ece_bins: Equal-width bins of the held-out ECE and MCE of the calibrated confidences.
    """

    worst_examples: int = Field(default=20, ge=0, le=10_000)
    batch_size: int = Field(default=64, ge=1, le=4096)
    ece_bins: int = Field(default=15, ge=2, le=100)


def write_bundle(run: StageRun, target: Path) -> Path:
    """Write the bundle as it ships: model, tokenizer, labels, calibration (with ``ood.npz`` for a Mahalanobis
    out-of-distribution score), ``bundle.json`` and checksums.

    The one place a bundle is assembled. Evaluate scores exactly these files; the bundle stage copies them,
    adds the model card and the metrics to ``bundle.json``, and re-seals the checksums.
    """
    facts = trained(run)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exported_model_path(run), target / "model.onnx")
    shutil.copyfile(tokenizer_path(run), target / "tokenizer.json")
    display = run.recipe.config.display_labels
    calibrated = run.facts("calibrate", CalibrationFacts)
    fitted = read_json(run.path("calibrate", calibrated.calibration_file))
    if calibrated.ood is not None and calibrated.ood.file is not None:
        shutil.copyfile(run.path("calibrate", calibrated.ood.file), target / calibrated.ood.file)
    write_model(
        target / "calibration.json", bundle_file(CalibrationFile, shipped_calibration(fitted, display), "calibrate")
    )
    labels = {"labels": shipped_labels(trained_labels(run), display)}
    write_model(target / "labels.json", bundle_file(LabelsFile, labels, "train"))
    manifest = {
        "format_version": 2,
        "recipe": run.recipe.name,
        "max_length": facts.max_length,
        "created_by": f"intentcraft {__version__}",
        "inputs": model_input_names(target / "model.onnx"),
        **({"intent_names": intent_names(display)} if display else {}),
    }
    write_model(target / "bundle.json", bundle_file(BundleManifest, manifest, "export"))
    atomic_write_text(target / "README.md", PLACEHOLDER_CARD)
    write_checksums(target)
    return target


def write_model(path: Path, model: BaseModel) -> None:
    """A bundle file from its schema model (``framework.runtime.bundle``)."""
    atomic_write_json(path, model.model_dump(mode="json"))


def _test_rows(run: StageRun) -> tuple[str, list[dict[str, Any]]]:
    rows = split_rows(run, "test")
    if rows:
        return "test", rows
    run.warn("the test split is empty: metrics are on the eval split, which also fitted the calibration (optimistic)")
    return "eval", split_rows(run, "eval")


def add_calibration_checks(evaluation: dict[str, Any], split: str) -> None:
    """Put the calibration checks of each evaluated part (all, real, synthetic) beside its held-out ECE."""
    for part in evaluation.values():
        held_out = (part or {}).get("calibration")
        if not held_out:
            continue
        noise = EceNoise(held_out["ece_noise_mean"], held_out["ece_noise_p95"])
        checks = calibration_checks(split, part["n"], held_out["ece"], noise, fitted_here=split == "eval")
        held_out["checks"] = [check.to_dict() for check in checks]


def run_evaluate(run: StageRun) -> EvaluateFacts:
    """Write the bundle, then produce ``predictions.jsonl``, the confusion matrix and the metrics from it."""
    config = run.recipe.config
    bundle = write_bundle(run, run.work_dir / BUNDLE_DIR)
    router = Router.load(bundle)
    split, rows = _test_rows(run)
    bar = run.progress.task(f"evaluate: {split} split", len(rows))
    settings = run.recipe.section("evaluate", EvaluateSettings)
    results, step = [], settings.batch_size
    for start in range(0, len(rows), step):
        results += router.predict([row["text"] for row in rows[start : start + step]])
        bar(min(step, len(rows) - start))
    names = intent_names(config.display_labels)  # the router answers with data labels; metrics use intent names
    labels = [to_intent_name(label, names) or "" for label in router.labels]
    evaluation = evaluate_rows(
        rows,
        [to_intent_name(r.predicted, names) or "" for r in results],
        [r.confidence for r in results],
        [to_intent_name(r.intent, names) for r in results],
        [r.decision for r in results],
        labels,
        config.fallback_intent,
        worst_k=settings.worst_examples,
        ece_bins=settings.ece_bins,
        ood_scores=[r.ood_score for r in results] if router.ood is not None else None,
        ood_threshold=router.ood.threshold if router.ood is not None else None,
    )
    add_calibration_checks(evaluation, split)
    matrix = evaluation["all"]["confusion_matrix"]
    title = f"{run.recipe.name}: {split} split ({evaluation['all']['evidence']} rows)"
    plot_confusion_matrix(matrix, labels, run.work_dir / "confusion_matrix.png", title)
    plots = ["confusion_matrix.png"]
    if router.ood is not None and evaluation["all"].get("ood", {}).get("out_of_scope"):
        scores = np.array([r.ood_score for r in results], dtype=np.float64)
        outside = np.array([row["intent"] == config.fallback_intent for row in rows])
        ood_title = f"{run.recipe.name}: {router.ood.method} score on the {split} split"
        plot_ood_scores(scores, outside, router.ood.threshold, run.work_dir / OOD_PLOT, ood_title)
        plots.append(OOD_PLOT)
    write_jsonl(
        run.work_dir / "predictions.jsonl",
        [
            # ``intent`` is the router's route (RouteResult's); ``true_intent`` the row's label
            {"id": row["id"], "true_intent": row["intent"], **result.to_dict()}
            for row, result in zip(rows, results, strict=True)
        ],
    )
    decisions: Counter[str] = Counter(r.decision for r in results)
    return EvaluateFacts(
        evaluation=evaluation,
        evaluated_split=split,
        decisions=dict(decisions),
        plots=plots,
        bundle_dir=BUNDLE_DIR,
    )


EVALUATE = register_stage(
    StageDef(
        name="evaluate",
        upstream=("split", "train", "export", "calibrate"),
        config_keys=("intents",),
        run=run_evaluate,
        facts=EvaluateFacts,
        version=3,  # 2: calibration checks (held-out ECE against chance) beside each part's calibration; 3: OOD
        sections=(RecipeSection("evaluate", EvaluateSettings),),
    )
)
