"""The ``quality`` validation layer, including the near-duplicate join against a brute-force reference."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from framework.config.schema import IntentSpec
from framework.data.rows import tokens
from framework.plugin_api import Rejection, ValidateContext
from framework.plugins.validators._near_dup import NearDupIndex
from framework.plugins.validators.quality import Params, quality
from framework.registry import validators

INTENTS = {
    "Weather": IntentSpec(description="Ask about the weather forecast", examples=["Will it rain tomorrow?"]),
    "Music": IntentSpec(description="Play some music", examples=["Play jazz in the kitchen"], min_words=2),
    "Search": IntentSpec(description="Search files", min_words=5),
}
NO_NEAR_DUPS = {"enabled": False}


def make_row(text: str, intent: str = "Weather", row_id: str = "r1", *, synthetic: bool = True, **prov: object) -> dict:
    provenance = {"generator": "gen", "plugin": "builtin.llm.v1", "synthetic": synthetic, **prov}
    return {"id": row_id, "text": text, "intent": intent, "source": "test", "provenance": provenance}


def run(rows: list[dict], **params: object) -> list[Rejection]:
    progress: list[int] = []
    ctx = ValidateContext(layer="quality", intents=INTENTS, seed=0, advance=progress.append)
    rejections = list(quality(rows, Params.model_validate(params), ctx))
    assert sum(progress) == len(rows)
    assert len({r.row_id for r in rejections}) == len(rejections)
    return rejections


def rules_of(rows: list[dict], **params: object) -> dict[str, str]:
    return {r.row_id: r.rule for r in run(rows, **params)}


def test_registered_under_its_name() -> None:
    spec = validators.resolve("quality")
    assert spec.func is quality and spec.params is Params


def test_min_words_layer_default_and_intent_override() -> None:
    rows = [
        make_row("is it sunny", row_id="w3"),
        make_row("is it sunny today", row_id="w4"),
        make_row("play jazz", intent="Music", row_id="m2"),
        make_row("find my tax files", intent="Search", row_id="s4"),
    ]
    rejections = run(rows, min_words=4)
    assert {r.row_id: r.rule for r in rejections} == {"w3": "min_words", "s4": "min_words"}
    reasons = {r.row_id: r.reason for r in rejections}
    assert reasons["w3"].startswith("3 words, fewer than min_words=4")
    assert reasons["s4"].startswith("4 words, fewer than min_words=5") and "intent" in reasons["s4"]


def test_without_a_minimum_only_intents_with_their_own_limit_apply() -> None:
    rows = [make_row("rain", row_id="w1"), make_row("jazz", intent="Music", row_id="m1")]
    assert rules_of(rows) == {"m1": "min_words"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("will it RAIN tomorrow", "example"),
        ("Play jazz, in the kitchen!", "example"),
        ("ask about the weather forecast", "description"),
    ],
)
def test_parroting_of_recipe_text(text: str, why: str) -> None:
    [rejection] = run([make_row(text)], **{"near_duplicates": NO_NEAR_DUPS})
    assert rejection.rule == "parroting"
    assert why in rejection.reason


def test_parroting_only_applies_to_synthetic_rows_and_can_be_disabled() -> None:
    human = make_row("will it rain tomorrow", synthetic=False)
    assert run([human]) == []
    assert run([make_row("will it rain tomorrow")], parroting=False) == []


def test_parroting_of_the_prompt() -> None:
    prompt = "Write questions like: Is it going to snow in Oslo? Keep them short."
    rows = [
        make_row("is it going to snow", row_id="copied", prompt=prompt),
        make_row("going to snow", row_id="three_words", prompt=prompt),
        make_row("is it going to snowfall", row_id="partial_word", prompt=prompt),
        make_row("will it snow in Oslo tonight", row_id="fresh", prompt=prompt),
        make_row("is it going to snow", row_id="no_prompt_string", prompt=["is it going to snow"]),
    ]
    rejections = run(rows, **{"near_duplicates": NO_NEAR_DUPS})
    assert [(r.row_id, r.rule) for r in rejections] == [("copied", "parroting")]
    assert "5 words from its prompt" in rejections[0].reason


def test_repetitive() -> None:
    rows = [
        make_row("yes yes yes please", row_id="three_of_four"),
        make_row("no no maybe so", row_id="half"),
        make_row("yes yes yes", row_id="too_short_to_judge"),
    ]
    rejections = run(rows)
    assert [(r.row_id, r.rule) for r in rejections] == [("three_of_four", "repetitive")]
    assert "'yes' is 3 of 4 words" in rejections[0].reason
    assert rules_of(rows, max_token_repeat=0.4) == {"three_of_four": "repetitive", "half": "repetitive"}


def test_identical_token_sets_are_near_duplicates_first_row_kept() -> None:
    rows = [
        make_row("is it cold in Paris", row_id="first"),
        make_row("In Paris, is it cold?", row_id="reordered"),
        make_row("is it cold in Rome", row_id="other"),
    ]
    [rejection] = run(rows)
    assert (rejection.row_id, rejection.rule) == ("reordered", "near_duplicate")
    assert "near-duplicate of row first (jaccard 1.00 >= 0.90" in rejection.reason


def test_threshold_is_inclusive() -> None:
    base = "one two three four five six seven eight nine"
    rows = [make_row(base, row_id="a"), make_row(base + " ten", row_id="b")]  # jaccard 9/10
    assert rules_of(rows) == {"b": "near_duplicate"}
    assert rules_of(rows, near_duplicates={"threshold": 0.91}) == {}


def test_scope_intent_versus_all() -> None:
    rows = [make_row("play the news please", row_id="a"), make_row("play the news please", "Music", row_id="b")]
    assert rules_of(rows) == {}
    assert rules_of(rows, near_duplicates={"scope": "all"}) == {"b": "near_duplicate"}
    assert rules_of(rows, near_duplicates={"scope": "all", "enabled": False}) == {}


def test_rows_rejected_by_an_earlier_rule_are_not_kept_for_near_duplicates() -> None:
    rows = [make_row("will it rain tomorrow", row_id="parrot"), make_row("will it rain tomorrow", row_id="human")]
    rows[1]["provenance"]["synthetic"] = False
    assert rules_of(rows) == {"parrot": "parroting"}


def test_first_rule_wins() -> None:
    rows = [make_row("rain rain rain rain", row_id="a"), make_row("rain rain rain rain", row_id="b")]
    assert rules_of(rows, min_words=5) == {"a": "min_words", "b": "min_words"}
    assert rules_of(rows) == {"a": "repetitive", "b": "repetitive"}


def brute_force(rows: list[dict], threshold: float, scope: str) -> dict[str, str]:
    """Row id -> id of the kept row it duplicates (best Jaccard, earliest on ties)."""
    kept: list[tuple[str, str, frozenset[str]]] = []
    rejected: dict[str, str] = {}
    for row in rows:
        key = row["intent"] if scope == "intent" else None
        words = frozenset(tokens(row["text"]))
        scores = [(len(words & s) / len(words | s), -i) for i, (k, _, s) in enumerate(kept) if k == key]
        best = max((score for score in scores if score[0] >= threshold), default=None)
        if best is not None:
            rejected[row["id"]] = kept[-best[1]][1]
        else:
            kept.append((key, row["id"], words))
    return rejected


def random_rows(seed: int, count: int) -> list[dict]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(40)]
    bases = [rng.sample(vocab, rng.randint(4, 12)) for _ in range(15)]
    rows = []
    for n in range(count):
        words = list(rng.choice(bases))
        for _ in range(rng.randint(0, 3)):
            edit = rng.random()
            if edit < 0.4 and len(words) > 4:
                words.pop(rng.randrange(len(words)))
            elif edit < 0.8 and len(words) < 12:
                words.insert(rng.randrange(len(words) + 1), rng.choice(vocab))
            else:
                words[rng.randrange(len(words))] = rng.choice(vocab)
        rows.append(make_row(" ".join(words), rng.choice(["Weather", "Music"]), f"r{n}", synthetic=False))
    return rows


@pytest.mark.parametrize("scope", ["intent", "all"])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.75, 0.8, 0.9, 1.0])
def test_near_duplicates_match_brute_force(threshold: float, scope: str) -> None:
    rows = random_rows(seed=7, count=400)
    expected = brute_force(rows, threshold, scope)
    rejections = run(rows, max_token_repeat=1.0, near_duplicates={"threshold": threshold, "scope": scope})
    assert all(r.rule == "near_duplicate" for r in rejections)
    got = {r.row_id: r.reason.split("near-duplicate of row ")[1].split(" ")[0] for r in rejections}
    assert got == expected
    assert 0 < len(expected) < len(rows)


def test_index_skips_rows_without_tokens_and_ranks_unseen_tokens() -> None:
    index = NearDupIndex(0.5, corpus=[["a", "b"]])
    assert index.offer("empty", []) is None
    assert index.offer("again", []) is None
    assert index.offer("x", ["new", "words", "here"]) is None
    match = index.offer("y", ["new", "words", "there"])
    assert match is not None and match.kept_id == "x" and match.jaccard == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("params", "loc", "words"),
    [
        ({"near_duplicates": {"threshold": 0}}, ("near_duplicates", "threshold"), "greater than 0"),
        ({"near_duplicates": {"threshold": 1.5}}, ("near_duplicates", "threshold"), "less than or equal to 1"),
        ({"near_duplicates": {"scope": "everything"}}, ("near_duplicates", "scope"), "'intent' or 'all'"),
        ({"near_duplicates": {"method": "minhash"}}, ("near_duplicates", "method"), "Extra inputs are not permitted"),
        ({"min_words": 0}, ("min_words",), "greater than or equal to 1"),
        ({"max_token_repeat": 0}, ("max_token_repeat",), "greater than 0"),
        ({"parrot": True}, ("parrot",), "Extra inputs are not permitted"),
    ],
)
def test_params_validation(params: dict, loc: tuple[str, ...], words: str) -> None:
    """Each bad value fails on its own field, for the stated reason (and on nothing else)."""
    with pytest.raises(ValidationError) as caught:
        Params.model_validate(params)
    [error] = caught.value.errors()
    assert error["loc"] == loc and words in error["msg"]


def test_repetitive_ignores_one_letter_tokens_from_regexes() -> None:
    intents = {"TextSearch": IntentSpec(templates=["x"])}
    rows = [
        {
            "id": "a",
            "text": r"find lines matching \d+\.\d+\.\d+\.\d+",
            "intent": "TextSearch",
            "source": "t",
            "provenance": {"generator": "t", "plugin": "p", "synthetic": True},
        },
        {
            "id": "b",
            "text": "go go go go home",
            "intent": "TextSearch",
            "source": "t",
            "provenance": {"generator": "t", "plugin": "p", "synthetic": True},
        },
    ]
    found = {r.row_id: r.rule for r in quality(rows, Params(), ValidateContext("quality", intents, 0))}
    assert found == {"b": "repetitive"}
