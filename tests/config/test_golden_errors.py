"""Golden tests of the error block a user sees for each kind of bad recipe.

Regenerate after an intended wording change with ``UPDATE_GOLDEN=1 pytest tests/config`` and read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from framework.errors import RecipeError
from tests.conftest import ASSETS, REPO, load_recipe

RECIPES = ASSETS / "recipes"
GOLDEN = Path(__file__).parent / "golden"
BAD = sorted(RECIPES.glob("bad_*.yaml"))


def rendered_error(path: Path, *overrides: str) -> str:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, *overrides)
    return caught.value.render().replace(str(REPO), "<repo>") + "\n"


def check_golden(name: str, text: str) -> None:
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden file {golden}; run with UPDATE_GOLDEN=1 once and review it"
    assert text == golden.read_text()


def test_there_are_at_least_ten_kinds_of_bad_recipe() -> None:
    assert len(BAD) >= 10


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_recipe_error_block(path: Path) -> None:
    check_golden(path.stem, rendered_error(path))


SHIPPED = REPO / "recipes"


@pytest.mark.parametrize(
    ("name", "recipe", "overrides"),
    [
        ("override_typo_key", RECIPES / "tiny.yaml", ("generate.samples_per_intnt=5",)),
        ("override_bad_value", RECIPES / "tiny.yaml", ("generate.samples_per_intent=0", "split.ratios.train=-1")),
        ("override_group_not_in_defaults", RECIPES / "tiny.yaml", ("intents=code_search",)),
        ("override_missing_pack", SHIPPED / "code_search.yaml", ("intents=no_such_pack",)),
        ("override_bad_syntax", RECIPES / "tiny.yaml", ("generate.samples_per_intent=[1,",)),
    ],
)
def test_bad_override_error_block(name: str, recipe: Path, overrides: tuple[str, ...]) -> None:
    check_golden(name, rendered_error(recipe, *overrides))


def test_every_error_names_the_recipe_file_and_a_key_path() -> None:
    for path in BAD:
        with pytest.raises(RecipeError) as caught:
            load_recipe(path)
        error = caught.value
        assert error.source == str(path)
        assert error.issues, path
        assert all(issue.path for issue in error.issues), [i.render() for i in error.issues]
        assert "Traceback" not in error.render()
