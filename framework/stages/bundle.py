"""Bundle stage: the evaluated files plus a model card, bundle.json metrics and checksums."""

from __future__ import annotations

from collections import Counter
from typing import Any

from framework.io import read_json
from framework.model_card import render_card
from framework.pipeline import StageDef, StageRun
from framework.rows import SPLITS
from framework.runtime import verify_bundle
from framework.stages.common import split_rows
from framework.stages.evaluate import assemble_bundle

BUNDLE_DIR = "bundle"


def _data_counts(run: StageRun) -> dict[str, dict[str, int]]:
    counts = {}
    for split in SPLITS:
        kinds = Counter(
            "synthetic" if row["provenance"].get("synthetic", True) else "real" for row in split_rows(run, split)
        )
        counts[split] = dict(kinds)
    return counts


def run_bundle(run: StageRun) -> dict[str, Any]:
    """Produce ``bundle/``, verified as the runtime will verify it."""
    manifests = {name: read_json(path / "manifest.json") for name, path in run.inputs.items() if name != "split"}
    data = _data_counts(run)
    evaluation = manifests["evaluate"]["evaluation"]["all"]
    metrics = {
        "evaluated_split": manifests["evaluate"]["evaluated_split"],
        "evidence": evaluation["evidence"],
        "accuracy": evaluation["accuracy"],
        "macro_f1": evaluation["macro_f1"],
        "ece_after": manifests["calibrate"]["calibration"].get("ece_after"),
    }
    card = render_card(run.recipe, manifests, data)
    target = assemble_bundle(run, run.work_dir / BUNDLE_DIR, card, {"metrics": metrics, "data": data})
    info = verify_bundle(target)
    return {"bundle_dir": BUNDLE_DIR, "files": info.files, "metrics": metrics, "data": data}


BUNDLE = StageDef(
    name="bundle",
    upstream=("split", "train", "export", "calibrate", "evaluate"),
    config_keys=("name", "description", "intents"),
    run=run_bundle,
    version=2,  # 2: the model card shows the run's headline table (framework.headline)
)
