"""Recipe targets: the classifier by default, and a toy target (a stage kind the core does not ship) added by a
separate distribution through the ``intentcraft.targets`` entry point, run from a recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework.errors import RecipeError
from framework.pipeline.targets import DEFAULT_TARGET, Target, get_target, register_target, target_stages
from tests.conftest import TINY, load_recipe, make_distribution, run_cli

TOY_PACKAGE = '''
"""A toy target shipped by a separate distribution: generate, then count the rows per intent with a plugin of
a plugin kind the core does not have (``counters``), named in the stage kind's own recipe section ``count``."""

from framework.config.schema import PluginSection
from framework.io import atomic_write_json, read_jsonl
from framework.pipeline.facts import GenerateFacts
from framework.pipeline.runner import RecipeSection, StageDef
from framework.pipeline.targets import Target, register_stage, register_target


class CountSection(PluginSection):
    top: int = 10


def run_count(run):
    rows = read_jsonl(run.path("generate", run.facts("generate", GenerateFacts).rows_file))
    bound = run.recipe.bound("count")
    counts = bound.spec.func(rows, bound.params)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    top = dict(ranked[: run.recipe.section("count", CountSection).top])
    atomic_write_json(run.work_dir / "counts.json", dict(sorted(top.items())))
    return {"counted": len(rows)}


COUNT = register_stage(
    StageDef(
        name="count",
        upstream=("generate",),
        config_keys=("intents",),
        run=run_count,
        sections=(RecipeSection("count", CountSection, "counters"),),
    )
)
register_target(Target("toy", ("generate", "count"), "counts the generated rows of each intent"))
'''
COUNTERS_MODULE = '''
"""The toy distribution's plugin of the kind ``counters``."""
from collections import Counter

from framework.registry import PluginParams, counters


class Params(PluginParams):
    field: str = "intent"


@counters.register("by_field", params=Params)
def by_field(rows, params):
    """Rows per value of one field."""
    return Counter(row[params.field] for row in rows)
'''


def test_the_classifier_is_the_default_target_with_every_stage() -> None:
    recipe = load_recipe(TINY)
    assert recipe.config.target == DEFAULT_TARGET == "classifier"
    assert [stage.name for stage in target_stages("classifier")] == list(get_target("classifier").stages)
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
    more = {"intentcraft.counters": "by_field = toy_targets.counters"}
    make_distribution(site, "toy-targets", "toy_targets", TOY_PACKAGE, "intentcraft.targets", "toy", more)
    (site / "toy_targets" / "counters.py").write_text(COUNTERS_MODULE)
    env = {"PYTHONPATH": str(site)}
    (tmp_path / "tiny.yaml").write_text(TINY.read_text())
    recipe = tmp_path / "toy.yaml"
    recipe.write_text("defaults: [tiny, _self_]\ntarget: toy\ncount: {plugin: by_field, top: 2}\n")
    bare = tmp_path / "bare_toy.yaml"  # without the sections only the classifier's stages read
    groups = ("split", "trainer", "export", "calibrate", "report")
    sections = ", ".join(f"override /{group}: null" for group in groups)
    bare.write_text(f"defaults: [tiny, {sections}, _self_]\ntarget: toy\ncount: {{plugin: by_field}}\n")
    for path in (recipe, bare, TINY):  # the classifier needs no count section, the entry point installed or not
        checked = run_cli("validate", f"recipe={path}", cwd=tmp_path, env=env)
        assert checked.returncode == 0, checked.stderr
        assert "OK" in checked.stdout

    # the stage kind's section is checked like a built-in one: required by its target, keys strict
    missing = run_cli("validate", f"recipe={recipe}", "~count", cwd=tmp_path, env=env)
    assert missing.returncode == 2
    assert "count: the toy target's stages need this section" in " ".join(missing.stderr.split())
    typo = run_cli("validate", f"recipe={recipe}", "+count.feild=text", "+count.tops=1", cwd=tmp_path, env=env)
    assert typo.returncode == 2
    flat = " ".join(typo.stderr.split())
    assert "has 2 problems" in flat and "count.feild" in flat and "count.tops" in flat, flat
    assert "'field'" in flat and "'top'" in flat, flat  # suggested from the plugin's params and the section model

    listed = run_cli("plugins", cwd=tmp_path, env=env)
    flat = " ".join(listed.stdout.split())
    assert "counters (1)" in flat and "toy_targets.by_field.v1" in flat and "field: str = 'intent'" in flat
    assert "target toy: generate -> count — counts the generated rows of each intent" in listed.stdout
    assert "target classifier: generate -> validate -> split" in flat

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
    assert json.loads(counts.read_text()) == {"Ambiguous": 40, "FindCallers": 40}  # top 2: ties by name
    current = run_cli("status", f"recipe={recipe}", cwd=tmp_path, env=env)
    assert [line.split()[1] for line in current.stdout.splitlines() if "CURRENT" in line] == ["generate", "count"]
    runs = tmp_path / "outputs" / "runs" / "tiny"
    assert len(list(runs.glob("*/report.md"))) == 2  # the recipe with a report section gets a report per run

    without_report = run_cli("run", f"recipe={bare}", cwd=tmp_path, env=env)  # no stage reads one, none asked
    assert without_report.returncode == 0, without_report.stdout + without_report.stderr
    assert "count: ran" in without_report.stdout and "report:" not in without_report.stdout
    assert len(list(runs.glob("*/report.md"))) == 2 and len(list(runs.glob("*/run.json"))) == 3
