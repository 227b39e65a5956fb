"""Run a validated recipe through ``hydra.main`` so run directories, logs and sweeps are Hydra's."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from framework.config.check import ValidatedRecipe, check_recipe
from framework.config.compose import RecipeRef
from framework.errors import IntentcraftError
from framework.io import atomic_write_json, atomic_write_text
from framework.pipeline import Pipeline, StagePlan
from framework.plugin_api import ReportContext
from framework.progress import STDERR
from framework.redact import redact, scrub, secret_values
from framework.stages import STAGES
from framework.summary import print_run_summary

# Hydra writes its own unredacted copies of the config and overrides under .hydra/; intentcraft writes redacted ones.
HYDRA_FORCED = ("hydra.output_subdir=null",)


@dataclass(frozen=True)
class RunOptions:
    """What the user asked of ``intentcraft run`` beyond the recipe."""

    force: bool = False
    until: str | None = None
    limit: int | None = None


def _record(
    run_dir: Path, recipe: ValidatedRecipe, container: dict[str, Any], plans: list[StagePlan], actions: dict
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.yaml", _yaml(redact(container)))
    stages = {
        p.stage.name: {"fingerprint": p.fingerprint, "dir": str(p.directory), "action": actions[p.stage.name]}
        for p in plans
    }
    atomic_write_json(run_dir / "run.json", {"recipe": recipe.name, "recipe_file": recipe.source, "stages": stages})


def _yaml(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)


def _record_config(run_dir: Path, container: dict[str, Any], overrides: list[str]) -> None:
    """``.hydra/config.yaml`` and ``overrides.yaml``, secrets redacted (Hydra's own copies are turned off)."""
    atomic_write_text(run_dir / ".hydra" / "config.yaml", _yaml(redact(container)))
    atomic_write_text(run_dir / ".hydra" / "overrides.yaml", _yaml(redact(overrides)))


def _scrub_file(path: Path) -> None:
    """Redact a file Hydra wrote itself (the sweeper's ``multirun.yaml`` holds the overrides verbatim)."""
    if path.is_file() and not path.is_symlink():
        text = path.read_text(encoding="utf-8")
        if (cleaned := scrub(text)) != text:
            atomic_write_text(path, cleaned)


def scrub_log_records(secrets: list[str] | None = None) -> None:
    """Redact secrets from every log record from now on, whichever logger or handler it goes to (Hydra
    reconfigures handlers per job and logs each sweep job's overrides before any of them starts)."""
    base = logging.getLogRecordFactory()
    if getattr(base, "scrubs_secrets", False):
        return
    secrets = secret_values() if secrets is None else secrets

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a record whose arguments do not fit its format: left as it is
            return record
        cleaned = scrub(message, secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    factory.scrubs_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _report(pipeline: Pipeline, plans: list[StagePlan], run_dir: Path) -> Path | None:
    """Write the run's report with the recipe's reporter (every run, cached stages included)."""
    bound = pipeline.recipe.bound("report")
    context = ReportContext(
        recipe_name=pipeline.recipe.name,
        recipe_file=pipeline.recipe.source,
        run_dir=run_dir,
        manifests={plan.stage.name: pipeline.manifest(plan) for plan in plans},
        stage_dirs={plan.stage.name: plan.directory for plan in plans},
    )
    return bound.spec.func(bound.params, context)


def _link_bundle(plans: list[StagePlan], run_dir: Path) -> Path | None:
    bundle = next((p.directory / "bundle" for p in plans if p.stage.name == "bundle"), None)
    if bundle is None:
        return None
    link = run_dir / "bundle"
    if not link.exists():
        link.symlink_to(bundle.resolve(), target_is_directory=True)
    return bundle


def run_recipe(
    container: dict[str, Any], source: str, run_dir: Path, options: RunOptions, console: Console
) -> list[StagePlan]:
    """Validate, run the stages that are not current, record the run, write the report, print the summary."""
    recipe = check_recipe(container, source)
    pipeline = Pipeline(STAGES, recipe, Path(recipe.config.paths.outputs))
    actions: dict[str, str] = {}

    def on_stage(plan: StagePlan, action: str) -> None:
        actions[plan.stage.name] = action
        verb = {"ran": "[green]ran[/]", "cached": "[dim]cached[/]", "stopped": "[yellow]PARTIAL[/]"}[action]
        console.print(f"{plan.stage.name}: {verb} ({plan.fingerprint[:12]})")

    plans = pipeline.run(on_stage, force=options.force, until=options.until, limit=options.limit)
    _record(run_dir, recipe, container, plans, actions)
    if plans and actions.get(plans[-1].stage.name) == "stopped":
        console.print(f"[yellow]stopped early:[/] {escape(plans[-1].reason)}")
        console.print(f"run record: {run_dir}")
        return plans
    report = _report(pipeline, plans, run_dir)
    bundle = _link_bundle(plans, run_dir)
    print_run_summary(console, pipeline, plans, actions)
    if report is not None:
        console.print(f"report: {report}")
    if bundle is not None:
        console.print(f"[bold green]bundle:[/] {bundle}  (also linked from {run_dir / 'bundle'})")
        console.print(f'try it: intentcraft predict {bundle} "your query"')
    console.print(f"run record: {run_dir}")
    return plans


def launch(ref: RecipeRef, multirun: bool, options: RunOptions, console: Console) -> int:
    """Hand the recipe to Hydra; returns the process exit code (the worst job's)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig, OmegaConf

    failures: list[int] = []

    def task(cfg: DictConfig) -> None:
        container = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(container, dict)
        hydra_cfg = HydraConfig.get()
        _record_config(Path(hydra_cfg.runtime.output_dir), container, list(hydra_cfg.overrides.task))
        if hydra_cfg.mode == RunMode.MULTIRUN:
            _scrub_file(Path(hydra_cfg.sweep.dir) / "multirun.yaml")
        try:
            run_recipe(container, str(ref.path), Path(hydra_cfg.runtime.output_dir), options, console)
        except IntentcraftError as exc:
            STDERR.print("[bold red]error:[/] " + escape(scrub(str(exc))), highlight=False, soft_wrap=True)
            if hydra_cfg.mode != RunMode.MULTIRUN:
                raise SystemExit(exc.exit_code) from None
            failures.append(exc.exit_code)

    scrub_log_records()
    argv = ["intentcraft", *(["-m"] if multirun else []), *ref.overrides, ref.search_path_override(), *HYDRA_FORCED]
    saved, sys.argv = sys.argv, argv
    try:
        hydra.main(version_base="1.3", config_path=str(ref.path.parent), config_name=ref.name)(task)()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = saved
    return max(failures, default=0)
