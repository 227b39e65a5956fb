"""Limits on the YAML OmegaConf loads (``framework.config.yaml_limits``): alias bombs, depth, duplicate keys."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from framework.config.compose import RecipeRef, compose_recipe
from framework.config.yaml_limits import DEFAULT_YAML_LIMITS, install_yaml_limits
from framework.errors import RecipeError
from tests.conftest import TINY


def alias_bomb(levels: int, fan_out: int = 10) -> str:
    """``levels`` anchors, each a list of ``fan_out`` aliases to the one before ("billion laughs")."""
    lines = ["lol0: &l0 [" + ", ".join(['"lol"'] * fan_out) + "]"]
    for level in range(1, levels):
        lines.append(f"lol{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * fan_out) + "]")
    return "\n".join(lines) + "\n"


def load(tmp_path: Path, text: str, name: str = "doc.yaml") -> object:
    path = tmp_path / name
    path.write_text(text)
    install_yaml_limits()
    return OmegaConf.load(path)


def refused(tmp_path: Path, text: str) -> str:
    started = time.monotonic()
    with pytest.raises(RecipeError) as caught:
        load(tmp_path, text)
    assert time.monotonic() - started < 2.0
    error = caught.value
    assert error.source == str(tmp_path / "doc.yaml")
    assert "Traceback" not in error.render()
    return error.render()


def test_billion_laughs_is_refused_before_construction(tmp_path: Path) -> None:
    text = refused(tmp_path, alias_bomb(9))
    assert f"expands to more than {DEFAULT_YAML_LIMITS.max_nodes} YAML nodes" in text
    assert "  - lol4: " in text and "(line 5)" in text


def test_aliases_within_the_limit_still_load(tmp_path: Path) -> None:
    assert OmegaConf.to_container(load(tmp_path, alias_bomb(3)))["lol2"][0][0] == ["lol"] * 10  # type: ignore[index]
    merged = load(tmp_path, "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert OmegaConf.to_container(merged)["other"] == {"x": 1, "y": 3}  # type: ignore[index]


def test_duplicate_key_names_the_key_and_both_lines(tmp_path: Path) -> None:
    text = refused(tmp_path, "intents:\n  A:\n    description: one\n    weight: 1\n    description: two\n")
    assert "  - intents.A.description: duplicate key 'description' at line 5 (first at line 3)" in text


def test_same_key_in_two_mappings_is_fine(tmp_path: Path) -> None:
    assert OmegaConf.to_container(load(tmp_path, "a: {name: 1}\nb: {name: 2}\n")) == {
        "a": {"name": 1},
        "b": {"name": 2},
    }


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    assert "nested more than 64 levels deep" in refused(tmp_path, "x: " + "[" * 100 + "1" + "]" * 100 + "\n")
    assert "nested more than 64 levels deep" in refused(tmp_path, "x: " + "[" * 50_000 + "1" + "]" * 50_000 + "\n")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    assert "an alias refers to a node that contains it" in refused(tmp_path, "x: &a [1, *a]\n")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    assert "  - line 2, column 1: invalid YAML:" in refused(tmp_path, 'name: "unterminated\n')


def test_install_is_idempotent(tmp_path: Path) -> None:
    import omegaconf._utils as omegaconf_utils

    install_yaml_limits()
    first = omegaconf_utils.get_yaml_loader
    install_yaml_limits()
    assert omegaconf_utils.get_yaml_loader() is first()


def test_compose_refuses_an_alias_bomb_in_a_recipe(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY.read_text())
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("defaults: [tiny, _self_]\n" + alias_bomb(9))
    with pytest.raises(RecipeError) as caught:
        compose_recipe(RecipeRef(recipe, ()))
    assert caught.value.source == str(recipe)
    assert "YAML nodes" in caught.value.render()
