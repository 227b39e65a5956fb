"""Recipe targets: what a recipe builds, as a registered graph of stage kinds.

A recipe names its target (``target: classifier``, the default). A target lists stage kinds in run order;
each stage kind is a :class:`~framework.pipeline.runner.StageDef` registered once under its name. The built-in
``classifier`` target is generate -> validate -> split -> train -> export -> calibrate -> evaluate -> bundle.
Third-party packages add stage kinds and targets through the entry-point group ``intentcraft.targets``:
loading the entry point imports a module that calls :func:`register_stage` and :func:`register_target`.

A stage kind owns the recipe sections it reads (``StageDef.sections``) and names the plugin kinds it calls:
the recipe schema's sections, the ones a target requires, the plugin registry's kinds, ``--until``, ``status``
and ``run`` all derive from the registered stage kinds and targets.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from framework.config.schema import DEFAULT_TARGET as DEFAULT_TARGET  # re-exported: where targets are looked up
from framework.config.schema import RecipeConfig
from framework.errors import IntentcraftError

if TYPE_CHECKING:  # framework.pipeline.runner imports the recipe checks, which import this module
    from framework.pipeline.runner import RecipeSection, StageDef

ENTRY_POINT_GROUP = "intentcraft.targets"


@dataclass(frozen=True)
class Target:
    """A registered target: its stage kinds in run order (each upstream stage before the stages that need it)."""

    name: str
    stages: tuple[str, ...]
    description: str = ""


class UnknownTarget(IntentcraftError):
    """A recipe named a target that is not registered, or a stage its target does not have."""


STAGE_KINDS: dict[str, StageDef] = {}
TARGETS: dict[str, Target] = {}
LOAD_ERRORS: list[str] = []
BUILTIN: set[str] = set()
"""Targets registered by intentcraft itself (the others come from entry points)."""
_loaded = False
_loading = False
CORE_KEYS = frozenset(field.alias or name for name, field in RecipeConfig.model_fields.items())
"""Top-level recipe keys of the core schema: no stage kind may declare a section under one of them."""


def register_stage(stage: StageDef) -> StageDef:
    """Register a stage kind under its name (a second, different one of the same name is refused, and so is a
    section another stage kind declares differently)."""
    existing = STAGE_KINDS.get(stage.name)
    if existing is not None and existing is not stage:
        raise ValueError(f"stage kind {stage.name!r} is registered twice")
    for section in stage.sections:
        if section.key in CORE_KEYS:
            raise ValueError(
                f"stage kind {stage.name!r} declares the recipe section {section.key!r}, a core recipe key; rename it"
            )
        other = _sections().get(section.key)
        if other is not None and other != section:
            raise ValueError(
                f"stage kind {stage.name!r} declares the recipe section {section.key!r}, which another stage kind "
                f"declares with {other.model.__name__} (plugin kind {other.plugin_kind}); share the declaration"
            )
    STAGE_KINDS[stage.name] = stage
    return stage


def _sections() -> dict[str, RecipeSection]:
    return {section.key: section for stage in _stage_order() for section in stage.sections}


def _stage_order() -> list[StageDef]:
    """The stage kinds of the targets in run order, then the others (as registered)."""
    in_targets = [name for target in TARGETS.values() for name in target.stages]
    return [STAGE_KINDS[name] for name in dict.fromkeys([*in_targets, *STAGE_KINDS])]


def recipe_sections() -> dict[str, RecipeSection]:
    """Every recipe section a registered stage kind owns, by key (stage kinds may share a section)."""
    load_targets()
    return _sections()


def plugin_kinds() -> tuple[str, ...]:
    """Every plugin kind a registered stage kind calls: those of the targets' stages in run order, then the rest."""
    load_targets()
    return tuple(dict.fromkeys(kind for stage in _stage_order() for kind in stage.all_plugin_kinds()))


def register_target(target: Target) -> Target:
    """Register a target; its stages must be registered stage kinds whose upstream stages come earlier."""
    seen: set[str] = set()
    for name in target.stages:
        stage = STAGE_KINDS.get(name)
        if stage is None:
            raise ValueError(f"target {target.name!r} names stage kind {name!r}, which is not registered")
        missing = [up for up in stage.upstream if up not in seen]
        if missing:
            raise ValueError(f"target {target.name!r}: stage {name!r} needs {missing} earlier in the list")
        seen.add(name)
    existing = TARGETS.get(target.name)
    if existing is not None and existing != target:
        raise ValueError(f"target {target.name!r} is registered twice")
    TARGETS[target.name] = target
    return target


def load_targets(reload: bool = False) -> None:
    """Register the built-in target and stage kinds, then third-party ones from entry points (once)."""
    global _loaded, _loading
    if (_loaded and not reload) or _loading:  # loading: a module being imported below asked (it sees what is in)
        return
    _loading = True
    try:
        # By name, as the plugin registry loads built-in plugins: the stage modules import this one to register
        # themselves, so this module never imports them (no import cycle, even a lazy one).
        importlib.import_module("framework.stages")
        BUILTIN.update(TARGETS)
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except Exception as exc:  # a broken third-party package must not break every command
                dist = ep.dist.name if ep.dist is not None else ep.module
                LOAD_ERRORS.append(f"entry point {ep.name!r} ({ep.value}) of {dist} failed to load: {exc}")
    finally:
        _loading = False
    _loaded = True


def loading() -> bool:
    """True while the stage kinds and targets are being registered."""
    return _loading


def target_names() -> list[str]:
    """Every registered target."""
    load_targets()
    return sorted(TARGETS)


def get_target(name: str) -> Target:
    """The registered target ``name``, or an error listing the known ones."""
    load_targets()
    if name in TARGETS:
        return TARGETS[name]
    close = difflib.get_close_matches(name, list(TARGETS), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    broken = f" ({'; '.join(LOAD_ERRORS)})" if LOAD_ERRORS else ""
    raise UnknownTarget(f"unknown target '{name}'.{hint} Known targets: {', '.join(sorted(TARGETS))}{broken}.")


def target_stages(name: str) -> list[StageDef]:
    """The stage definitions of a target, in run order."""
    return [STAGE_KINDS[stage] for stage in get_target(name).stages]


def required_sections(name: str) -> list[str]:
    """The plugin sections the target's stages own: a recipe of this target must have each."""
    keys = (s.key for stage in target_stages(name) for s in stage.sections if s.plugin_kind is not None and s.required)
    return list(dict.fromkeys(keys))


def check_until(target: str, until: str | None) -> None:
    """Refuse ``--until STAGE`` when the recipe's target has no such stage."""
    if until is None:
        return
    names = list(get_target(target).stages)
    if until not in names:
        close = difflib.get_close_matches(until, names, n=1)
        hint = f" Did you mean --until {close[0]}?" if close else ""
        raise UnknownTarget(
            f"--until {until}: the {target} target has no such stage.{hint} Its stages: {', '.join(names)}."
        )
