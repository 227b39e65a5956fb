"""The ``intentcraft`` command: verbs in front of Hydra.

``run`` hands the recipe to ``hydra.main`` (so ``-m`` sweeps and every Hydra override work) after
composing and validating every job of the sweep first. Exit codes: 0 ok, 1 a gate failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from framework import __version__
from framework.cli.predict import (
    add_predict_parser,
    add_verify_parser,
    cmd_predict,
    cmd_verify,
    positive_int,
)
from framework.config.check import ValidatedRecipe, check_recipe
from framework.config.compose import (
    RecipeRef,
    available_recipes,
    compose_recipe,
    compose_with_hydra,
    resolve_recipe,
)
from framework.config.recipe_policy import override_key
from framework.errors import IntentcraftError, RecipeError, UserInputError, user_message
from framework.paths import check_outputs_dir
from framework.pipeline.targets import check_until, target_stages
from framework.redact import scrub

OUT = Console()
ERR = Console(stderr=True)
MAX_PREFLIGHT_JOBS = 1000

EPILOG = """examples:
  intentcraft run                                   # the default recipe (code_search)
  intentcraft run recipe=support_desk generate.samples_per_intent=200
  intentcraft run -m recipe=code_search split.group_by=none,template
  intentcraft run recipe=code_search +debug=default # a tiny, fast run
  intentcraft validate recipe=my_recipe.yaml --show
  intentcraft status recipe=code_search
exit codes: 0 ok, 1 a gate failed, 2 bad input"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(
        prog="intentcraft",
        description="Build calibrated intent routers from one YAML recipe.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"intentcraft {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    overrides_help = "recipe=NAME|PATH (default: code_search) and Hydra overrides key=value"
    run = verbs.add_parser(
        "run",
        help="run every stage of a recipe that is not already current",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("-m", "--multirun", action="store_true", help="sweep: comma-separated values make one job each")
    run.add_argument("--force", action="store_true", help="recompute every stage even if it is current")
    run.add_argument(
        "--until", metavar="STAGE", help="stop after this stage of the recipe's target (intentcraft status lists them)"
    )
    run.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="request at most N records per LLM generator in this run (a partial run; run again to resume)",
    )
    run.add_argument("overrides", nargs="*", help=overrides_help)
    validate = verbs.add_parser("validate", help="compose and check a recipe without doing any work")
    validate.add_argument("--show", action="store_true", help="print the composed recipe as YAML")
    validate.add_argument("overrides", nargs="*", help=overrides_help)
    status = verbs.add_parser("status", help="show each stage as CURRENT / STALE (and why) / MISSING / PARTIAL")
    status.add_argument("overrides", nargs="*", help=overrides_help)
    plugins = verbs.add_parser("plugins", help="list every registered plugin by kind with its params, and the targets")
    plugins.add_argument("--kind", help="only this plugin kind (e.g. trainers; every kind is listed without it)")
    verbs.add_parser("recipes", help="list the recipes that recipe=NAME can name")
    add_predict_parser(verbs)
    add_verify_parser(verbs)
    return parser


def load(ref: RecipeRef, overrides: list[str] | None = None) -> ValidatedRecipe:
    """Compose and validate one recipe (one job of a sweep)."""
    return check_recipe(compose_recipe(ref, overrides), str(ref.path))


def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Expand Hydra sweep syntax (``a=1,2 b=x,y``) into the override list of every job."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise UserInputError(
            f"bad override: {exc}. Overrides look like key=value, +key=value or key=a,b with -m."
        ) from None
    axes = []
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            assert override.input_line is not None  # parse_overrides sets it on every override
            axes.append([override.input_line])
    return [list(job) for job in itertools.product(*axes)]


def recipe_sweep(ref: RecipeRef, first_job: list[str]) -> list[str]:
    """The recipe's own ``hydra.sweeper.params`` as overrides, less the keys the command line sets."""
    params = compose_with_hydra(ref, first_job)[1]["sweeper"].get("params") or {}
    given = {override_key(o) for o in ref.overrides}
    return [f"{key}={value}" for key, value in params.items() if override_key(str(key)) not in given]


def preflight(ref: RecipeRef, multirun: bool) -> ValidatedRecipe:
    """Validate every job (the recipe's own sweep included) before any work; returns the first job's recipe."""
    jobs = sweep_jobs(list(ref.overrides)) if multirun else [list(ref.overrides)]
    if multirun and (swept := recipe_sweep(ref, jobs[0])):
        jobs = sweep_jobs([*swept, *ref.overrides])
    if len(jobs) > MAX_PREFLIGHT_JOBS:
        raise UserInputError(
            f"this sweep makes {len(jobs)} jobs; intentcraft checks every job before any runs, and at most "
            f"{MAX_PREFLIGHT_JOBS}. Split it into smaller sweeps (fewer values per key)."
        )
    first: ValidatedRecipe | None = None
    for job in jobs:
        try:
            recipe = load(ref, job)
        except RecipeError as exc:
            if multirun:
                exc.hint = f"The sweep job with overrides {' '.join(job) or '(none)'} is invalid; no job was started."
            raise
        first = first or recipe
    assert first is not None
    return first


def cmd_run(args: argparse.Namespace) -> int:
    """``intentcraft run``."""
    from framework.cli.launch import RunOptions, launch

    ref = resolve_recipe(args.overrides)
    recipe = preflight(ref, args.multirun)
    check_until(recipe.config.target, args.until)
    check_outputs_dir(recipe.config.paths.outputs)
    _describe_derived(recipe)
    if recipe.config.notice:
        OUT.print(f"[yellow]note:[/] {escape(recipe.config.notice)}")
    options = RunOptions(args.force, args.until, args.limit)
    return launch(ref, multirun=args.multirun, options=options, console=OUT)


def cmd_validate(args: argparse.Namespace) -> int:
    """``intentcraft validate``."""
    ref = resolve_recipe(args.overrides)
    recipe = load(ref)
    if args.show:
        import yaml

        OUT.print(yaml.safe_dump(recipe.raw, sort_keys=False, allow_unicode=True), markup=False, highlight=False)
    _describe_derived(recipe)
    config = recipe.config
    plugins = ", ".join(
        sorted({b.spec.id for b in (*recipe.generators.values(), *recipe.layers.values(), *recipe.single.values())})
    )
    parts = [f"{config.generate.samples_per_intent} rows each asked"] if recipe.generators else []
    if recipe.sources:
        parts.append(f"rows from {len(recipe.sources)} source{'s' if len(recipe.sources) > 1 else ''}")
    rows = ", ".join(parts) or "no rows"
    OUT.print(
        f"[green]OK[/] {ref.path}: recipe '{config.name}', {len(config.intents)} intents ({rows}), "
        f"fallback intent: {config.fallback_intent or 'none'}; plugins: {plugins}"
    )
    return 0


def _describe_derived(recipe: ValidatedRecipe) -> None:
    """Print where ``intents_from`` took the intents from and every label it renamed."""
    if recipe.derived is not None:
        for line in recipe.derived.describe():
            OUT.print(line, markup=False, highlight=False, soft_wrap=True)


def cmd_status(args: argparse.Namespace) -> int:
    """``intentcraft status``."""
    from framework.cli.summary import status_table
    from framework.pipeline.runner import Pipeline

    ref = resolve_recipe(args.overrides)
    recipe = load(ref)
    pipeline = Pipeline(target_stages(recipe.config.target), recipe, Path(recipe.config.paths.outputs))
    OUT.print(f"recipe {recipe.name} ({ref.path}); cache: {pipeline.cache}")
    OUT.print(status_table(pipeline.plan()))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """``intentcraft plugins``."""
    from framework.cli.summary import plugins_tables
    from framework.registry import LOAD_ERRORS, load_plugins

    load_plugins()
    tables, empty = plugins_tables(args.kind)
    for table in tables:
        OUT.print(table)
    if empty:
        OUT.print(f"no plugins registered yet for: {', '.join(empty)}")
    for kind, errors in LOAD_ERRORS.items():
        for error in errors:
            ERR.print(f"[red]could not load a {kind} plugin:[/] {error}")
    if args.kind is None:
        _print_targets()
    return 0


def _print_targets() -> None:
    """Every registered target (``target:`` in a recipe) with its stages, and targets that failed to load."""
    from framework.pipeline import targets

    for name in targets.target_names():
        target = targets.get_target(name)
        about = f" — {target.description}" if target.description else ""
        OUT.print(f"target {name}: {' -> '.join(target.stages)}{about}", markup=False, highlight=False)
    for error in targets.LOAD_ERRORS:
        ERR.print(f"[red]could not load a target:[/] {escape(error)}")


def cmd_recipes(_: argparse.Namespace) -> int:
    """``intentcraft recipes``."""
    for name in available_recipes():
        OUT.print(name)
    return 0


COMMANDS: dict[str, Any] = {
    "run": cmd_run,
    "validate": cmd_validate,
    "status": cmd_status,
    "plugins": cmd_plugins,
    "recipes": cmd_recipes,
    "predict": cmd_predict,
    "verify": cmd_verify,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``intentcraft`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if extra and hasattr(args, "overrides") and not any(item.startswith("-") for item in extra):
        args.overrides += extra  # overrides after an option: `run --until split trainer.lr=1e-4`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.verb](args)
    except IntentcraftError as exc:
        ERR.print("[bold red]error:[/] " + escape(scrub(user_message(exc))), highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        ERR.print("interrupted: finished stages are kept; run the same command again to go on.")
        return 130
