"""The real ``intentcraft`` CLI in a subprocess: runs, caching, sweeps, status, errors and plugins."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from framework.io import read_jsonl
from tests.conftest import ASSETS, TINY, make_distribution, run_cli

DATA = ("--until", "split")  # these tests are about the data stages and the CLI, not training


def test_run_prints_summary_then_rerun_does_nothing(tmp_path: Path) -> None:
    first = run_cli("run", *DATA, f"recipe={TINY}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for expected in (
        "generate: ran",
        "validate: ran",
        "split: ran",
        "Rows per intent and split",
        "FindCallers",
        "Rejected rows per layer and reason",
        "run record:",
    ):
        assert expected in first.stdout
    second = run_cli("run", *DATA, f"recipe={TINY}", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "Nothing to do: all 3 stages of tiny are current" in second.stdout
    assert "ran" not in second.stdout.split("Stages")[0]
    run_dirs = sorted((tmp_path / "outputs" / "runs" / "tiny").iterdir())
    assert len(run_dirs) == 2
    record = json.loads((run_dirs[0] / "run.json").read_text())
    assert set(record["stages"]) == {"generate", "validate", "split"}
    assert (run_dirs[0] / ".hydra" / "config.yaml").is_file()


def test_override_changes_output_and_status_explains(tmp_path: Path) -> None:
    assert run_cli("run", *DATA, f"recipe={TINY}", cwd=tmp_path).returncode == 0
    status = run_cli("status", f"recipe={TINY}", "generate.samples_per_intent=25", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "STALE" in status.stdout and "generate.samples_per_intent changed" in status.stdout
    done = run_cli("run", *DATA, f"recipe={TINY}", "generate.samples_per_intent=25", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "generate: ran" in done.stdout
    assert "CURRENT" in run_cli("status", f"recipe={TINY}", "generate.samples_per_intent=25", cwd=tmp_path).stdout


def test_multirun_sweeps_and_shares_upstream_stages(tmp_path: Path) -> None:
    done = run_cli("run", *DATA, "-m", f"recipe={TINY}", "split.group_by=none,template", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("generate: ran") == 1, "the second job reuses generate"
    assert done.stdout.count("generate: cached") == 1
    assert done.stdout.count("split: ran") == 2
    jobs = list((tmp_path / "outputs" / "multirun" / "tiny").glob("*/[0-9]"))
    assert len(jobs) == 2


def test_bad_recipe_exits_2_with_one_clear_block_and_no_traceback(tmp_path: Path) -> None:
    done = run_cli("run", f"recipe={ASSETS / 'recipes' / 'bad_typo_key.yaml'}", cwd=tmp_path)
    assert done.returncode == 2
    assert "generate.samples_per_intnet: unknown key; did you mean 'samples_per_intent'?" in done.stderr
    assert "bad_typo_key.yaml" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "outputs").exists(), "nothing runs before the recipe is valid"


def test_bad_sweep_job_is_caught_before_any_job_runs(tmp_path: Path) -> None:
    done = run_cli("run", *DATA, "-m", f"recipe={TINY}", "generate.samples_per_intent=10,0", cwd=tmp_path)
    assert done.returncode == 2
    assert "generate.samples_per_intent=0" in done.stderr and "no job was started" in done.stderr
    assert not (tmp_path / "outputs").exists()


def test_unknown_recipe_suggests_a_name(tmp_path: Path) -> None:
    done = run_cli("validate", "recipe=code_serch", cwd=tmp_path)
    assert done.returncode == 2
    assert "Did you mean recipe=code_search?" in done.stderr


def test_validate_ok_and_show(tmp_path: Path) -> None:
    done = run_cli("validate", f"recipe={TINY}", "--show", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout and "fallback intent: Ambiguous" in done.stdout
    assert "samples_per_intent: 40" in done.stdout


def test_gate_failure_exits_1_and_keeps_earlier_stages(tmp_path: Path) -> None:
    done = run_cli(
        "run",
        f"recipe={TINY}",
        "validate.max_rejected_fraction=0.0",
        "validate.layers.quality.min_words=4",
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "more than validate.max_rejected_fraction=0.0" in done.stderr
    assert "kept in" in done.stderr
    status = run_cli(
        "status",
        f"recipe={TINY}",
        "validate.max_rejected_fraction=0.0",
        "validate.layers.quality.min_words=4",
        cwd=tmp_path,
    )
    assert "CURRENT" in status.stdout.split("generate")[1].split("\n")[0]


def test_help_for_every_verb(tmp_path: Path) -> None:
    for verb in ("run", "validate", "status", "plugins", "recipes"):
        done = run_cli(verb, "--help", cwd=tmp_path)
        assert done.returncode == 0 and "usage: intentcraft" in done.stdout, verb


def test_plugins_lists_builtins_with_params(tmp_path: Path) -> None:
    done = run_cli("plugins", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in (
        "builtin.template.v1",
        "builtin.structural.v1",
        "builtin.quality.v1",
        "builtin.rules.v1",
        "builtin.stratified.v1",
        "eval_share: float = 0.2",  # template's params with their types and defaults
        "near_duplicates.threshold: float = 0.9",  # nested params, flattened
    ):
        assert name in done.stdout, name


THIRD_PARTY = '''
"""A third-party validator, shipped by a separate distribution."""
from framework.plugin_api import Rejection
from framework.registry import PluginParams, validators


class Params(PluginParams):
    words: list[str]


@validators.register("banned_words", params=Params)
def banned_words(rows, params, ctx):
    """Reject rows that contain any banned word."""
    for row in rows:
        hit = next((w for w in params.words if w in row["text"].split()), None)
        if hit:
            yield Rejection(row["id"], "banned", f"contains {hit!r}")
'''


def test_third_party_plugin_from_entry_point_runs_from_a_recipe(tmp_path: Path) -> None:
    site = tmp_path / "site"
    make_distribution(
        site, "acme-intent-plugins", "acme_plugins", THIRD_PARTY, "intentcraft.validators", "banned_words"
    )
    env = {"PYTHONPATH": str(site)}
    listed = run_cli("plugins", "--kind", "validators", cwd=tmp_path, env=env)
    assert "acme_intent_plugins.banned_words.v1" in listed.stdout
    assert "entry point (acme_intent_plugins)" in listed.stdout
    recipe = tmp_path / "with_plugin.yaml"
    recipe.write_text(
        textwrap.dedent("""\
        defaults: [tiny, _self_]
        validate:
          layers:
            banned:
              plugin: banned_words
              words: [callers]
        """)
    )
    (tmp_path / "tiny.yaml").write_text(TINY.read_text())
    done = run_cli("run", *DATA, f"recipe={recipe}", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    rejected = read_jsonl(next((tmp_path / "outputs" / "cache" / "validate").glob("*/rejected.jsonl")))
    banned = [r for r in rejected if r["rejection"]["layer"] == "banned"]
    assert banned and all("callers" in r["text"].split() for r in banned)
    assert all(r["rejection"]["rule"] == "banned" for r in banned)


def test_missing_source_file_is_one_clear_error(tmp_path: Path) -> None:
    done = run_cli("run", "recipe=banking77", "sources.train.path=missing.csv", "--until", "generate", cwd=tmp_path)
    assert done.returncode == 2
    assert "sources.train:" in done.stderr and "missing.csv does not exist" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_validate_says_where_rows_come_from(tmp_path: Path) -> None:
    """Generated rows are 'asked'; a recipe with sources only says so instead of quoting samples_per_intent."""
    data = tmp_path / "rows.csv"
    data.write_text("text,label\nwho calls main,FindCallers\nwhere is main,SymbolQuery\nhelp,Ambiguous\n")
    source = f"+sources.mine={{plugin: csv, path: {data}}}"
    both = run_cli("validate", f"recipe={TINY}", source, cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    assert "3 intents (40 rows each asked, rows from 1 source)" in " ".join(both.stdout.split())
    only = run_cli("validate", f"recipe={TINY}", source, "~generate.generators.templates", cwd=tmp_path)
    assert only.returncode == 0, only.stderr
    assert "3 intents (rows from 1 source)" in " ".join(only.stdout.split())
