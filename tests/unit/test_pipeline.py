"""Fingerprints, caching, staleness explanations and atomic stage output."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from framework.io import read_jsonl
from framework.pipeline.runner import Pipeline, StageDef, StageRun, State, labelled_files
from framework.pipeline.staleness import explain
from framework.pipeline.targets import target_stages
from framework.registry import PluginSpec, plugin_namespace, validators
from tests.conftest import REPO, TINY, load_recipe

ALL_STAGES = target_stages("classifier")
STAGES = ALL_STAGES[:3]  # generate, validate, split: the data stages under test here
TEMPLATE_EDIT = "intents.FindCallers.templates=['who calls {{ symbol }}','callers of {{ symbol }} please']"


def run(outputs: Path, *overrides: str) -> tuple[Pipeline, dict[str, str]]:
    pipeline = Pipeline(STAGES, load_recipe(TINY, *overrides), outputs)
    actions: dict[str, str] = {}
    pipeline.run(lambda plan, action: actions.__setitem__(plan.stage.name, action))
    return pipeline, actions


def test_first_run_computes_every_stage_and_writes_manifests(tmp_path: Path) -> None:
    pipeline, actions = run(tmp_path)
    assert actions == {"generate": "ran", "validate": "ran", "split": "ran"}
    for plan in pipeline.plan():
        manifest = json.loads((plan.directory / "manifest.json").read_text())
        assert manifest["status"] == "complete"
        assert manifest["fingerprint"] == plan.fingerprint
        assert manifest["versions"]["pydantic"]
    split_dir = pipeline.plan()[-1].directory
    rows = [r for split in ("train", "eval", "test") for r in read_jsonl(split_dir / f"{split}.jsonl")]
    assert {r["intent"] for r in rows} == {"FindCallers", "SymbolQuery", "Ambiguous"}
    assert all(r["provenance"]["synthetic"] is True for r in rows)


def test_unchanged_rerun_does_no_work(tmp_path: Path) -> None:
    first, _ = run(tmp_path)
    mtimes = {p.stage.name: (p.directory / "manifest.json").stat().st_mtime_ns for p in first.plan()}
    second, actions = run(tmp_path)
    assert actions == {"generate": "cached", "validate": "cached", "split": "cached"}
    assert mtimes == {p.stage.name: (p.directory / "manifest.json").stat().st_mtime_ns for p in second.plan()}


def test_template_change_reruns_generate_and_downstream_only(tmp_path: Path) -> None:
    run(tmp_path)
    status = {p.stage.name: p for p in Pipeline(STAGES, load_recipe(TINY, TEMPLATE_EDIT), tmp_path).plan()}
    assert status["generate"].state is State.STALE
    assert "intents.FindCallers.templates changed" in status["generate"].reason
    assert "upstream generate changed" in status["validate"].reason
    _, actions = run(tmp_path, TEMPLATE_EDIT)
    assert actions == {"generate": "ran", "validate": "ran", "split": "ran"}


def test_split_change_reruns_split_only(tmp_path: Path) -> None:
    run(tmp_path)
    plans = Pipeline(STAGES, load_recipe(TINY, "split.ratios={train: 0.7, eval: 0.15, test: 0.15}"), tmp_path).plan()
    assert [p.state for p in plans] == [State.CURRENT, State.CURRENT, State.STALE]
    assert plans[2].reason.startswith("recipe keys split.ratios.eval, split.ratios.test, split.ratios.train changed")
    _, actions = run(tmp_path, "split.ratios={train: 0.7, eval: 0.15, test: 0.15}")
    assert actions == {"generate": "cached", "validate": "cached", "split": "ran"}


def test_never_run_is_missing(tmp_path: Path) -> None:
    plans = Pipeline(STAGES, load_recipe(TINY), tmp_path).plan()
    assert [p.state for p in plans] == [State.MISSING] * 3


PLUGIN_SOURCE = '''
from framework.registry import validators


@validators.register("{name}")
def {name}(rows, params, ctx):
    """A throwaway validator: only its source matters here."""
    return iter(())
'''


def register_plugin_file(path: Path, name: str) -> PluginSpec:
    """Write a validator plugin module at ``path``, import it from there and return its registered spec."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PLUGIN_SOURCE.format(name=name))
    module_spec = importlib.util.spec_from_file_location(f"throwaway_{name}", path)
    assert module_spec is not None and module_spec.loader is not None
    with plugin_namespace("pytest"):
        module_spec.loader.exec_module(importlib.util.module_from_spec(module_spec))
    return validators.resolve(f"pytest.{name}.v1")


def plugin_stage(name: str, spec: PluginSpec) -> StageDef:
    """A stage with no upstream whose only plugin is ``spec``; it writes one file."""

    def write(run_ctx: StageRun) -> dict:
        (run_ctx.work_dir / "out.txt").write_text(name)
        return {}

    return StageDef(name, (), (), run=write, plugins=lambda recipe: [SimpleNamespace(spec=spec)])


def test_editing_a_plugins_source_makes_its_stage_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validators, "_specs", dict(validators._specs))  # the throwaway plugins leave with the test
    edited_file = tmp_path / "edited" / "plugin.py"
    edited = register_plugin_file(edited_file, "throwaway_edited")
    kept = register_plugin_file(tmp_path / "kept" / "plugin.py", "throwaway_kept")
    stages = [plugin_stage("uses_edited", edited), plugin_stage("uses_kept", kept)]
    recipe = load_recipe(TINY)
    outputs = tmp_path / "outputs"
    actions: dict[str, str] = {}
    Pipeline(stages, recipe, outputs).run(lambda plan, action: actions.__setitem__(plan.stage.name, action))
    assert actions == {"uses_edited": "ran", "uses_kept": "ran"}
    before = Pipeline(stages, recipe, outputs).plan()
    assert [p.state for p in before] == [State.CURRENT, State.CURRENT]

    original = edited_file.read_text()
    edited_file.write_text(original.replace("return iter(())", "return iter([])"))  # the module is not re-imported
    after = Pipeline(stages, recipe, outputs).plan()
    assert after[0].state is State.STALE
    assert after[0].reason == "plugin code of pytest.throwaway_edited.v1 changed"
    assert after[0].fingerprint != before[0].fingerprint
    assert (after[1].state, after[1].fingerprint) == (State.CURRENT, before[1].fingerprint)

    edited_file.write_text(original)  # the cache is content-addressed: the old source finds the old output
    (edited_file.parent / "_helper.py").write_text("HELPER = 1\n")  # a private helper beside the module counts
    helper = Pipeline(stages, recipe, outputs).plan()
    assert helper[0].state is State.STALE and helper[0].reason == "plugin code of pytest.throwaway_edited.v1 changed"
    (edited_file.parent / "_helper.py").unlink()
    assert [p.state for p in Pipeline(stages, recipe, outputs).plan()] == [State.CURRENT, State.CURRENT]


def train_plan(directory: Path, outputs: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The train stage's fingerprint inputs with ``trainer.model=model`` resolved from ``directory``."""
    monkeypatch.chdir(directory)
    plans = Pipeline(ALL_STAGES, load_recipe(TINY, "trainer.model=model"), outputs).plan()
    return next(p for p in plans if p.stage.name == "train").inputs


def test_same_model_files_elsewhere_keep_the_train_fingerprint(
    tmp_path: Path, tiny_encoder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two virtual environments (or two checkouts) holding byte-identical model files.
    for name in ("env-a", "env-b"):
        shutil.copytree(tiny_encoder, tmp_path / name / "model")
    first = train_plan(tmp_path / "env-a", tmp_path / "outputs", monkeypatch)
    second = train_plan(tmp_path / "env-b", tmp_path / "outputs", monkeypatch)
    assert "trainer.model/config.json" in first["files"]
    assert not any(str(tmp_path) in label for label in first["files"])
    assert first == second

    config = tmp_path / "env-b" / "model" / "config.json"
    config.write_text(config.read_text().replace('"hidden_act"', '"hidden_act" ', 1))
    edited = train_plan(tmp_path / "env-b", tmp_path / "outputs", monkeypatch)
    assert edited["files"] != first["files"]
    assert explain(first, edited) == "input file trainer.model/config.json changed"


def test_manifests_keyed_by_absolute_path_are_explained_as_renamed_files(tmp_path: Path) -> None:
    old = {"files": {"/venv-a/model/config.json": "c" * 64, "/venv-a/model/model.safetensors": "w" * 64}}
    new = {"files": {"trainer.model/config.json": "c" * 64, "trainer.model/model.safetensors": "w" * 64}}
    assert explain(old, new) == (
        "the same input files are now recorded under other names "
        "(trainer.model/config.json, trainer.model/model.safetensors)"
    )


def test_labelled_files_are_relative_to_their_common_directory(tmp_path: Path) -> None:
    saved = [tmp_path / "ds" / "train" / "data.arrow", tmp_path / "ds" / "dataset_dict.json"]
    assert labelled_files("sources.hf", saved) == {
        "sources.hf/dataset_dict.json": saved[1],
        "sources.hf/train/data.arrow": saved[0],
    }
    assert labelled_files("sources.csv", [tmp_path / "train.csv"]) == {"sources.csv/train.csv": tmp_path / "train.csv"}
    assert labelled_files("sources.none", []) == {}


def test_interrupted_stage_leaves_nothing_a_later_run_trusts(tmp_path: Path) -> None:
    def interrupted(run_ctx: StageRun) -> dict:  # writes part of its output, then the user presses Ctrl-C
        (run_ctx.work_dir / "accepted.jsonl").write_text('{"id": "half"')
        raise KeyboardInterrupt

    stages = [STAGES[0], replace(STAGES[1], run=interrupted), STAGES[2]]
    pipeline = Pipeline(stages, load_recipe(TINY), tmp_path)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(lambda plan, action: None)
    plans = Pipeline(STAGES, load_recipe(TINY), tmp_path).plan()
    assert [p.state for p in plans] == [State.CURRENT, State.PARTIAL, State.MISSING]
    assert "partial output in" in plans[1].reason and ".failed-" in plans[1].reason
    assert not plans[1].directory.exists()
    assert list(plans[1].directory.parent.glob("*.failed-*")), "partial output is kept for inspection"
    _, actions = run(tmp_path)
    assert actions == {"generate": "cached", "validate": "ran", "split": "ran"}
    assert read_jsonl(plans[1].directory / "accepted.jsonl")
    assert not list(plans[1].directory.parent.glob("*.failed-*")), "superseded partial output is cleaned up"


def test_leftover_staging_directory_is_ignored_and_cleaned(tmp_path: Path) -> None:
    plan = Pipeline(STAGES, load_recipe(TINY), tmp_path).plan()[0]
    staging = plan.directory.with_name(f".{plan.fingerprint}.staging-killed")
    staging.mkdir(parents=True)
    (staging / "rows.jsonl").write_text("torn")
    plan = Pipeline(STAGES, load_recipe(TINY), tmp_path).plan()[0]
    assert plan.state is State.PARTIAL and "was stopped" in plan.reason
    _, actions = run(tmp_path)
    assert actions["generate"] == "ran"
    assert not staging.exists()


SCRIPT_PRELUDE = """
import json, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.conftest import load_recipe, TINY
from framework.pipeline.runner import Pipeline
from framework.pipeline.targets import target_stages
pipeline = Pipeline(target_stages("classifier")[:{count}], load_recipe(TINY), Path({out!r}))
"""


def run_script(body: str, out: Path, hash_seed: str, count: int = len(STAGES)) -> str:
    """Run ``body`` after ``SCRIPT_PRELUDE`` (the first ``count`` stages) in a fresh interpreter; its stdout."""
    script = SCRIPT_PRELUDE.format(repo=str(REPO), out=str(out), count=count) + body
    env = {"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], cwd=out.parent, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_fingerprints_are_stable_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    """Every stage's fingerprint, generate through bundle, is known before running and independent of hash seeds."""
    body = "print(json.dumps({p.stage.name: p.fingerprint for p in pipeline.plan()}))"
    results = {run_script(body, tmp_path, seed, count=len(ALL_STAGES)) for seed in ("0", "1", "12345")}
    assert len(results) == 1
    in_process = {p.stage.name: p.fingerprint for p in Pipeline(ALL_STAGES, load_recipe(TINY), tmp_path).plan()}
    assert list(in_process) == [stage.name for stage in ALL_STAGES]
    assert list(in_process)[3:] == ["train", "export", "calibrate", "evaluate", "bundle"]
    assert len(set(in_process.values())) == len(ALL_STAGES)
    assert json.loads(results.pop()) == in_process


def test_generated_rows_are_identical_across_hash_seeds(tmp_path: Path) -> None:
    outputs = {}
    for seed in ("0", "99"):
        run_script("pipeline.run(lambda plan, action: None)", tmp_path / seed, seed)
        split_dirs = list((tmp_path / seed / "cache" / "split").iterdir())
        outputs[seed] = [(split_dirs[0] / f"{name}.jsonl").read_bytes() for name in ("train", "eval", "test")]
    assert outputs["0"] == outputs["99"]
    assert outputs["0"][0].count(b"\n") > 50


def _errors() -> list[Exception]:
    """One error of every project error class a stage may raise, each with its own constructor."""
    from framework.errors import ConfigIssue, GateFailed, IntentcraftError, RecipeError, StageError, UserInputError
    from framework.registry import UnknownPlugin
    from framework.runtime import BundleError

    return [
        IntentcraftError("plain"),
        RecipeError("r.yaml", [ConfigIssue("a.b", "bad")]),
        UserInputError("no such file"),
        StageError("stage broke"),
        GateFailed("gate failed"),
        BundleError("/b", "model.onnx", "model.onnx is missing"),
        UnknownPlugin("validator", "nope", ["quality"]),
    ]


@pytest.mark.parametrize("error", _errors(), ids=lambda e: type(e).__name__)
def test_a_stage_error_of_any_class_reaches_the_user_with_where_its_output_is(tmp_path: Path, error: Exception) -> None:
    """The error raised inside a stage is the one the user sees (same class, same message), plus a note."""
    from framework.errors import user_message

    def broken(run: StageRun) -> dict:
        (run.work_dir / "half.txt").write_text("partial")
        raise error

    stage = StageDef(name="broken", upstream=(), config_keys=(), run=broken)
    pipeline = Pipeline([stage], load_recipe(TINY), tmp_path)
    with pytest.raises(type(error)) as caught:
        pipeline.run(lambda plan, action: None)
    assert caught.value is error
    message = user_message(caught.value)
    assert message.startswith(str(error))
    kept = next((tmp_path / "cache" / "broken").glob("*.failed-*"))
    assert message.endswith(f"Partial output of the broken stage is kept in {kept}.")
    assert (kept / "half.txt").read_text() == "partial"


def test_published_facts_are_checked_against_the_stage_model_and_read_back_typed(tmp_path: Path) -> None:
    """A stage publishes a pydantic model; the next stage reads it typed; a result that breaks the model fails."""
    from pydantic import BaseModel

    from framework.errors import StageError

    class CountFacts(BaseModel):
        rows: int
        file: str = "rows.txt"

    def produce(run: StageRun) -> CountFacts:
        (run.work_dir / "rows.txt").write_text("a\nb\n")
        return CountFacts(rows=2)

    seen: list[tuple[int, str]] = []

    def consume(run: StageRun) -> dict:
        facts = run.facts("produce", CountFacts)
        seen.append((facts.rows, run.path("produce", facts.file).read_text()))
        return {}

    stages = [
        StageDef("produce", (), (), produce, facts=CountFacts),
        StageDef("consume", ("produce",), (), consume),
    ]
    Pipeline(stages, load_recipe(TINY), tmp_path).run(lambda plan, action: None)
    assert seen == [(2, "a\nb\n")]

    broken = StageDef("produce", (), (), lambda run: {"rows": "many"}, version=2, facts=CountFacts)
    with pytest.raises(StageError, match=r"the stage's results do not match CountFacts .* this is a bug in the stage"):
        Pipeline([broken], load_recipe(TINY), tmp_path / "b").run(lambda plan, action: None)


def test_train_facts_of_an_older_cached_output_take_the_labels_from_its_runtime_file(tmp_path: Path) -> None:
    """Train outputs cached before the labels were published keep working: their runtime.json still holds them."""
    from framework.io import atomic_write_json
    from framework.stages.common import read_train_facts

    manifest = {
        "stage": "train",
        "status": "complete",
        "train": {"epochs_run": 2},
        "model_dir": "model",
        "max_length": 64,
    }
    atomic_write_json(tmp_path / "manifest.json", manifest)
    atomic_write_json(tmp_path / "runtime.json", {"labels": ["B", "A"], "max_length": 64})
    assert read_train_facts(tmp_path).labels == ["B", "A"]
    atomic_write_json(tmp_path / "manifest.json", {**manifest, "labels": ["A", "B"]})
    assert read_train_facts(tmp_path).labels == ["A", "B"]
    assert read_train_facts(tmp_path).tokenizer_path() == "model/tokenizer.json"


def test_a_bundle_file_a_plugin_got_wrong_is_a_stage_error_naming_it() -> None:
    """A calibrator's temperature of 0 would make a bundle the runtime refuses: the stage stops, naming it."""
    from framework.errors import StageError
    from framework.runtime.bundle import CalibrationFile
    from framework.stages.common import bundle_file

    fitted = {"temperature": 0.0, "thresholds": {}, "global_threshold": 0.5, "fallback_intent": None}
    with pytest.raises(StageError) as caught:
        bundle_file(CalibrationFile, fitted, "calibrator builtin.temperature.v1")
    assert str(caught.value).startswith(
        "calibrator builtin.temperature.v1 gave a CalibrationFile the bundle cannot ship: temperature: "
    )
    assert bundle_file(CalibrationFile, {**fitted, "temperature": 1.5}, "x").temperature == 1.5
