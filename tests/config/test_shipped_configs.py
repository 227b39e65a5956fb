"""Every shipped recipe and every option of every conf/ group composes and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.config.compose import available_recipes
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
    if recipe.generators:
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


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_conf_group_option_composes(group: str, option: str) -> None:
    override = f"+{group}={option}" if group == "debug" else f"{group}={option}"
    recipe = load_recipe(ASSETS / "recipes" / "tiny.yaml", override)
    assert recipe.name == "tiny"


def test_debug_config_shrinks_the_run() -> None:
    full = load_recipe(REPO / "recipes" / "code_search.yaml")
    debug = load_recipe(REPO / "recipes" / "code_search.yaml", "+debug=default")
    assert debug.config.generate.samples_per_intent < full.config.generate.samples_per_intent


def test_recipe_names_listed() -> None:
    assert {"code_search", "support_desk"} <= set(available_recipes())
