"""Bundle stage: the evaluated files plus a model card, the run's report, bundle.json metrics and checksums."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from framework.config.schema import PluginSection
from framework.data.rows import SPLITS
from framework.evaluation.model_card import render_card
from framework.io import atomic_write_text, read_json
from framework.pipeline.facts import BundleFacts, CalibrationFacts, EvaluateFacts
from framework.pipeline.runner import RecipeSection, StageDef, StageRun
from framework.pipeline.targets import register_stage
from framework.plugin_api import ReportContext
from framework.runtime import verify_bundle, write_checksums
from framework.runtime.bundle import BundleManifest
from framework.stages.common import bundle_file, split_rows
from framework.stages.evaluate import write_model

BUNDLE_DIR = "bundle"


class ReportSection(PluginSection):
    """The reporter plugin that writes the report page (into the bundle, and into each run's record)."""


REPORT = RecipeSection("report", ReportSection, "reporters")


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
        "ece_after": calibrated.calibration.ece_after,
    }
    target = run.work_dir / BUNDLE_DIR
    shutil.copytree(run.path("evaluate", evaluated.bundle_dir), target)
    atomic_write_text(target / "README.md", render_card(run.recipe, manifests, data))
    _write_report(run, target)
    manifest = {**read_json(target / "bundle.json"), "metrics": metrics, "data": data}
    write_model(target / "bundle.json", bundle_file(BundleManifest, manifest, "evaluate"))
    write_checksums(target)
    info = verify_bundle(target)
    return BundleFacts(bundle_dir=BUNDLE_DIR, files=info.files, metrics=metrics, data=data)


def _write_report(run: StageRun, target: Path) -> None:
    """The recipe's reporter writes its page into the bundle, from the upstream stages' manifests and files."""
    bound = run.recipe.bound(REPORT.key)
    context = ReportContext(
        recipe_name=run.recipe.name,
        recipe_file=Path(run.recipe.source).name,  # the bundle is cached across checkouts: no machine path
        run_dir=target,
        manifests=dict(run.manifests),
        stage_dirs=dict(run.inputs),
        shipped=True,  # no write time or timings: a rebuild of the same model ships the same report
    )
    bound.spec.func(bound.params, context)  # writes report.md (and its assets) into the bundle


BUNDLE = register_stage(
    StageDef(
        name="bundle",
        upstream=("generate", "validate", "split", "train", "export", "calibrate", "evaluate"),
        config_keys=("name", "description", "intents"),
        run=run_bundle,
        facts=BundleFacts,
        version=3,  # 2: the model card's headline table; 3: the report page (report.md, report_assets/)
        sections=(REPORT,),
    )
)
