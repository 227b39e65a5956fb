"""Evaluate stage: assemble the bundle as it will ship, load it with the runtime Router, score the test split."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from framework import __version__
from framework.calibration_metrics import EceNoise, calibration_checks
from framework.io import atomic_write_json, atomic_write_text, read_json, write_jsonl
from framework.metrics import evaluate_rows, plot_confusion_matrix
from framework.pipeline import StageDef, StageRun
from framework.runtime import Router, write_checksums
from framework.stages.calibrate import CALIBRATION_FILE
from framework.stages.common import exported_model_path, model_input_names, runtime_facts, split_rows
from framework.stages.shipped_labels import intent_names, shipped_calibration, shipped_labels, to_intent_name

CANDIDATE = "bundle"


def assemble_bundle(run: StageRun, target: Path, card: str, extra: dict[str, Any] | None = None) -> Path:
    """Write a complete bundle directory (model, tokenizer, labels, calibration, bundle.json, card, checksums)."""
    train_dir, export_dir = run.inputs["train"], run.inputs["export"]
    facts = runtime_facts(train_dir)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exported_model_path(export_dir), target / "model.onnx")
    shutil.copyfile(train_dir / "model" / "tokenizer.json", target / "tokenizer.json")
    display = run.recipe.config.display_labels
    calibration = read_json(run.inputs["calibrate"] / CALIBRATION_FILE)
    atomic_write_json(target / "calibration.json", shipped_calibration(calibration, display))
    atomic_write_json(target / "labels.json", {"labels": shipped_labels(facts["labels"], display)})
    names = {"intent_names": intent_names(display)} if display else {}
    atomic_write_json(
        target / "bundle.json",
        {
            "format_version": 1,
            "recipe": run.recipe.name,
            "max_length": facts["max_length"],
            "created_by": f"intentcraft {__version__}",
            "inputs": model_input_names(target / "model.onnx"),
            **names,
            **(extra or {}),
        },
    )
    atomic_write_text(target / "README.md", card)
    write_checksums(target)
    return target


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


def run_evaluate(run: StageRun) -> dict[str, Any]:
    """Produce ``predictions.jsonl``, the confusion matrix and the metrics, from the shipped artifact."""
    config = run.recipe.config
    bundle = assemble_bundle(run, run.work_dir / CANDIDATE, "Candidate bundle evaluated by intentcraft.\n")
    router = Router.load(bundle)
    split, rows = _test_rows(run)
    bar = run.progress.task(f"evaluate: {split} split", len(rows))
    results, step = [], config.evaluate.batch_size
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
        worst_k=config.evaluate.worst_examples,
        ece_bins=config.evaluate.ece_bins,
    )
    add_calibration_checks(evaluation, split)
    matrix = evaluation["all"]["confusion_matrix"]
    title = f"{run.recipe.name}: {split} split ({evaluation['all']['evidence']} rows)"
    plot_confusion_matrix(matrix, labels, run.work_dir / "confusion_matrix.png", title)
    write_jsonl(
        run.work_dir / "predictions.jsonl",
        [
            {"id": row["id"], "intent": row["intent"], **result.to_dict()}
            for row, result in zip(rows, results, strict=True)
        ],
    )
    decisions = Counter(r.decision for r in results)
    return {
        "evaluation": evaluation,
        "evaluated_split": split,
        "decisions": dict(decisions),
        "plots": ["confusion_matrix.png"],
        "candidate_bundle": CANDIDATE,
    }


EVALUATE = StageDef(
    name="evaluate",
    upstream=("split", "train", "export", "calibrate"),
    config_keys=("evaluate", "intents"),
    run=run_evaluate,
    version=2,  # 2: calibration checks (held-out ECE against chance) beside each part's calibration
)
