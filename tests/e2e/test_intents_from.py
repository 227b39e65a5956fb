"""A recipe that declares no intent: ``intents_from`` takes 150 labels (``yes``, ``no``, ``reverted card
payment?`` among them) from a CSV, the run ships a bundle, and ``predict`` answers with the CSV's labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from framework.config.intents_from import intent_name
from framework.errors import RecipeError
from framework.io import read_json
from tests.conftest import load_recipe, run_cli, tiny_model_overrides

ODD_LABELS = ["yes", "no", "reverted card payment?", "3", "top-up: failed", "Überweisung"]
LABELS = ODD_LABELS + [f"topic_{n:03d}" for n in range(150 - len(ODD_LABELS))]
ROWS_PER_LABEL = 10
WORDS = ["please", "quick", "question", "about", "my", "account", "help", "today", "now", "again"]

RECIPE = """
defaults:
  - intentcraft
  - override /generate: null
  - _self_

name: labelled
intents_from: sources.train
intents:
  reverted_card_payment:
    description: A card payment that came back.
sources:
  train: {{plugin: csv, path: {train}, text_column: text, label_column: category}}
  test: {{plugin: csv, path: {test}, text_column: text, label_column: category, split: test}}
generate:
  generators: {{}}
validate:
  layers:
    quality: {{min_words: null, parroting: false, near_duplicates: {{enabled: false}}}}
split:
  ratios: {{train: 0.8, eval: 0.2, test: 0.0}}
"""


def write_csv(path: Path, rows_per_label: int, offset: int = 0) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        for n, label in enumerate(LABELS):
            for i in range(rows_per_label):
                words = " ".join(WORDS[(i + offset + k) % len(WORDS)] for k in range(3))
                writer.writerow([f"{label} {words} {n} {i + offset}", label])
    return path


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    train = write_csv(root / "train.csv", ROWS_PER_LABEL)
    test = write_csv(root / "test.csv", 2, offset=ROWS_PER_LABEL)
    path = root / "labelled.yaml"
    path.write_text(RECIPE.format(train=train, test=test), encoding="utf-8")
    return path


def test_every_label_becomes_an_intent_and_odd_ones_get_valid_names(recipe_file: Path) -> None:
    recipe = load_recipe(recipe_file)
    config = recipe.config
    assert len(config.intents) == 150
    assert config.display_labels == {
        "reverted_card_payment": "reverted card payment?",
        "intent_3": "3",
        "top-up_failed": "top-up: failed",
        "Uberweisung": "Überweisung",
    }
    assert config.intents["yes"].label is None and config.intents["no"].label is None
    assert config.intents["reverted_card_payment"].description == "A card payment that came back."
    for name in ("train", "test"):
        assert recipe.sources[name].params.label_map["reverted card payment?"] == "reverted_card_payment"
    assert recipe.derived is not None and recipe.derived.rows["yes"] == ROWS_PER_LABEL
    assert set(recipe.derived.added) == set(config.intents) - {"reverted_card_payment"}  # declared by hand


def test_intent_names_are_valid_and_distinct() -> None:
    taken: set[str] = set()
    names = []
    for label in ("a b?", "a b!", "9", "", "日本", "-x-"):
        names.append(intent_name(label, taken))
        taken.add(names[-1])
    assert names == ["a_b", "a_b_2", "intent_9", "intent", "intent_2", "x"]
    assert intent_name("x" * 100, set()) == "x" * 64


SMALL = """
defaults:
  - intentcraft
  - override /generate: null
  - _self_
name: small
intents_from: sources.train
sources:
  train: {{plugin: csv, path: {data}{extra}}}
generate:
  generators: {{}}
{intents}
"""


def small_recipe(tmp_path: Path, labels: list[str], intents: str = "", extra: str = "", *more: str) -> Path:
    data = tmp_path / "data.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([f"text {n} of {label}", label] for n, label in enumerate(labels))
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.format(data=data, extra=extra, intents=intents) + "\n".join(more), encoding="utf-8")
    return path


def test_two_labels_never_share_a_declared_intent(tmp_path: Path) -> None:
    """``foo bar`` and ``foo bar?`` both want the name foo_bar, declared by hand: one joins it, one gets foo_bar_2."""
    intents = "intents:\n  foo_bar: {description: Foo.}"
    config = load_recipe(small_recipe(tmp_path, ["foo bar", "foo bar?", "other"], intents)).config
    assert config.display_labels == {"foo_bar": "foo bar", "foo_bar_2": "foo bar?"}
    assert config.intents["foo_bar"].description == "Foo."


def test_a_declared_intent_claims_a_label_by_its_label_key(tmp_path: Path) -> None:
    intents = 'intents:\n  Ambiguous: {out_of_scope: true, label: "out of scope"}'
    recipe = load_recipe(small_recipe(tmp_path, ["out of scope", "card lost", "top up"], intents))
    assert recipe.config.fallback_intent == "Ambiguous"
    assert recipe.config.display_labels["Ambiguous"] == "out of scope"
    assert recipe.sources["train"].params.label_map["out of scope"] == "Ambiguous"
    assert sorted(recipe.config.intents) == ["Ambiguous", "card_lost", "top_up"]


def test_the_recipes_own_label_map_follows_a_renamed_target(tmp_path: Path) -> None:
    extra = ', label_map: {"3": "card lost"}'
    recipe = load_recipe(small_recipe(tmp_path, ["3", "card lost", "top up"], "", extra))
    assert recipe.sources["train"].params.label_map == {"3": "card_lost", "card lost": "card_lost", "top up": "top_up"}
    assert set(recipe.config.intents) == {"card_lost", "top_up"}


def test_one_label_is_not_a_router(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe(small_recipe(tmp_path, ["only", "only"]))
    [issue] = caught.value.issues
    assert issue.path == "intents_from"
    assert "give 1 distinct value(s) ('only')" in issue.message and "sources.train.label_column" in issue.message


def test_data_intents_need_no_templates_beside_a_template_generated_one(tmp_path: Path) -> None:
    """Real labels plus a templated out-of-scope class: the template generator is asked only for the latter."""
    from framework.stages.generate import rows_wanted

    path = small_recipe(tmp_path, ["card lost", "top up"], "", "")
    text = path.read_text(encoding="utf-8").replace("  - override /generate: null\n", "")
    text = text.replace("generate:\n  generators: {}", "generate:\n  samples_per_intent: 20")
    text += 'intents:\n  Ambiguous: {out_of_scope: true, templates: ["help {{ x }}"], slots: {x: [me, now]}}\n'
    path.write_text(text, encoding="utf-8")
    recipe = load_recipe(path)
    assert rows_wanted(recipe) == {"templates": {"Ambiguous": 20, "card_lost": 0, "top_up": 0}}


def test_an_intent_named_by_a_number_is_named_as_such(tmp_path: Path) -> None:
    path = small_recipe(tmp_path, ["a", "b"], "intents:\n  3: {}\n  yes: {}")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    messages = [issue.message for issue in caught.value.issues]
    assert any(m.startswith("has the key 3, which is not a name") and "intents_from" in m for m in messages)
    assert any("boolean True" in m and "('yes', 'on' or 'true')" in m for m in messages)


def test_a_source_that_is_not_in_the_recipe_is_named(recipe_file: Path) -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe_file, "intents_from=sources.trian")
    assert caught.value.issues[0].path == "intents_from"
    assert "sources.trian, which the recipe does not have; its sources: sources.train, sources.test" in str(
        caught.value
    )


def test_a_free_text_column_is_refused_as_labels(recipe_file: Path) -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe_file, "sources.train.label_column=text")
    assert caught.value.issues[0].path == "intents_from"
    assert "1,500 distinct values" in str(caught.value) and "sources.train.label_column" in str(caught.value)


def test_validate_shows_the_mapping(recipe_file: Path, tmp_path: Path) -> None:
    result = run_cli("validate", f"recipe={recipe_file}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "intents from sources.train: 150 labels, 149 intents added" in result.stdout
    assert "'reverted card payment?' -> reverted_card_payment" in result.stdout
    assert "150 intents (rows from 2 sources)" in result.stdout


def test_run_and_predict_return_the_data_labels(recipe_file: Path, tmp_path: Path, tiny_encoder: Path) -> None:
    outputs = tmp_path / "outputs"
    overrides = [o for o in tiny_model_overrides(tiny_encoder) if not o.startswith("generate.")]
    result = run_cli(
        "run",
        f"recipe={recipe_file}",
        f"paths.outputs={outputs}",
        *overrides,
        "calibrate.max_ece=null",
        "export.max_accuracy_drop=1.0",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    bundle = next(outputs.glob("runs/labelled/*/bundle"))
    names = list(load_recipe(recipe_file).config.intents)
    shipped = read_json(bundle / "labels.json")["labels"]
    assert len(shipped) == 150 and set(shipped) == set(LABELS)
    assert shipped[names.index("reverted_card_payment")] == "reverted card payment?"  # logit order kept
    manifest = read_json(bundle / "bundle.json")
    assert manifest["intent_names"]["reverted card payment?"] == "reverted_card_payment"
    assert (
        "- `reverted card payment?` (intent `reverted_card_payment`): A card payment that came back."
        in (bundle / "README.md").read_text()
    )
    assert set(read_json(bundle / "calibration.json")["thresholds"]) <= set(LABELS)

    texts = "\n".join(f"{label} please quick question" for label in ODD_LABELS) + "\n"
    result = run_cli("predict", str(bundle), "--top-k", "150", cwd=tmp_path, stdin=texts)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == len(ODD_LABELS)
    for row in rows:
        returned = {row["predicted"]} | {label for label, _ in row["runners_up"]}
        assert returned == set(LABELS)  # every label, as the CSV spells it; no made-up name
        assert row["intent"] in set(LABELS) | {None}
