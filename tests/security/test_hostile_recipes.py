"""Hostile recipes and overrides through the real ``intentcraft run``: Hydra's hooks, the environment, paths
and credentials.

Each case writes a recipe (the tiny recipe plus the hostile part, and any file a recipe author could ship beside
it) and runs it. Each must be refused before any work: exit 2, one error paragraph naming the key, no traceback,
nothing executed (the victim file is untouched, nothing created), nothing written anywhere (not even
``outputs/``), within the time and memory limits of ``tests/security/hostile.py``.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.security.hostile import assert_refused, run_limited, snapshot

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "recipes"
VICTIM_TEXT = "precious\n"


@dataclass(frozen=True)
class Case:
    """A hostile recipe: YAML added to the tiny recipe, overrides, files beside it, and the key the error names."""

    name: str
    needle: str
    extra: str = ""
    overrides: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    defaults: tuple[str, ...] = ()
    llm: bool = False
    multirun: bool = False
    replace: tuple[tuple[str, str], ...] = ()
    names_file: bool = True


def _hydra(body: str) -> str:
    return "hydra:\n" + textwrap.indent(textwrap.dedent(body).strip(), "  ") + "\n"


LLM_MODEL = "generate.generators.llm.models.0"
LLM_MODEL_PATH = "generate.generators.llm.models[0]"  # how a pydantic error names it
CASES = [
    # Hydra's hooks: callbacks, logging, environment, directories, launchers
    Case(
        "callback_open",
        "hydra.callbacks.evil",
        _hydra("""
        callbacks:
          evil: {_target_: builtins.open, file: VICTIM, mode: w}"""),
    ),
    Case(
        "callback_file_handler",
        "hydra.callbacks.log",
        _hydra("""
        callbacks:
          log: {_target_: logging.FileHandler, filename: ELSEWHERE/created.log}"""),
    ),
    Case(
        "job_log_file",
        "hydra.job_logging.handlers.file.filename",
        _hydra("""
        job_logging:
          handlers:
            file: {filename: ELSEWHERE/job.log}"""),
    ),
    Case(
        "job_log_new_handler",
        "hydra.job_logging.handlers.evil",
        _hydra("""
        job_logging:
          handlers:
            evil: {class: logging.FileHandler, filename: ELSEWHERE/h.log}"""),
    ),
    Case(
        "hydra_log_handler",
        "hydra.hydra_logging.handlers.console.stream",
        _hydra("""
        hydra_logging:
          handlers:
            console: {stream: ext://sys.stderr}"""),
    ),
    Case("run_dir", "hydra.run.dir", _hydra("run: {dir: ELSEWHERE/run}")),
    Case("sweep_dir", "hydra.sweep.dir", _hydra("sweep: {dir: ELSEWHERE/sweep}")),
    Case("sweep_subdir", "hydra.sweep.subdir", _hydra("sweep: {subdir: ../../../escaped}")),
    Case("env_set", "hydra.job.env_set.LD_PRELOAD", _hydra("job: {env_set: {LD_PRELOAD: ELSEWHERE/x.so}}")),
    Case("env_copy", "hydra.job.env_copy", _hydra("job: {env_copy: [AWS_SECRET_ACCESS_KEY]}")),
    Case("chdir", "hydra.job.chdir", _hydra("job: {chdir: true}")),
    Case("output_subdir", "hydra.output_subdir", _hydra("output_subdir: ../../ELSEWHERE")),
    Case("verbose", "hydra.verbose", _hydra("verbose: true")),
    Case("mode", "hydra.mode", _hydra("mode: MULTIRUN")),
    Case("help_template", "hydra.help.template", _hydra("help: {template: hi}")),
    Case("launcher_target", "hydra.launcher._target_", _hydra("launcher: {_target_: os.system}")),
    Case(
        "launcher_shadowed_beside_recipe",
        "hydra.launcher._target_",
        files={"hydra/launcher/basic.yaml": "_target_: os.system\n"},
        defaults=("override hydra/launcher: basic",),
    ),
    Case(
        "launcher_own_option",
        "hydra/launcher",
        files={"hydra/launcher/evil.yaml": "_target_: os.system\n"},
        defaults=("override hydra/launcher: evil",),
    ),
    Case(
        "callbacks_option_beside_recipe",
        "hydra.callbacks.evil",
        files={"hydra/callbacks/evil.yaml": "evil: {_target_: builtins.open, file: VICTIM, mode: w}\n"},
        defaults=("override hydra/callbacks: evil",),
    ),
    Case(
        "sweeper_params_hydra",
        "hydra.sweeper.params.hydra.run.dir",
        _hydra("""
        sweeper:
          params: {hydra.run.dir: ELSEWHERE/a}"""),
    ),
    Case(
        "sweeper_params_paths",
        "hydra.sweeper.params.paths.outputs",
        _hydra("""
        sweeper:
          params: {paths.outputs: ELSEWHERE}"""),
    ),
    Case(
        "sweeper_params_oc_env",
        "hydra.sweeper.params.description",
        _hydra("""
        sweeper:
          params: {description: '${oc.env:HOME}'}"""),
    ),
    Case("sweeper_target", "hydra.sweeper._target_", _hydra("sweeper: {_target_: os.system}")),
    # Hydra applies a pre-filled hydra.overrides list to every job of a sweep
    Case(
        "overrides_list_in_recipe",
        "hydra.overrides.hydra",
        _hydra("""
            overrides:
              hydra: ["hydra/job_logging=evil", "+hydra.job.env_set.PYTHONPATH=ELSEWHERE"]"""),
        files={"hydra/job_logging/evil.yaml": "version: 1\nformatters: {pwn: {'()': builtins.open, file: VICTIM}}\n"},
        multirun=True,
    ),
    Case(
        "task_overrides_in_recipe",
        "hydra.overrides.task",
        _hydra("overrides: {task: ['paths.outputs=ELSEWHERE']}"),
        multirun=True,
    ),
    Case("runtime_in_recipe", "hydra.runtime.extra", _hydra("runtime: {extra: 1}")),
    Case(
        "sweep_param_package",
        "hydra.sweeper.params.+generate@hydra.job_logging",
        _hydra("sweeper: {params: {'+generate@hydra.job_logging': template}}"),
        multirun=True,
    ),
    Case(
        "sweep_too_large_to_check",
        "this sweep makes 1990 jobs",
        overrides=("generate.samples_per_intent=range(10,2000)",),
        multirun=True,
        names_file=False,
    ),
    # the same through overrides
    Case("override_env_set", "hydra.job.env_set.PYTHONPATH", overrides=("+hydra.job.env_set.PYTHONPATH=ELSEWHERE",)),
    Case("override_run_dir", "hydra.run.dir", overrides=("hydra.run.dir=ELSEWHERE/run",)),
    Case(
        "override_log_file",
        "hydra.job_logging.handlers.file.filename",
        overrides=("hydra.job_logging.handlers.file.filename=ELSEWHERE/x.log",),
    ),
    Case("override_callback", "hydra.callbacks.x", overrides=("+hydra.callbacks.x._target_=os.system",)),
    Case("override_logging_choice", "hydra/job_logging", overrides=("hydra/job_logging=disabled",)),
    Case("override_searchpath_pkg", "hydra.searchpath", overrides=("hydra.searchpath=[pkg://this]",)),
    Case(
        "override_package_under_hydra",
        "an override cannot place a config under hydra",
        overrides=("+generate@hydra.job_logging=template",),
    ),
    # resolvers: the environment is never read by a recipe
    Case("oc_env_description", "description: reads an environment variable", 'description: "${oc.env:HOME}"\n'),
    Case(
        "oc_env_with_default",
        "description: reads an environment variable",
        'description: "${oc.env:AWS_SECRET_ACCESS_KEY,none}"\n',
    ),
    Case(
        "oc_env_nested",
        "description: reads an environment variable",
        'description: "${oc.decode:${oc.env:AWS_SECRET_ACCESS_KEY}}"\n',
    ),
    Case("hydra_resolver", "description: calls the resolver hydra", 'description: "${hydra:runtime.cwd}"\n'),
    Case("oc_create", "description: calls the resolver oc.create", 'description: "${oc.create:{a: 1}}"\n'),
    Case("override_oc_env", "description: reads an environment variable", overrides=("description=${oc.env:HOME}",)),
    Case(
        "oc_env_in_slot_values",
        "slots.symbol[0]: reads an environment variable",
        overrides=("slots.symbol=[${oc.env:HOME}]",),
    ),
    # where files go is the user's choice
    Case("outputs_in_recipe", "paths.outputs: a recipe cannot choose", "paths: {outputs: ELSEWHERE}\n"),
    Case(
        "outputs_option_beside_recipe",
        "paths.outputs: a recipe cannot choose",
        files={"paths/evil.yaml": "outputs: ELSEWHERE\n"},
        defaults=("override paths: evil",),
    ),
    # secrets
    Case(
        "key_env_aws",
        f"{LLM_MODEL_PATH}.api_key_env: a recipe may read API keys only",
        overrides=(f"{LLM_MODEL}.api_key_env=AWS_SECRET_ACCESS_KEY",),
        llm=True,
    ),
    Case(
        "key_env_github",
        f"{LLM_MODEL_PATH}.api_key_env: a recipe may read",
        overrides=(f"{LLM_MODEL}.api_key_env=GITHUB_TOKEN",),
        llm=True,
    ),
    Case(
        "password_in_api_base",
        "models[0].api_base: holds a password",
        overrides=(f"{LLM_MODEL}.api_base='http://u:p4ssw0rd@127.0.0.1:9/v1'",),
        llm=True,
    ),
    Case(
        "key_in_api_base_query",
        "models[0].api_base: holds a credential in its query string",
        overrides=(f"{LLM_MODEL}.api_base='http://127.0.0.1:9/v1?key=abc123'",),
        llm=True,
    ),
    Case(
        "remote_api_base_in_recipe",
        "models.0.api_base: a recipe may point a model only at a loopback server",
        replace=(("http://127.0.0.1:9/v1", "https://collector.example.com/v1"),),
        llm=True,
    ),
    Case("literal_api_key", "api_key", overrides=(f"+{LLM_MODEL}.api_key=sk-literal-0123456789abcdef",), llm=True),
    Case(
        "token_in_source_url",
        "sources.train.path: holds a credential",
        "sources:\n  train: {plugin: csv, path: 'https://host/data.csv?token=abc123'}\n",
    ),
    Case(
        "password_in_model_uri",
        "trainer.model: holds a password",
        overrides=("trainer.model='https://u:pw@host/model'",),
    ),
    # two intent packs that define the same intent would be merged without a word
    Case(
        "same_intent_in_two_packs",
        "intents.Extra: defined in more than one intent pack (intents/a, intents/b)",
        files={
            name: f"# @package _global_\nintents:\n  Extra:\n    templates: ['{name} {{{{ symbol }}}}']\n"
            for name in ("intents/a.yaml", "intents/b.yaml")
        },
        defaults=("intents: [a, b]",),
    ),
    # code by name
    Case("target_in_intent", "_target_", overrides=("+intents.FindCallers._target_=os.system",)),
    Case(
        "target_in_generator",
        "_target_",
        overrides=("+generate.generators.templates._target_=os.system",),
    ),
]


def _write_recipe(work: Path, case: Case, elsewhere: Path, victim: Path) -> Path:
    """The tiny recipe (or the tiny LLM one) with the case's YAML, defaults and files, in ``work``."""
    base = (ASSETS / ("tiny_llm.yaml" if case.llm else "tiny.yaml")).read_text()
    (work / "tiny.yaml").write_text((ASSETS / "tiny.yaml").read_text())
    if case.defaults:
        base = base.replace("  - _self_", "".join(f"  - {d}\n" for d in case.defaults) + "  - _self_", 1)
    for old, new in case.replace:
        base = base.replace(old, new)
    text = base + "\n" + case.extra
    for relative, content in case.files.items():
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        (work / relative).write_text(content.replace("VICTIM", str(victim)))
    recipe = work / "hostile.yaml"
    recipe.write_text(text.replace("ELSEWHERE", str(elsewhere)).replace("VICTIM", str(victim)))
    return recipe


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_recipe_is_refused_before_any_work(tmp_path: Path, case: Case) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    victim = elsewhere / "victim.txt"
    victim.write_text(VICTIM_TEXT)
    recipe = _write_recipe(work, case, elsewhere, victim)
    overrides = [o.replace("ELSEWHERE", str(elsewhere)) for o in case.overrides]
    before = snapshot(tmp_path)
    outcome = run_limited("run", *(["-m"] if case.multirun else []), f"recipe={recipe}", *overrides, cwd=work)
    assert_refused(outcome, case.needle, *(["hostile.yaml"] if case.names_file else []))
    assert "Beautiful is better than ugly" not in outcome.stdout + outcome.stderr, "no module was imported"
    assert snapshot(tmp_path) == before, "nothing is written anywhere, outputs/ included"
    assert victim.read_text() == VICTIM_TEXT


def test_an_allowed_sweep_in_the_recipe_runs_every_job_and_validates_them_first(tmp_path: Path) -> None:
    """hydra.sweeper.params over recipe keys is allowed; each job is validated before any runs."""
    recipe = tmp_path / "swept.yaml"
    (tmp_path / "tiny.yaml").write_text((ASSETS / "tiny.yaml").read_text())
    sweep = _hydra("""
        job: {chdir: false}
        sweeper:
          params: {generate.samples_per_intent: '12,0'}""")
    recipe.write_text("defaults:\n  - tiny\n  - _self_\n" + sweep)
    bad = run_limited("run", "-m", "--until", "generate", f"recipe={recipe}", cwd=tmp_path)
    assert_refused(bad, "generate.samples_per_intent=0", "no job was started")
    assert not (tmp_path / "outputs").exists()
    recipe.write_text(recipe.read_text().replace("'12,0'", "'12,14'"))
    good = run_limited("run", "-m", "--until", "generate", f"recipe={recipe}", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert good.stdout.count("generate: ran") == 2
