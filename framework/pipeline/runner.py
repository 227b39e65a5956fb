"""Stage graph, fingerprints, content-addressed cache, manifests and staleness.

Each stage writes into ``<outputs>/cache/<stage>/<fingerprint>/``. The fingerprint hashes the
stage's recipe sections, its plugins (id and source digest), its upstream fingerprints and the
bytes of any file it reads, so it is known before the stage runs: ``status`` needs no work, an
unchanged stage is never recomputed, and sweep jobs share what they have in common.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from framework import __version__
from framework.errors import IntentcraftError, StageError, StageStopped, UserInputError
from framework.io import atomic_write_json, dumps_canonical, publish_dir, read_json, sha256_bytes
from framework.pipeline.facts import facts_from_manifest as facts_from_manifest  # re-exported
from framework.pipeline.progress import Progress, say
from framework.pipeline.stage_lock import lock_holder, make_staging_dir, remove_stale_staging, stage_lock
from framework.redact import redact

if TYPE_CHECKING:  # framework.config.check imports the targets, which import the stages
    from framework.config.check import ValidatedRecipe

MANIFEST = "manifest.json"
STOPPED = "stopped.json"
LIBRARIES = ("hydra-core", "omegaconf", "pydantic", "jinja2", "rich")


class State(StrEnum):
    """What ``status`` says of a stage."""

    CURRENT = "CURRENT"
    STALE = "STALE"
    MISSING = "MISSING"
    PARTIAL = "PARTIAL"


F = TypeVar("F", bound=BaseModel)


@dataclass
class StageRun:
    """What a stage's ``run`` function gets: the recipe, its staging dir, and its upstream stages' outputs
    (``inputs``: their directories; ``manifests``: what they published, read typed with :meth:`facts`)."""

    recipe: ValidatedRecipe
    work_dir: Path
    inputs: dict[str, Path]
    progress: Progress
    warnings: list[str] = field(default_factory=list)
    resume_dir: Path | None = None
    limit: int | None = None
    fingerprint: str = ""
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        """Keep a warning for the manifest and the summary."""
        if message not in self.warnings:
            self.warnings.append(message)

    def facts(self, stage: str, model: type[F]) -> F:
        """What an upstream stage published, as ``model`` (its stage kind's ``facts``, or a part of them)."""
        return facts_from_manifest(self.manifests[stage], model)

    def path(self, stage: str, name: str) -> Path:
        """A file or directory an upstream stage's facts name, inside that stage's output."""
        return self.inputs[stage] / name


@dataclass(frozen=True)
class RecipeSection:
    """A top-level recipe section that a stage kind owns.

    A plugin section (``plugin_kind`` set) names one plugin of that kind in its ``plugin`` key; ``model`` (a
    :class:`~framework.config.schema.PluginSection`) holds its core keys and the plugin's ``Params`` the rest.
    The recipe must have it when its target runs the stage, unless ``required`` is False (the stage then does
    without). A settings section (``plugin_kind`` None) is a strict model whose fields all have defaults; a recipe
    without it gets them.
    """

    key: str
    model: type[BaseModel]
    plugin_kind: str | None = None
    required: bool = True


@dataclass(frozen=True)
class StageDef:
    """One stage kind: its upstream stages, the recipe keys and sections it reads and what it runs.

    ``sections`` are the recipe sections it owns (their keys feed its fingerprint like ``config_keys``, and a
    plugin section's plugin code too); ``plugin_kinds`` the other plugin kinds it calls (e.g. the generators
    of ``generate.generators``). The plugin registry has one registry per plugin kind a stage kind names.
    ``facts`` is the model of what ``run`` returns (published in the manifest and validated first).
    ``files`` names the input files whose bytes feed the fingerprint, each under a label that does not
    depend on where the file lives (see ``labelled_files``), so a moved checkout or another virtual
    environment holding the same files leaves the stage current. ``recipe_issues`` finds what a recipe of a
    target with this stage lacks, as ``(key path, message)``, before any stage runs.
    """

    name: str
    upstream: tuple[str, ...]
    config_keys: tuple[str, ...]
    run: Callable[[StageRun], dict[str, Any] | BaseModel]
    version: int = 1
    facts: type[BaseModel] | None = None
    plugins: Callable[[ValidatedRecipe], list[Any]] = lambda recipe: []
    files: Callable[[ValidatedRecipe], dict[str, Path]] = lambda recipe: {}
    sections: tuple[RecipeSection, ...] = ()
    plugin_kinds: tuple[str, ...] = ()
    recipe_issues: Callable[[ValidatedRecipe], list[tuple[str, str]]] = lambda recipe: []

    @property
    def recipe_keys(self) -> tuple[str, ...]:
        """Every top-level recipe key the stage reads: ``config_keys`` and its sections."""
        return (*self.config_keys, *(s.key for s in self.sections if s.key not in self.config_keys))

    def all_plugin_kinds(self) -> tuple[str, ...]:
        """The plugin kinds the stage calls, its plugin sections' first."""
        kinds = [s.plugin_kind for s in self.sections if s.plugin_kind is not None]
        return tuple(dict.fromkeys([*self.plugin_kinds, *kinds]))

    def bound_plugins(self, recipe: ValidatedRecipe) -> list[Any]:
        """The plugins the stage runs: those of its plugin sections present in the recipe, then ``plugins``."""
        own = [recipe.single[s.key] for s in self.sections if s.plugin_kind is not None and s.key in recipe.single]
        return [*own, *self.plugins(recipe)]


@dataclass
class StagePlan:
    """A stage's fingerprint, directory and state for one recipe."""

    stage: StageDef
    fingerprint: str
    inputs: dict[str, Any]
    directory: Path
    state: State
    reason: str = ""


def labelled_files(prefix: str, paths: list[Path]) -> dict[str, Path]:
    """``{prefix/<path relative to the files' common directory>: path}`` for fingerprints."""
    if not paths:
        return {}
    root = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
    return {f"{prefix}/{Path(p).relative_to(root).as_posix()}": Path(p) for p in sorted(paths)}


def library_versions() -> dict[str, str]:
    """Versions recorded in every manifest."""
    versions = {"python": platform.python_version(), "intentcraft": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def fingerprint_inputs(stage: StageDef, recipe: ValidatedRecipe, upstream: dict[str, str]) -> dict[str, Any]:
    """Everything that decides a stage's output, as plain JSON."""
    from framework.io import sha256_file

    return {
        "stage": stage.name,
        "stage_version": stage.version,
        "config": {key: recipe.raw.get(key) for key in stage.recipe_keys},
        "plugins": {b.spec.id: b.spec.code_digest() for b in stage.bound_plugins(recipe)},
        "upstream": {name: upstream[name] for name in stage.upstream},
        "files": {label: sha256_file(path) for label, path in stage.files(recipe).items()},
    }


def resume_dir(directory: Path) -> Path:
    """Where a stage keeps finished work across interrupted runs (``<fingerprint>.resume`` beside its output)."""
    return directory.with_name(f"{directory.name}.resume")


def say_waiting(plan: StagePlan, pid: int | None) -> None:
    """Tell the user (on stderr and in the run log) that a stage waits for another run computing it."""
    holder = f"pid {pid}" if pid is not None else "pid unknown"
    say(f"{plan.stage.name}: waiting for another run ({holder}) computing this stage...", markup=False)


def published_facts(stage: StageDef, result: dict[str, Any] | BaseModel) -> dict[str, Any]:
    """A stage's result as the manifest keeps it, checked against the stage's ``facts`` model."""
    if isinstance(result, BaseModel):  # what the stage set, without a top-level None (nested None values stay)
        result = {key: value for key, value in result.model_dump(exclude_unset=True).items() if value is not None}
    details = result
    if stage.facts is not None:
        try:
            stage.facts.model_validate(details)
        except ValidationError as exc:
            raise StageError(
                f"{stage.name}: the stage's results do not match {stage.facts.__name__} ({exc.error_count()} "
                f"problems, first: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}); this is a bug in the stage"
            ) from None
    return details


class Pipeline:
    """Plans and runs the stages of one recipe over a cache directory."""

    def __init__(self, stages: list[StageDef], recipe: ValidatedRecipe, outputs: Path) -> None:
        self.stages = stages
        self.recipe = recipe
        self.outputs = outputs
        self.cache = outputs / "cache"
        self.state_file = outputs / "state" / f"{recipe.name}.json"

    def plan(self) -> list[StagePlan]:
        """Fingerprint every stage and say whether it is current, stale, partial or missing."""
        previous = read_json(self.state_file) if self.state_file.is_file() else {}
        fingerprints: dict[str, str] = {}
        plans = []
        for stage in self.stages:
            inputs = fingerprint_inputs(stage, self.recipe, fingerprints)
            fingerprint = sha256_bytes(dumps_canonical(inputs).encode())[:20]
            fingerprints[stage.name] = fingerprint
            directory = self.cache / stage.name / fingerprint
            state, reason = self._state(stage, directory, inputs, previous.get(stage.name))
            plans.append(StagePlan(stage, fingerprint, inputs, directory, state, reason))
        return plans

    def _state(self, stage: StageDef, directory: Path, inputs: dict[str, Any], last: str | None) -> tuple[State, str]:
        manifest = directory / MANIFEST
        if manifest.is_file():
            status = read_json(manifest).get("status")
            if status == "complete":
                return State.CURRENT, ""
            return State.PARTIAL, f"an earlier run stopped early ({status})"
        holder = lock_holder(directory)
        if holder is not None:
            return State.PARTIAL, f"running in pid {holder}: another run is computing this stage now"
        leftovers = sorted(directory.parent.glob(f".{directory.name}.staging-*")) + sorted(
            directory.parent.glob(f"{directory.name}.failed-*")
        )
        resume = resume_dir(directory)
        if resume.is_dir() and any(resume.iterdir()):
            stopped = resume / STOPPED
            reason = read_json(stopped)["reason"] if stopped.is_file() else "an earlier run was interrupted"
            return State.PARTIAL, f"{reason} (finished work kept in {resume}; the next run resumes it)"
        if leftovers:
            kind = "failed" if ".failed-" in leftovers[-1].name else "was stopped (or is still running)"
            return State.PARTIAL, f"a run of this stage {kind}; partial output in {leftovers[-1]}"
        if last:
            old = self.cache / stage.name / last / MANIFEST
            if old.is_file():
                from framework.pipeline.staleness import explain

                return State.STALE, explain(read_json(old).get("inputs", {}), inputs)
        return State.MISSING, "never run for this recipe"

    def run(
        self,
        on_stage: Callable[[StagePlan, str], None],
        force: bool = False,
        until: str | None = None,
        limit: int | None = None,
        on_wait: Callable[[StagePlan, int | None], None] = say_waiting,
        on_start: Callable[[StagePlan], None] = lambda plan: None,
    ) -> list[StagePlan]:
        """Run every stage that is not current, up to and including ``until``; returns the stages done.

        ``on_start(plan)`` is called before a stage that is not current (or forced) is computed, and
        ``on_stage(plan, "cached" | "ran" | "stopped")`` after each stage. ``limit`` caps the
        records a resumable stage requests in this run; a stage that stops short ends the run there, its
        plan left PARTIAL with the reason. A stage is computed under its lock (``stage_lock``); when another
        process holds it, ``on_wait(plan, its pid)`` is called once and the run waits for it.
        """
        plans = self.plan()
        if until is not None:
            names = [plan.stage.name for plan in plans]
            if until not in names:  # a sweep's jobs may have different targets: each job is checked here
                raise UserInputError(f"--until {until}: this recipe's stages are {', '.join(names)}; pick one of them.")
            plans = plans[: names.index(until) + 1]
        upstream_dirs: dict[str, Path] = {}
        for plan in plans:
            if plan.state is State.CURRENT and not force:
                on_stage(plan, "cached")
            else:
                on_start(plan)
                if not self._run_locked(plan, upstream_dirs, force, limit, on_stage, on_wait):
                    return plans[: plans.index(plan) + 1]
            upstream_dirs[plan.stage.name] = plan.directory
            self._remember(plan)
        return plans

    def _run_locked(
        self,
        plan: StagePlan,
        upstream_dirs: dict[str, Path],
        force: bool,
        limit: int | None,
        on_stage: Callable[[StagePlan, str], None],
        on_wait: Callable[[StagePlan, int | None], None],
    ) -> bool:
        """Compute a stage holding its lock, or reuse it if another run published it meanwhile.

        Returns False when the stage stopped short (``limit``), its plan left PARTIAL.
        """
        with stage_lock(plan.directory, lambda pid: on_wait(plan, pid)):
            if not force and self._complete(plan.directory):
                plan.state, plan.reason = State.CURRENT, ""
                on_stage(plan, "cached")
                return True
            try:
                self._execute(plan, upstream_dirs, limit)
            except StageStopped as stop:
                plan.state, plan.reason = State.PARTIAL, str(stop)
                on_stage(plan, "stopped")
                return False
        plan.state, plan.reason = State.CURRENT, ""
        on_stage(plan, "ran")
        return True

    @staticmethod
    def _complete(directory: Path) -> bool:
        manifest = directory / MANIFEST
        return manifest.is_file() and read_json(manifest).get("status") == "complete"

    def _execute(self, plan: StagePlan, upstream_dirs: dict[str, Path], limit: int | None = None) -> None:
        """Compute a stage into a staging directory and publish it; the caller holds the stage's lock."""
        remove_stale_staging(plan.directory.parent, held=plan.fingerprint)
        staging = make_staging_dir(plan.directory)
        inputs = {name: upstream_dirs[name] for name in plan.stage.upstream}
        resume = resume_dir(plan.directory)
        (resume / STOPPED).unlink(missing_ok=True)
        started = time.time()
        with Progress(label=plan.stage.name) as progress:
            manifests = {name: read_json(path / MANIFEST) for name, path in inputs.items()}
            run = StageRun(self.recipe, staging, inputs, progress, [], resume, limit, plan.fingerprint, manifests)
            try:
                details = published_facts(plan.stage, plan.stage.run(run))
            except StageStopped as stop:
                shutil.rmtree(staging, ignore_errors=True)
                atomic_write_json(resume / STOPPED, {"reason": str(stop), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
                raise
            except IntentcraftError as exc:
                kept = self._keep_failed(staging, plan)
                exc.add_note(f"Partial output of the {plan.stage.name} stage is kept in {kept}.")
                raise
            except KeyboardInterrupt:
                self._keep_failed(staging, plan)
                raise
        manifest = {
            "stage": plan.stage.name,
            "recipe": self.recipe.name,
            "recipe_file": self.recipe.source,
            "fingerprint": plan.fingerprint,
            "status": "complete",
            "inputs": plan.inputs,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(time.time() - started, 3),
            "warnings": run.warnings,
            "versions": library_versions(),
            **details,
        }
        atomic_write_json(staging / MANIFEST, redact(manifest, by_name=False))  # by value and shape only
        if resume.is_dir():  # the finished journal travels with the output it produced
            resume.rename(staging / "journal")
        publish_dir(staging, plan.directory)
        for failed in plan.directory.parent.glob(f"{plan.fingerprint}.failed-*"):
            shutil.rmtree(failed, ignore_errors=True)  # superseded by the complete output

    def _keep_failed(self, staging: Path, plan: StagePlan) -> Path:
        """Keep a failed stage's partial output for inspection, under a name no run trusts."""
        failed = plan.directory.with_name(f"{plan.fingerprint}.failed-{time.strftime('%Y%m%d-%H%M%S')}")
        if staging.exists():
            staging.rename(failed)
        return failed

    def _remember(self, plan: StagePlan) -> None:
        previous = read_json(self.state_file) if self.state_file.is_file() else {}
        if previous.get(plan.stage.name) != plan.fingerprint:
            previous[plan.stage.name] = plan.fingerprint
            atomic_write_json(self.state_file, previous)

    def manifest(self, plan: StagePlan) -> dict[str, Any]:
        """The manifest of a current stage."""
        return read_json(plan.directory / MANIFEST)
