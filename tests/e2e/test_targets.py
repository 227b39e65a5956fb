"""Recipe targets: the classifier by default, and a toy target (a stage kind the core does not ship) added by a
separate distribution through the ``intentcraft.targets`` entry point, run from a recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework.errors import RecipeError
from framework.pipeline.targets import DEFAULT_TARGET, Target, get_target, register_target, target_stages
from framework.stages import STAGES
from tests.conftest import TINY, load_recipe, make_distribution, run_cli

TOY_PACKAGE = '''
"""A toy target shipped by a separate distribution: generate, then count the rows per intent."""
from collections import Counter

from framework.io import atomic_write_json, read_jsonl
from framework.pipeline.facts import GenerateFacts
from framework.pipeline.runner import StageDef
from framework.pipeline.targets import Target, register_stage, register_target


def run_count(run):
    rows = read_jsonl(run.path("generate", run.facts("generate", GenerateFacts).rows_file))
    counts = Counter(row["intent"] for row in rows)
    atomic_write_json(run.work_dir / "counts.json", dict(sorted(counts.items())))
    return {"counted": len(rows)}


COUNT = register_stage(StageDef(name="count", upstream=("generate",), config_keys=("intents",), run=run_count))
register_target(Target("toy", ("generate", "count"), "counts the generated rows of each intent"))
'''


def test_the_classifier_is_the_default_target_with_every_stage() -> None:
    recipe = load_recipe(TINY)
    assert recipe.config.target == DEFAULT_TARGET == "classifier"
    assert target_stages("classifier") == STAGES
    assert get_target("classifier").stages == (
        "generate",
        "validate",
        "split",
        "train",
        "export",
        "calibrate",
        "evaluate",
        "bundle",
    )


def test_an_unknown_target_is_named_with_the_known_ones() -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe(TINY, "target=clasifier")
    [issue] = caught.value.issues
    assert issue.path == "target"
    assert "unknown target 'clasifier'. Did you mean 'classifier'?" in issue.message


def test_a_section_the_target_reads_is_required() -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe(TINY, "~export")
    assert [issue.path for issue in caught.value.issues] == ["export"]
    assert "the classifier target's stages need this section" in caught.value.issues[0].message


def test_a_target_must_list_each_stage_after_its_upstream() -> None:
    with pytest.raises(ValueError, match="stage 'train' needs \\['split'\\] earlier"):
        register_target(Target("backwards", ("generate", "train")))
    with pytest.raises(ValueError, match="names stage kind 'nope', which is not registered"):
        register_target(Target("ghost", ("nope",)))


def test_a_toy_target_from_an_entry_point_runs_from_a_recipe(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_distribution(site, "toy-targets", "toy_targets", TOY_PACKAGE, "intentcraft.targets", "toy")
    env = {"PYTHONPATH": str(site)}
    (tmp_path / "tiny.yaml").write_text(TINY.read_text())
    recipe = tmp_path / "toy.yaml"
    recipe.write_text("defaults: [tiny, _self_]\ntarget: toy\n")
    bare = tmp_path / "bare_toy.yaml"  # without the sections only the classifier's stages read
    sections = ", ".join(f"override /{group}: null" for group in ("split", "trainer", "export", "calibrate"))
    bare.write_text(f"defaults: [tiny, {sections}, _self_]\ntarget: toy\n")
    for path in (recipe, bare):
        checked = run_cli("validate", f"recipe={path}", cwd=tmp_path, env=env)
        assert checked.returncode == 0, checked.stderr
        assert "OK" in checked.stdout
    listed = run_cli("plugins", cwd=tmp_path, env=env)
    assert "target toy: generate -> count — counts the generated rows of each intent" in listed.stdout
    assert "target classifier: generate -> validate -> split" in " ".join(listed.stdout.split())

    status = run_cli("status", f"recipe={recipe}", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    table = [line for line in status.stdout.splitlines() if "MISSING" in line]
    assert [line.split()[1] for line in table] == ["generate", "count"]

    refused = run_cli("run", "--until", "train", f"recipe={bare}", cwd=tmp_path, env=env)
    assert refused.returncode == 2
    assert "--until train: the toy target has no such stage. Its stages: generate, count." in refused.stderr

    first = run_cli("run", "--until", "generate", f"recipe={recipe}", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "generate: ran" in first.stdout and "count:" not in first.stdout

    done = run_cli("run", f"recipe={recipe}", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "generate: cached" in done.stdout and "count: ran" in done.stdout
    [counts] = (tmp_path / "outputs" / "cache" / "count").glob("*/counts.json")
    assert json.loads(counts.read_text()) == {"Ambiguous": 40, "FindCallers": 40, "SymbolQuery": 40}
    current = run_cli("status", f"recipe={recipe}", cwd=tmp_path, env=env)
    assert [line.split()[1] for line in current.stdout.splitlines() if "CURRENT" in line] == ["generate", "count"]
