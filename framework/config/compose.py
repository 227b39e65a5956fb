"""Find a recipe and compose it with Hydra over the library defaults in ``conf/``.

A recipe is a Hydra primary config. ``recipe=NAME`` looks for ``./recipes/NAME.yaml`` and then
the shipped recipes; ``recipe=path/to/file.yaml`` names a file directly. The recipe's directory is
the primary config path (so its ``intents/`` packs resolve), and ``conf/`` plus the shipped
recipes directory are added to Hydra's search path.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from framework.config.recipe_policy import (
    api_base_issues,
    choice_issues,
    hydra_issues,
    outputs_issues,
    override_key,
    override_key_issue,
    override_list_issues,
    pack_overlap_issues,
    resolver_issues,
)
from framework.errors import ConfigIssue, RecipeError, UserInputError
from framework.paths import conf_dir, recipe_dirs, shipped_recipes_dir

DEFAULT_RECIPE = "code_search"
_RECIPE_OVERRIDE = re.compile(r"^recipe=(?P<value>.*)$")


@dataclass(frozen=True)
class RecipeRef:
    """A located recipe file and the overrides to compose it with."""

    path: Path
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        """The file's stem, e.g. ``code_search``."""
        return self.path.stem

    def search_path_override(self) -> str:
        """The ``hydra.searchpath`` override that makes ``conf/`` and shipped packs visible."""
        dirs = [conf_dir(), shipped_recipes_dir()]
        return "hydra.searchpath=[" + ",".join(f"file://{d}" for d in dirs if d != self.path.parent) + "]"


def available_recipes() -> list[str]:
    """Names accepted by ``recipe=NAME``."""
    names = {p.stem for d in recipe_dirs() for p in d.glob("*.yaml")}
    return sorted(names)


def split_recipe_override(args: list[str]) -> tuple[str, list[str]]:
    """Pull ``recipe=X`` out of the overrides; the default recipe when absent."""
    recipe, rest = DEFAULT_RECIPE, []
    for arg in args:
        match = _RECIPE_OVERRIDE.match(arg)
        if match:
            recipe = match["value"]
        else:
            rest.append(arg)
    return recipe, rest


def locate_recipe(value: str) -> Path:
    """Resolve ``recipe=`` to a YAML file or raise a clear error listing the choices."""
    if "," in value:
        raise UserInputError(
            f"recipe={value}: a sweep over recipes is not supported; sweep keys inside one recipe with -m, "
            "or run each recipe in turn (for r in a b; do intentcraft run recipe=$r; done)."
        )
    as_path = Path(value).expanduser()
    if value.endswith((".yaml", ".yml")) or "/" in value:
        if as_path.is_file():
            return as_path.resolve()
        raise UserInputError(f"recipe={value}: no such file. Give a path to a recipe YAML or a recipe name.")
    for directory in recipe_dirs():
        candidate = directory / f"{value}.yaml"
        if candidate.is_file():
            return candidate
    names = available_recipes()
    close = difflib.get_close_matches(value, names, n=1)
    hint = f" Did you mean recipe={close[0]}?" if close else ""
    raise UserInputError(
        f"recipe={value}: no recipe of that name in {', '.join(str(d) for d in recipe_dirs())}.{hint} "
        f"Known recipes: {', '.join(names) or 'none'}."
    )


def resolve_recipe(args: list[str]) -> RecipeRef:
    """Locate the recipe named among ``args`` and keep the other overrides."""
    value, overrides = split_recipe_override(args)
    return RecipeRef(locate_recipe(value), tuple(overrides))


def compose_recipe(ref: RecipeRef, overrides: list[str] | None = None) -> dict[str, Any]:
    """Compose the recipe with Hydra, refuse what a recipe may not ask (see ``recipe_policy``), and return it
    as plain, resolved containers (no ``hydra`` node)."""
    return compose_with_hydra(ref, overrides)[0]


def compose_with_hydra(ref: RecipeRef, overrides: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``compose_recipe``'s resolved recipe and the (checked, unresolved) ``hydra`` node beside it."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    from framework.config.yaml_limits import install_yaml_limits

    chosen = list(ref.overrides if overrides is None else overrides)
    _check_override_syntax(ref, chosen)
    install_yaml_limits()  # alias bombs, deep nesting, duplicate keys: one RecipeError naming file, key, line
    given = [*chosen, ref.search_path_override()]  # what Hydra composes with, and records in hydra.overrides
    try:
        with initialize_config_dir(config_dir=str(ref.path.parent), version_base="1.3", job_name="intentcraft"):
            cfg = compose(config_name=ref.name, overrides=given, return_hydra_config=True)
            packs = _intents_per_pack(ref.name, given)
        hydra = OmegaConf.to_container(cfg.hydra, resolve=False)
        with open_dict(cfg):
            del cfg["hydra"]
        _check_policy(ref, given, hydra, OmegaConf.to_container(cfg, resolve=False), packs)
        container = OmegaConf.to_container(cfg, resolve=True)
    except KeyError as exc:  # Hydra copies hydra.job.env_copy's variables while composing, before any check
        issue = ConfigIssue("hydra.job.env_copy", f"a recipe cannot set this Hydra key (it names {exc})")
        raise RecipeError(str(ref.path), [issue]) from None
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        issue = composition_issue(exc)
        if issue.message.startswith("no such key"):
            issue.message += _override_suggestion(ref, chosen, issue.path)
        raise RecipeError(str(ref.path), [issue], hint=composition_hint(exc)) from None
    except (AttributeError, TypeError, RecursionError) as exc:  # Hydra/OmegaConf internals tripped by odd input
        raise RecipeError(str(ref.path), [composition_issue(exc)], hint=composition_hint(exc)) from None
    assert isinstance(container, dict) and isinstance(hydra, dict)
    # OmegaConf types a container's keys as any DictKeyType; a composed recipe's and Hydra's keys are strings
    return cast("dict[str, Any]", container), cast("dict[str, Any]", hydra)


def _intents_per_pack(config_name: str, overrides: list[str]) -> dict[str, list[str]]:
    """``{pack: [intent, ...]}`` for every intent pack (``intents/NAME``) in the recipe's defaults list."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    loader = GlobalHydra.instance().config_loader()
    defaults = loader.compute_defaults_list(config_name, overrides, RunMode.RUN)
    packs: dict[str, list[str]] = {}
    for item in defaults.defaults:
        if (item.config_path or "").startswith("intents/") and item.package in ("", "_global_"):
            loaded = loader.repository.load_config(item.config_path)  # type: ignore[attr-defined]
            intents = loaded.config.get("intents") if loaded is not None else None
            packs[item.config_path] = [str(name) for name in intents or {}]
    return packs


def _check_policy(ref: RecipeRef, given: list[str], hydra: Any, unresolved: Any, packs: dict[str, list[str]]) -> None:
    """Refuse ``hydra.*`` keys, resolvers, output paths and intents that two packs define, all at once.

    ``given`` is every override Hydra composed with, the search path included."""
    choices = hydra["runtime"]["choices"]
    issues = choice_issues(choices)
    if not issues:
        try:
            reference = _reference(ref.search_path_override(), choices["hydra/launcher"], choices["hydra/sweeper"])
        except Exception as exc:  # an allowed launcher or sweeper whose Hydra plugin is not installed
            detail = composition_issue(exc).message
            issues = [ConfigIssue("hydra/launcher", f"cannot compose the library defaults with it: {detail}")]
        else:
            issues = hydra_issues(hydra, reference["hydra"])
            issues += override_list_issues(hydra, given)
            outputs = unresolved.get("paths", {}).get("outputs")
            issues += outputs_issues(outputs, reference["paths"]["outputs"], given)
    issues += resolver_issues(unresolved) + api_base_issues(unresolved, given)
    hint = (
        "A recipe is data: it cannot run code, read the environment or choose where files are written. "
        "Remove these keys from the recipe (or the override that set them)."
    )
    overlaps = pack_overlap_issues(packs)
    if issues or overlaps:
        raise RecipeError(str(ref.path), issues + overlaps, hint=hint if issues else None)


@functools.lru_cache(maxsize=8)
def _reference(search_path: str, launcher: str, sweeper: str) -> dict[str, Any]:
    """The library defaults composed alone (with the same launcher and sweeper): what a recipe is compared to."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="intentcraft"):
        cfg = compose(
            config_name="intentcraft",
            overrides=[f"hydra/launcher={launcher}", f"hydra/sweeper={sweeper}", search_path],
            return_hydra_config=True,
        )
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    return cast("dict[str, Any]", container)  # the composed defaults' keys are strings


def _check_override_syntax(ref: RecipeRef, overrides: list[str]) -> None:
    """Name the override that Hydra's grammar cannot parse (Hydra's own message does not)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    issues = []
    for override in overrides:
        try:
            parsed = parser.parse_override(override)
        except HydraException as exc:
            detail = str(exc).split(" See https://")[0].strip()
            issues.append(ConfigIssue(override, f"cannot parse this override: {detail}"))
            continue
        refused = override_key_issue(parsed)  # before Hydra acts on it (hydra.searchpath=[pkg://x] imports x)
        if refused is not None:
            raise RecipeError(str(ref.path), [refused], hint="Remove this override; see README, A recipe is data.")
    if issues:
        hint = (
            "Overrides look like key=value, +new.key=value or ~key; quote values with spaces, commas or brackets, "
            "e.g. 'intents.A.templates=[\"who calls {{ symbol }}\"]'."
        )
        raise RecipeError(str(ref.path), issues, hint=hint)


def _override_suggestion(ref: RecipeRef, overrides: list[str], key: str) -> str:
    """``; did you mean 'x'?`` for an override of a key that does not exist."""
    bad = [o for o in overrides if override_key(o) == key]
    if not bad:
        return ""
    try:
        container = compose_recipe(ref, [o for o in overrides if o not in bad])
    except RecipeError:
        return ""
    parent, _, leaf = key.rpartition(".")
    node: Any = container
    for part in parent.split(".") if parent else []:
        node = node.get(part) if isinstance(node, dict) else None
    choices = [str(k) for k in node] if isinstance(node, dict) else []
    close = difflib.get_close_matches(leaf, choices, n=1)
    return f"; did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else ""


def composition_issue(exc: Exception) -> ConfigIssue:
    """Turn a Hydra/OmegaConf composition failure into one readable issue."""
    text = str(exc).strip()
    text = text.split("\nConfig search path:")[0]
    text = re.sub(r"\n\s*\n", "\n", text).replace("\n\t", " ").replace("\n", " ")
    key = getattr(exc, "full_key", "") or ""
    match = re.search(r"Could not override '([^']+)'", text)
    if match:
        key = match[1]
        if "No match in the defaults list" in text:
            text = f"the recipe's defaults list has no group '{key}' to choose from (to add one, write +{key}=...)"
        else:
            text = f"no such key in the composed recipe (to add a new key, write +{key}=...)"
    match = re.search(r"Could not find '([^']+)'\s*Available options in '([^']+)': (.*)$", text)
    if match:
        key = match[2]
        text = f"no config '{match[1]}'; available options: {', '.join(match[3].split())}"
    return ConfigIssue(str(key), text)


def composition_hint(exc: Exception) -> str:
    """The fix to suggest for a composition failure."""
    text = str(exc)
    if "Could not override" in text:
        return (
            "Check the key's spelling (`intentcraft validate recipe=NAME --show` prints the composed recipe), "
            "or add a new key with +key=value."
        )
    if "Could not find" in text or "MissingConfig" in type(exc).__name__:
        return "Fix the name in the recipe's defaults list (or the override); the available options are listed above."
    return "Fix the recipe or the override and run again."
