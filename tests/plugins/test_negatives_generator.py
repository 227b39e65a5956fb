"""Off-topic negatives for the out-of-scope intent: other shipped packs, the recipe's slots as nonsense, and the
llm generator's prompt built from the in-scope intents' descriptions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from framework.config.schema import IntentSpec
from framework.data.rows import normalize_text
from framework.errors import StageError
from framework.plugin_api import GenerateContext
from framework.plugins.generators.llm import LLMParams, build_records
from framework.plugins.generators.negatives import NegativesParams, negatives, packs_dir, shipped_packs
from framework.stages.generate import rows_wanted
from tests.conftest import TINY, load_recipe

INTENTS = {
    "FindCallers": IntentSpec(description="who calls a function", templates=["who calls {{ symbol }}"]),
    "TextSearch": IntentSpec(description="grep the code for a phrase", templates=["grep for {{ phrase }}"]),
    "Ambiguous": IntentSpec(description="vague requests", out_of_scope=True, templates=["help"]),
}
SLOTS = {
    "FindCallers": {"symbol": ["parse_config", "load_index", "Router.route", "main loop"]},
    "TextSearch": {"phrase": ["TODO", "retry backoff", "error code 42"]},
    "Ambiguous": {},
}


def make_ctx(tmp_path: Path, counts: dict[str, int], **overrides: Any) -> GenerateContext:
    values: dict[str, Any] = {
        "name": "negatives",
        "plugin_id": "builtin.negatives.v1",
        "intents": INTENTS,
        "slots": SLOTS,
        "counts": counts,
        "seed": 7,
        "work_dir": tmp_path,
    }
    return GenerateContext(**{**values, **overrides})


def test_rows_come_from_other_packs_and_recombined_slots_in_their_shares(tmp_path: Path) -> None:
    rows = list(negatives(NegativesParams(), make_ctx(tmp_path, {"Ambiguous": 100})))
    assert len(rows) == 100 and {row["intent"] for row in rows} == {"Ambiguous"}
    kinds = Counter(row["provenance"]["kind"] for row in rows)
    assert kinds == {"packs": 70, "slots": 30}
    assert len({normalize_text(row["text"]) for row in rows}) == 100
    packs = {row["provenance"]["pack_intent"].split("/")[0] for row in rows if row["provenance"]["kind"] == "packs"}
    assert "support_desk" in packs and packs <= set(shipped_packs())
    vocabulary = {
        word for slots in SLOTS.values() for values in slots.values() for value in values for word in value.split()
    }
    for row in rows:
        if row["provenance"]["kind"] == "slots":  # the recipe's own words, with no request behind them
            assert set(row["text"].split()) <= vocabulary and 2 <= len(row["provenance"]["slots"]) <= 4
    again = list(negatives(NegativesParams(), make_ctx(tmp_path, {"Ambiguous": 100})))
    assert json.dumps(again, sort_keys=True) == json.dumps(rows, sort_keys=True)  # seeded: the same rows


def test_a_pack_that_shares_an_intent_with_the_recipe_is_its_own_and_skipped(tmp_path: Path) -> None:
    own = yaml.safe_load((packs_dir() / "support_desk.yaml").read_text())["intents"]
    intents = {name: IntentSpec(description="d", out_of_scope=name == "OutOfScope") for name in own}
    ctx = make_ctx(tmp_path, {"OutOfScope": 40}, intents=intents, slots={})
    rows = list(negatives(NegativesParams(kinds={"packs": 1.0}), ctx))
    assert len(rows) == 40 and all(row["provenance"]["pack_intent"].startswith("code_search/") for row in rows)
    chosen = list(negatives(NegativesParams(kinds={"packs": 1.0}, packs=["support_desk"]), ctx))
    assert chosen and all(row["provenance"]["pack_intent"].startswith("support_desk/") for row in chosen)
    warnings: list[str] = []
    mine = make_ctx(tmp_path, {"Ambiguous": 5}, warn=warnings.append, intents={**INTENTS, **intents})
    assert list(negatives(NegativesParams(kinds={"packs": 1.0}), mine)) == []  # every pack with templates is its own
    assert any("no other shipped intent pack has templates" in warning for warning in warnings)


def test_params_name_what_is_wrong() -> None:
    with pytest.raises(ValidationError, match="no shipped intent pack named nope"):
        NegativesParams(packs=["nope"])
    with pytest.raises(ValidationError, match="one of them a share > 0"):
        NegativesParams(kinds={"packs": 0.0, "slots": 0.0})
    assert NegativesParams(packs=["support_desk"]).files() == [str(packs_dir() / "support_desk.yaml")]


def test_rows_for_an_in_scope_intent_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="not out of scope"):
        list(negatives(NegativesParams(), make_ctx(tmp_path, {"FindCallers": 5})))


def test_only_the_out_of_scope_intent_gets_a_share_of_negatives() -> None:
    recipe = load_recipe(TINY, "+generate.generators.negatives={plugin: negatives, share: 0.5}")
    wanted = rows_wanted(recipe)
    fallback = recipe.config.fallback_intent
    total = recipe.config.generate.samples_per_intent
    for intent in recipe.config.intents:
        if intent == fallback:
            assert wanted["negatives"][intent] == round(total / 3) and sum(w[intent] for w in wanted.values()) == total
        else:  # all of an in-scope intent's rows come from the templates
            assert wanted["negatives"][intent] == 0 and wanted["templates"][intent] == total


def test_the_llm_generator_writes_negatives_from_the_in_scope_descriptions(tmp_path: Path) -> None:
    params = LLMParams(models=[{"model": "openai/test", "api_base": "http://127.0.0.1:9"}], negatives=True)
    records = build_records(params, make_ctx(tmp_path, {"FindCallers": 5, "TextSearch": 5, "Ambiguous": 5}))
    prompts = {record.payload.intent: record.payload.prompt for record in records}
    assert "none of these intents covers" in prompts["Ambiguous"]
    assert "- FindCallers: who calls a function" in prompts["Ambiguous"] and "- Ambiguous" not in prompts["Ambiguous"]
    assert "none of these intents covers" not in prompts["FindCallers"]
    plain = LLMParams(models=[{"model": "openai/test", "api_base": "http://127.0.0.1:9"}])
    unchanged = build_records(plain, make_ctx(tmp_path, {"Ambiguous": 5}))
    assert "none of these intents covers" not in unchanged[0].payload.prompt


def test_a_recipe_without_an_out_of_scope_intent_is_told_so() -> None:
    from framework.errors import RecipeError

    with pytest.raises(RecipeError) as caught:
        load_recipe(TINY, "+generate.generators.negatives={plugin: negatives}", "intents.Ambiguous.out_of_scope=false")
    [issue] = [issue for issue in caught.value.issues if "negatives" in issue.path]
    assert issue.path == "generate.generators.negatives.plugin" and "no intent sets out_of_scope" in issue.message
