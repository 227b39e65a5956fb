"""Bundle stage: the evaluated files plus a model card, bundle.json metrics and checksums."""

from __future__ import annotations

import shutil
from collections import Counter

from framework.data.rows import SPLITS
from framework.evaluation.model_card import render_card
from framework.io import atomic_write_text, read_json
from framework.pipeline.facts import BundleFacts, CalibrationFacts, EvaluateFacts
from framework.pipeline.runner import StageDef, StageRun
from framework.runtime import verify_bundle, write_checksums
from framework.runtime.bundle import BundleManifest
from framework.stages.common import bundle_file, split_rows
from framework.stages.evaluate import write_model

BUNDLE_DIR = "bundle"


def _data_counts(run: StageRun) -> dict[str, dict[str, int]]:
    counts = {}
    for split in SPLITS:
        kinds = Counter(
            "synthetic" if row["provenance"].get("synthetic", True) else "real" for row in split_rows(run, split)
        )
        counts[split] = dict(kinds)
    return counts


def run_bundle(run: StageRun) -> BundleFacts:
    """Copy the bundle evaluate scored, add its model card and metrics, re-seal the checksums and verify it."""
    manifests = {name: manifest for name, manifest in run.manifests.items() if name != "split"}
    evaluated = run.facts("evaluate", EvaluateFacts)
    calibrated = run.facts("calibrate", CalibrationFacts)
    data = _data_counts(run)
    overall = evaluated.overall
    metrics = {
        "evaluated_split": evaluated.evaluated_split,
        "evidence": overall.evidence,
        "accuracy": overall.accuracy,
        "macro_f1": overall.macro_f1,
        "ece_after": calibrated.calibration.get("ece_after"),
    }
    target = run.work_dir / BUNDLE_DIR
    shutil.copytree(run.path("evaluate", evaluated.bundle_dir), target)
    atomic_write_text(target / "README.md", render_card(run.recipe, manifests, data))
    manifest = {**read_json(target / "bundle.json"), "metrics": metrics, "data": data}
    write_model(target / "bundle.json", bundle_file(BundleManifest, manifest, "evaluate"))
    write_checksums(target)
    info = verify_bundle(target)
    return BundleFacts(bundle_dir=BUNDLE_DIR, files=info.files, metrics=metrics, data=data)


BUNDLE = StageDef(
    name="bundle",
    upstream=("split", "train", "export", "calibrate", "evaluate"),
    config_keys=("name", "description", "intents"),
    run=run_bundle,
    facts=BundleFacts,
    version=2,  # 2: the model card shows the run's headline table (framework.evaluation.headline)
)
