"""The ``rules`` validation layer (deny / require rules from the recipe)."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from framework.config.schema import IntentSpec
from framework.plugin_api import Rejection, ValidateContext
from framework.plugins.validators.rules import Params, Rule, rules
from framework.registry import validators

INTENTS = {"Shell": IntentSpec(), "Weather": IntentSpec()}
DESTRUCTIVE = {"name": "destructive_shell", "pattern": r"rm\s+-rf", "reason": "never teach destructive commands"}
WEATHERISH = {"name": "weatherish", "contains": ["Weather", "forecast", "rain"], "intents": ["Weather"]}


def make_row(text: str, intent: str = "Shell", row_id: str = "r1") -> dict:
    provenance = {"generator": "gen", "plugin": "builtin.template.v1", "synthetic": True}
    return {"id": row_id, "text": text, "intent": intent, "source": "test", "provenance": provenance}


def run(rows: list[dict], warnings: list[str] | None = None, **params: object) -> list[Rejection]:
    progress: list[int] = []
    sink = warnings if warnings is not None else []
    ctx = ValidateContext(layer="safety", intents=INTENTS, seed=0, advance=progress.append, warn=sink.append)
    rejections = list(rules(rows, Params.model_validate(params), ctx))
    assert sum(progress) == len(rows)
    return rejections


def test_registered_under_its_name() -> None:
    spec = validators.resolve("rules")
    assert spec.func is rules and spec.params is Params


def test_no_rules_accepts_everything() -> None:
    assert run([make_row("rm -rf /"), make_row("anything", "Weather", "r2")]) == []


def test_deny_pattern_is_case_insensitive_and_reports_the_match() -> None:
    rows = [make_row("please RM  -RF the build dir", row_id="bad"), make_row("remove the file", row_id="ok")]
    [rejection] = run(rows, deny=[DESTRUCTIVE])
    assert (rejection.row_id, rejection.rule) == ("bad", "deny:destructive_shell")
    assert rejection.reason == "matches deny rule 'destructive_shell' ('RM  -RF'): never teach destructive commands"


def test_deny_contains_is_case_insensitive_substring() -> None:
    rule = {"name": "secrets", "contains": ["password", "API key"]}
    rows = [make_row("show my PASSWORDS", row_id="a"), make_row("where is the api KEY", row_id="b"), make_row("ls")]
    rejections = run(rows, deny=[rule])
    assert [(r.row_id, r.rule) for r in rejections] == [("a", "deny:secrets"), ("b", "deny:secrets")]
    assert "'password'" in rejections[0].reason and "'API key'" in rejections[1].reason
    assert rejections[0].reason == "matches deny rule 'secrets' ('password')"


def test_deny_scoped_to_intents() -> None:
    scoped = {**DESTRUCTIVE, "intents": ["Weather"]}
    rows = [make_row("rm -rf /tmp", "Shell", "shell"), make_row("rm -rf the clouds", "Weather", "weather")]
    assert [r.row_id for r in run(rows, deny=[scoped])] == ["weather"]


def test_require_rejects_rows_in_scope_that_do_not_match() -> None:
    rows = [
        make_row("will it rain", "Weather", "rainy"),
        make_row("is it sunny", "Weather", "sunny"),
        make_row("is it sunny", "Shell", "out_of_scope"),
    ]
    [rejection] = run(rows, require=[{**WEATHERISH, "reason": "weather rows must mention weather"}])
    assert (rejection.row_id, rejection.rule) == ("sunny", "require:weatherish")
    assert "contains any of ['Weather', 'forecast', 'rain']" in rejection.reason
    assert rejection.reason.endswith(": weather rows must mention weather")


def test_require_with_pattern_and_no_scope() -> None:
    rule = {"name": "has_verb", "pattern": r"\b(show|list|find)\b"}
    rows = [make_row("Show the logs", row_id="a"), make_row("logs", "Weather", "b"), make_row("showcase", row_id="c")]
    rejections = run(rows, require=[rule])
    assert [(r.row_id, r.rule) for r in rejections] == [("b", "require:has_verb"), ("c", "require:has_verb")]
    assert "pattern '\\\\b(show|list|find)\\\\b'" in rejections[0].reason


def test_deny_rules_fire_before_require_rules_in_written_order() -> None:
    deny = [{"name": "first", "contains": ["rm"]}, DESTRUCTIVE]
    require = [{"name": "needs_path", "contains": ["/"]}]
    rows = [make_row("rm -rf build", row_id="both"), make_row("ls build", row_id="req")]
    rejections = run(rows, deny=deny, require=require)
    assert [(r.row_id, r.rule) for r in rejections] == [("both", "deny:first"), ("req", "require:needs_path")]


def test_rules_naming_unknown_intents_warn() -> None:
    warnings: list[str] = []
    run([make_row("ls")], warnings, deny=[{**DESTRUCTIVE, "intents": ["Shel"]}])
    assert warnings == ["deny rule 'destructive_shell' names unknown intents ['Shel']"]


def test_bad_regex_is_a_validation_error_naming_the_rule() -> None:
    with pytest.raises(ValidationError) as info:
        Params.model_validate({"deny": [{"name": "broken_group", "pattern": "(unclosed"}]})
    message = str(info.value)
    assert "broken_group" in message and "invalid regex" in message
    assert info.value.errors()[0]["loc"] == ("deny", 0, "pattern")


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ({"name": "both", "pattern": "x", "contains": ["y"]}, "exactly one"),
        ({"name": "neither"}, "exactly one"),
        ({"name": "empty_list", "contains": []}, "exactly one"),
        ({"name": "empty_needle", "contains": ["ok", ""]}, "empty string"),
        ({"name": "long", "pattern": "a" * 501}, "at most 500"),
        ({"pattern": "x"}, "name"),
        ({"name": "", "pattern": "x"}, "name"),
        ({"name": "typo", "pattern": "x", "intent": ["Shell"]}, "intent"),
    ],
)
def test_rule_validation(rule: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        Rule.model_validate(rule)


def test_rule_names_must_be_unique_per_list() -> None:
    with pytest.raises(ValidationError, match="repeated"):
        Params.model_validate({"deny": [DESTRUCTIVE, DESTRUCTIVE]})
    params = Params.model_validate({"deny": [DESTRUCTIVE], "require": [{**DESTRUCTIVE, "contains": []}]})
    assert params.deny[0].name == params.require[0].name
    with pytest.raises(ValidationError, match="extra"):
        Params.model_validate({"allow": []})


def test_longest_allowed_pattern_compiles() -> None:
    assert Rule(name="long", pattern="a" * 500).find("a" * 600) is not None


@pytest.mark.parametrize(
    ("pattern", "detail"),
    [(r"(a)\1", "invalid escape sequence"), (r"foo(?=bar)", "(?="), (r"(?<!x)y", "(?<!"), (r"(?P<w>a)(?P=w)", "")],
    ids=["backreference", "lookahead", "lookbehind", "named_backreference"],
)
def test_patterns_re2_cannot_run_are_refused_naming_the_rule_and_why(pattern: str, detail: str) -> None:
    with pytest.raises(ValidationError) as info:
        Params.model_validate({"deny": [{"name": "needs_backtracking", "pattern": pattern}]})
    message = str(info.value)
    assert "rule 'needs_backtracking'" in message and "cannot run on RE2" in message and detail in message
    assert "no backreferences or lookaround" in message
    assert info.value.errors()[0]["loc"] == ("deny", 0, "pattern")


def test_catastrophic_pattern_runs_in_linear_time() -> None:
    rule = {"name": "words", "pattern": r"^(\w+\s?)*$"}
    rows = [make_row("a" * 5000 + "!", row_id="long"), make_row("just words here", row_id="words")]
    started = time.monotonic()
    rejections = run(rows, deny=[rule])
    assert time.monotonic() - started < 1.0
    assert [r.row_id for r in rejections] == ["words"]


def test_re2_search_is_case_insensitive_beyond_ascii() -> None:
    rule = Rule(name="cafe", pattern=r"\bcafé\s+au\b")
    assert rule.find("a CAFÉ  AU lait") == "'CAFÉ  AU'"
    assert rule.find("a cafe au lait") is None
