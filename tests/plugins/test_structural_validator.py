"""The ``structural`` validation layer."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from framework.config.schema import IntentSpec
from framework.plugin_api import Rejection, ValidateContext
from framework.plugins.validators.structural import Params, structural
from framework.registry import validators

INTENTS = {"Greet": IntentSpec(description="say hello"), "Bye": IntentSpec(description="say goodbye")}


def make_row(text: object = "hello there", intent: str = "Greet", row_id: str = "r1", **extra: object) -> dict:
    row = {
        "id": row_id,
        "text": text,
        "intent": intent,
        "source": "test",
        "provenance": {"generator": "gen", "plugin": "builtin.template.v1", "synthetic": True},
    }
    row.update(extra)
    return row


def run(rows: list[dict], **params: object) -> list[Rejection]:
    progress: list[int] = []
    ctx = ValidateContext(layer="structure", intents=INTENTS, seed=0, advance=progress.append)
    rejections = list(structural(rows, Params(**params), ctx))
    assert sum(progress) == len(rows)
    return rejections


def only_rule(row: dict, **params: object) -> str | None:
    rejections = run([row], **params)
    assert len(rejections) <= 1
    return rejections[0].rule if rejections else None


def test_registered_under_its_name() -> None:
    spec = validators.resolve("structural")
    assert spec.func is structural
    assert spec.params is Params


def test_clean_rows_pass() -> None:
    rows = [make_row("hello there"), make_row("bye now", intent="Bye", row_id="r2"), make_row("tab\tok", row_id="r3")]
    assert run(rows) == []


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"provenance": {"generator": "gen", "plugin": "p"}}, "provenance.synthetic"),
        ({"text": 42}, "text"),
        ({"id": ""}, "id"),
        ({"split": "holdout"}, "split"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_schema_violations_name_the_location(change: dict, location: str) -> None:
    row = {**make_row(), **change}
    [rejection] = run([row])
    assert (rejection.rule, rejection.row_id) == ("schema", row["id"])
    assert location in rejection.reason


def test_schema_reason_is_compact_when_many_fields_are_wrong() -> None:
    [rejection] = run([{"id": "x", "extra1": 1, "extra2": 2, "extra3": 3, "extra4": 4}])
    assert rejection.rule == "schema"
    assert "more" in rejection.reason and rejection.reason.count("(") <= 4


@pytest.mark.parametrize("text", ["", "   ", "\t \t"])
def test_empty_text(text: str) -> None:
    assert only_rule(make_row(text)) == "empty"


def test_length_limits_apply_to_stripped_text() -> None:
    assert only_rule(make_row("a")) == "too_short"
    assert only_rule(make_row("  ab  ")) is None
    assert only_rule(make_row("x" * 512)) is None
    [rejection] = run([make_row("x" * 513)])
    assert rejection.rule == "too_long"
    assert rejection.reason == "513 chars, more than max_chars=512"
    assert only_rule(make_row("abcd"), min_chars=5) == "too_short"
    assert only_rule(make_row("abcdef"), max_chars=5) == "too_long"


def test_unknown_intent() -> None:
    [rejection] = run([make_row(intent="Order")])
    assert rejection.rule == "unknown_intent"
    assert "'Order'" in rejection.reason and "Bye, Greet" in rejection.reason


@pytest.mark.parametrize("marker", ["{{", "}}", "{%", "%}"])
def test_unrendered_template(marker: str) -> None:
    [rejection] = run([make_row(f"book a flight to {marker} city")])
    assert rejection.rule == "unrendered_template"
    assert repr(marker) in rejection.reason


def test_single_braces_and_percent_are_fine() -> None:
    assert only_rule(make_row("set {x} to 50 % please")) is None


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\x1b", "\x7f", "\x85"])
def test_control_characters(char: str) -> None:
    [rejection] = run([make_row(f"hello{char}there")])
    assert rejection.rule == "control_chars"
    assert f"U+{ord(char):04X} at index 5" in rejection.reason


@pytest.mark.parametrize("char", ["\ud800", "\udfff", "\ufffe", "\ufdd0", "\U0010ffff"])
def test_invalid_unicode(char: str) -> None:
    [rejection] = run([make_row(f"hello {char}")])
    assert rejection.rule == "invalid_unicode"
    assert f"U+{ord(char):04X}" in rejection.reason


def test_ordinary_unicode_is_fine() -> None:
    assert run([make_row("café ☕ naïve 😀 日本語 \u200b")]) == []


def test_first_rule_wins_and_only_rejected_rows_are_reported() -> None:
    rows = [make_row("   ", intent="Nope", row_id="a"), make_row("{{ x }}\n", row_id="b"), make_row(row_id="c")]
    rejections = run(rows)
    assert [(r.row_id, r.rule) for r in rejections] == [("a", "empty"), ("b", "unrendered_template")]


def test_params_cross_check_and_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="min_chars"):
        Params(min_chars=10, max_chars=5)
    with pytest.raises(ValidationError, match="extra"):
        Params.model_validate({"allowed_control_chars": "\n"})
    with pytest.raises(ValidationError):
        Params(min_chars=0)
    assert Params(min_chars=5, max_chars=5).max_chars == 5
