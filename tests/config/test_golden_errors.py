"""Golden tests of the error block a user sees for each kind of bad recipe.

Regenerate after an intended wording change with ``UPDATE_GOLDEN=1 pytest tests/config`` and read the diff
(only 1, true or yes, in any case, regenerate; ``UPDATE_GOLDEN=0`` compares).
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


def update_golden(value: str | None) -> bool:
    """Whether ``UPDATE_GOLDEN`` asks to rewrite golden files: only 1, true or yes (any case) do."""
    return (value or "").strip().lower() in {"1", "true", "yes"}


def check_golden(name: str, text: str) -> None:
    golden = GOLDEN / f"{name}.txt"
    if update_golden(os.environ.get("UPDATE_GOLDEN")):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden file {golden}; run with UPDATE_GOLDEN=1 once and review it"
    assert text == golden.read_text()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        (" yes ", True),
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("no", False),
        ("2", False),
        ("y", False),
    ],
)
def test_update_golden_accepts_only_1_true_or_yes(value: str | None, expected: bool) -> None:
    assert update_golden(value) is expected


def test_update_golden_0_compares_and_leaves_the_golden_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.GOLDEN", tmp_path)
    (tmp_path / "case.txt").write_text("recorded\n")
    monkeypatch.setenv("UPDATE_GOLDEN", "0")
    with pytest.raises(AssertionError):
        check_golden("case", "changed\n")
    assert (tmp_path / "case.txt").read_text() == "recorded\n"
    monkeypatch.setenv("UPDATE_GOLDEN", "yes")
    check_golden("case", "changed\n")
    assert (tmp_path / "case.txt").read_text() == "changed\n"


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
