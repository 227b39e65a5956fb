"""Run a validated recipe through ``hydra.main`` so run directories, logs and sweeps are Hydra's."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.markup import escape

from framework.cli.summary import print_run_summary
from framework.config.check import ValidatedRecipe, check_recipe
from framework.config.compose import RecipeRef
from framework.errors import IntentcraftError, user_message
from framework.io import atomic_write_json, atomic_write_text
from framework.pipeline.progress import LOG, STDERR, format_seconds, say
from framework.pipeline.runner import Pipeline, StagePlan
from framework.pipeline.targets import target_stages
from framework.plugin_api import ReportContext
from framework.redact import redact, scrub, secret_values

# Hydra writes its own unredacted copies of the config and overrides under .hydra/; intentcraft writes redacted ones.
HYDRA_FORCED = ("hydra.output_subdir=null",)
# Libraries whose INFO lines would bury intentcraft's in the run log (onnxruntime's quantizer logs on the root
# logger, its transformer optimizer under bare module names); their warnings still get through.
NOISY_LOGGERS = (
    "onnxruntime",
    "fusion_base",
    "onnx_model",
    "onnx_model_bert",
    "transformers",
    "datasets",
    "huggingface_hub",
    "httpx",
    "httpcore",
    "litellm",
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "openai",
    "aiohttp",
    "urllib3",
    "filelock",
    "fsspec",
    "matplotlib",
    "PIL",
    "torch",
    "numexpr",
)
SUMMARY_WIDTH = 120  # columns of the summary tables written to the run log


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


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """For one run: the root logger and ``NOISY_LOGGERS`` at WARNING, intentcraft's own logger at INFO."""
    names = ("", *NOISY_LOGGERS, LOG.name)
    saved = {name: logging.getLogger(name).level for name in names}
    for name in ("", *NOISY_LOGGERS):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.WARNING))
    LOG.setLevel(logging.INFO)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@dataclass
class StageLines:
    """The line each stage gets when it starts (stderr and the run log) and ends (``console`` and the run log)."""

    console: Console
    pipeline: Pipeline
    clock: Callable[[], float] = time.monotonic
    actions: dict[str, str] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)

    def start(self, plan: StagePlan) -> None:
        """Say that a stage starts, and why it must run."""
        self.started[plan.stage.name] = self.clock()
        why = f"{plan.state.value.lower()}: {plan.reason}" if plan.reason else "forced"
        say(f"{plan.stage.name}: started ({why})", markup=False)

    def end(self, plan: StagePlan, action: str) -> None:
        """Say how a stage ended: ran, cached (or reused from another run) or stopped, and how long it took."""
        self.actions[plan.stage.name] = action
        name, fingerprint = plan.stage.name, plan.fingerprint[:12]
        verb = {"ran": "[green]ran[/]", "cached": "[dim]cached[/]", "stopped": "[yellow]PARTIAL[/]"}[action]
        detail = self._detail(plan, action)
        self.console.print(f"{name}: {verb} ({fingerprint}){detail}", soft_wrap=True)
        LOG.info(f"{name}: {'PARTIAL' if action == 'stopped' else action} ({fingerprint}){detail}")

    def _detail(self, plan: StagePlan, action: str) -> str:
        started = self.started.get(plan.stage.name)
        took = format_seconds(self.clock() - started) if started is not None else ""
        if action == "ran":
            return f" in {took}"
        if action == "stopped":
            return f" after {took}"
        if started is not None:
            return f", computed by another run while this one waited {took}"
        seconds = self.pipeline.manifest(plan).get("seconds")
        return "" if seconds is None else f", computed by an earlier run in {format_seconds(seconds)}"


def log_summary(pipeline: Pipeline, plans: list[StagePlan], actions: dict[str, str], lines: list[str]) -> None:
    """Write the summary the user sees at the end of a run (stages, rows, rejections, metrics) to the run log."""
    buffer = io.StringIO()
    plain = Console(file=buffer, width=SUMMARY_WIDTH, color_system=None, force_terminal=False, emoji=False)
    print_run_summary(plain, pipeline, plans, actions)
    LOG.info("\n".join(["run summary:", buffer.getvalue().rstrip(), *lines]))


def _report(pipeline: Pipeline, plans: list[StagePlan], run_dir: Path) -> Path | None:
    """Write the run's report with the recipe's reporter (every run, cached stages included); a recipe whose
    target reads no ``report`` section and that has none gets no report."""
    bound = pipeline.recipe.single.get("report")
    if bound is None:
        return None
    context = ReportContext(
        recipe_name=pipeline.recipe.name,
        recipe_file=pipeline.recipe.source,
        run_dir=run_dir,
        manifests={plan.stage.name: pipeline.manifest(plan) for plan in plans},
        stage_dirs={plan.stage.name: plan.directory for plan in plans},
    )
    # a reporter returns the report it wrote (plugin_api); the registry types plugin functions as returning object
    return cast("Path | None", bound.spec.func(bound.params, context))


SHIPPING_STAGES = ("bundle", "tool_evaluate")
"""The stages whose ``bundle_dir`` is the bundle a run ships (the classifier's and the tool router's)."""


def _link_bundle(pipeline: Pipeline, plans: list[StagePlan], run_dir: Path) -> Path | None:
    """Link the run record to the bundle the bundle stage published (targets without one ship none)."""
    plan = next((p for p in plans if p.stage.name in SHIPPING_STAGES), None)
    if plan is None:
        return None
    bundle = plan.directory / str(pipeline.manifest(plan)["bundle_dir"])
    link = run_dir / "bundle"
    if not link.exists():
        link.symlink_to(bundle.resolve(), target_is_directory=True)
    return bundle


def run_recipe(
    container: dict[str, Any], source: str, run_dir: Path, options: RunOptions, console: Console
) -> list[StagePlan]:
    """Validate, run the stages that are not current, record the run, write the report, print the summary."""
    recipe = check_recipe(container, source)
    pipeline = Pipeline(target_stages(recipe.config.target), recipe, Path(recipe.config.paths.outputs))
    lines = StageLines(console, pipeline)
    LOG.info(f"run of recipe {recipe.name} ({source}) in {run_dir}")
    for line in recipe.derived.describe(shown=len(recipe.derived.renamed)) if recipe.derived else []:
        LOG.info(line)
    plans = pipeline.run(lines.end, force=options.force, until=options.until, limit=options.limit, on_start=lines.start)
    actions = lines.actions
    _record(run_dir, recipe, container, plans, actions)
    if plans and actions.get(plans[-1].stage.name) == "stopped":
        console.print(f"[yellow]stopped early:[/] {escape(plans[-1].reason)}")
        console.print(f"run record: {run_dir}")
        LOG.info(f"stopped early: {plans[-1].reason}")
        return plans
    report = _report(pipeline, plans, run_dir)
    bundle = _link_bundle(pipeline, plans, run_dir)
    print_run_summary(console, pipeline, plans, actions)
    if recipe.config.notice:
        console.print(f"[yellow]note:[/] {escape(recipe.config.notice)}")
    if report is not None:
        console.print(f"report: {report}")
    if bundle is not None:
        console.print(f"[bold green]bundle:[/] {bundle}  (also linked from {run_dir / 'bundle'})")
        if recipe.config.target == "classifier":
            console.print(f'try it: intentcraft predict {bundle} "your query"')
    console.print(f"run record: {run_dir}")
    where = [f"{name}: {path}" for name, path in (("report", report), ("bundle", bundle)) if path is not None]
    log_summary(pipeline, plans, actions, where)
    return plans


def launch(ref: RecipeRef, multirun: bool, options: RunOptions, console: Console) -> int:
    """Hand the recipe to Hydra; returns the process exit code (the worst job's)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig, OmegaConf

    failures: list[int] = []

    def task(cfg: DictConfig) -> None:
        composed = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(composed, dict)
        container = cast("dict[str, Any]", composed)  # OmegaConf types keys as DictKeyType; a recipe's are strings
        hydra_cfg = HydraConfig.get()
        _record_config(Path(hydra_cfg.runtime.output_dir), container, list(hydra_cfg.overrides.task))
        if hydra_cfg.mode == RunMode.MULTIRUN:
            _scrub_file(Path(hydra_cfg.sweep.dir) / "multirun.yaml")
        try:
            with quiet_libraries():
                run_recipe(container, str(ref.path), Path(hydra_cfg.runtime.output_dir), options, console)
        except IntentcraftError as exc:
            STDERR.print("[bold red]error:[/] " + escape(scrub(user_message(exc))), highlight=False, soft_wrap=True)
            # INFO: the console handler shows WARNING and above, and the error is printed above already
            LOG.info(f"run failed (exit code {exc.exit_code}): {user_message(exc)}")
            if hydra_cfg.mode != RunMode.MULTIRUN:
                raise SystemExit(exc.exit_code) from None
            failures.append(exc.exit_code)
        except BaseException as exc:  # a bug or Ctrl-C: the run log says how the run ended, then it propagates
            LOG.info(f"run ended by {type(exc).__name__}: {scrub(str(exc))[:500]}")
            raise

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
