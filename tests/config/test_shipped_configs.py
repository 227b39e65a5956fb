"""Every shipped recipe and every option of every conf/ group composes and validates."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from framework.config.compose import available_recipes
from framework.stages.calibrate import CalibrateSection
from framework.stages.export import ExportSection
from tests.conftest import ASSETS, REPO, load_recipe

SHIPPED = sorted((REPO / "recipes").glob("*.yaml"))
GROUP_OPTIONS = sorted(
    (group.name, option.stem)
    for group in (REPO / "conf").iterdir()
    if group.is_dir()
    for option in group.glob("*.yaml")
)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_recipe_validates(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    if recipe.config.tool_calls is not None:  # its way out: a tool that asks the user, and direct answers
        assert "ask_human" in recipe.config.tool_calls.tools and recipe.config.tool_calls.answer is not None
    elif recipe.generators:
        assert recipe.config.fallback_intent is not None, (
            "every shipped synthetic recipe declares an out-of-scope intent"
        )


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_recipe_opens_with_the_command_that_runs_it(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first == f"# Run: intentcraft run recipe={path.stem}"


def test_default_recipe_is_code_search_with_eight_intents_and_1000_rows() -> None:
    recipe = load_recipe(REPO / "recipes" / "code_search.yaml")
    expected = {
        "SymbolQuery",
        "TextSearch",
        "FindCallers",
        "FindCallees",
        "TracePath",
        "Visualize",
        "IndexStatus",
        "Ambiguous",
    }
    assert set(recipe.config.intents) == expected
    assert recipe.config.generate.samples_per_intent >= 1000
    assert recipe.config.fallback_intent == "Ambiguous"


def leaves(node: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """``(key path, value)`` of every non-mapping value under ``node``."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, (*prefix, str(key)))
    else:
        yield prefix, node


def lookup(node: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` under ``node``."""
    for key in path:
        node = node[key]
    return node


TOOL_CALL_OPTIONS = {
    ("generate", "tool_template"),
    ("validate", "tool_calls"),
    ("tool_export", "default"),
    ("trainer", "causal_lora"),
    ("tool_evaluate", "default"),
    ("selector", "encoder"),
}
"""Options for tool_calls recipes: they compose on the tiny tool-call recipe."""


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_conf_group_option_composes(group: str, option: str, tmp_path: Path) -> None:
    """Each option composes, and the recipe carries its values wherever the recipe does not set the key itself."""
    # tiny with a row count no option uses, so debug's (a global package applied after the recipe) shows
    base = "tiny_tools.yaml" if (group, option) in TOOL_CALL_OPTIONS else "tiny.yaml"
    source = (ASSETS / "recipes" / base).read_text()
    assert "  samples_per_intent: 40\n" in source
    path = tmp_path / "tiny.yaml"
    path.write_text(source.replace("  samples_per_intent: 40\n", "  samples_per_intent: 7\n"))
    own = {key for key, _ in leaves(OmegaConf.to_container(OmegaConf.load(path)))}
    option_file = REPO / "conf" / group / f"{option}.yaml"
    values = OmegaConf.to_container(OmegaConf.load(option_file))
    is_global = "# @package _global_" in option_file.read_text()
    override = f"+{group}={option}" if group == "debug" else f"{group}={option}"
    recipe = load_recipe(path, override)
    expected = {
        key if is_global else (group, *key): value
        for key, value in leaves(values)
        if is_global or (group, *key) not in own
    }
    assert expected, f"{group}={option} sets nothing the test can see"
    assert {key: lookup(recipe.raw, key) for key in expected} == expected
    if group == "generate":
        assert set(recipe.raw["generate"]["generators"]) == set(values["generators"]), "the option swaps generators"


def test_debug_config_shrinks_the_run() -> None:
    full = load_recipe(REPO / "recipes" / "code_search.yaml")
    debug = load_recipe(REPO / "recipes" / "code_search.yaml", "+debug=default")
    assert debug.config.generate.samples_per_intent < full.config.generate.samples_per_intent
    notice, trainer = debug.config.notice, debug.bound("trainer").section.plugin_params()
    assert full.config.notice == ""
    assert notice.startswith(f"debug run (+debug=default): {debug.config.generate.samples_per_intent} rows per intent")
    said = re.search(r"(\d+) epochs at lr ([0-9.e-]+)", notice)
    assert said and (int(said[1]), float(said[2])) == (trainer["epochs"], trainer["lr"]) and "gates off" in notice
    assert debug.section("export", ExportSection).max_accuracy_drop == 1.0
    assert debug.section("calibrate", CalibrateSection).max_ece is None


def test_recipe_names_listed() -> None:
    assert {"code_search", "support_desk"} <= set(available_recipes())
