"""Validation layer ``rules``: domain and safety rules written in the recipe.

Example::

    validate:
      layers:
        safety:
          plugin: rules
          deny:
            - name: destructive_shell
              pattern: 'rm\\s+-rf'
              reason: never teach the router destructive commands
          require:
            - name: mentions_weather
              contains: [weather, forecast, rain]
              intents: [GetWeather]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import re2
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from framework.plugin_api import Rejection, ValidateContext
from framework.registry import PluginParams, validators

from ._common import Hit, clip, collect_rejections, row_text


def compile_rule_regex(pattern: str, rule: str) -> Any:
    """``pattern`` compiled case-insensitively with RE2, or a ``ValueError`` naming the rule and why.

    Python's ``re`` checks the syntax first so a typo gets its familiar message; RE2 then refuses what it
    cannot run in linear time (backreferences, lookaround).
    """
    try:
        re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"rule {rule!r}: invalid regex {pattern!r}: {exc}") from None
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"rule {rule!r}: regex {pattern!r} cannot run on RE2 ({detail}); rules use RE2 so that no rule can hang "
            "on catastrophic backtracking, and RE2 has no backreferences or lookaround: rewrite the pattern "
            "without them, or use 'contains'"
        ) from None


class Rule(PluginParams):
    """One rule: a regex or a list of substrings, optionally limited to some intents.

    Attributes:
        name: Identifies the rule in rejections (``deny:<name>`` / ``require:<name>``).
        pattern: Regex in RE2 syntax (Python's, without backreferences or lookaround), searched
            case-insensitively (at most 500 characters). RE2 runs in time linear in the text, so no rule
            can hang on catastrophic backtracking.
        contains: Case-insensitive substrings; the rule matches when any of them occurs.
        intents: Intents the rule applies to; ``None`` means every intent.
        reason: Why the rule exists; quoted in every rejection.
    """

    name: str = Field(min_length=1)
    pattern: str | None = Field(default=None, max_length=500)
    contains: list[str] = Field(default_factory=list)
    intents: list[str] | None = None
    reason: str = ""
    _regex: Any = PrivateAttr(default=None)  # an re2 pattern
    _needles: list[str] = PrivateAttr(default_factory=list)

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            compile_rule_regex(value, info.data.get("name", "?"))
        return value

    @field_validator("contains")
    @classmethod
    def _no_empty_substring(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if any(not needle for needle in value):
            name = info.data.get("name", "?")
            raise ValueError(f"rule {name!r}: 'contains' has an empty string, which matches everything")
        return value

    @model_validator(mode="after")
    def _exactly_one_matcher(self) -> Rule:
        if (self.pattern is None) == (not self.contains):
            raise ValueError(f"rule {self.name!r}: set exactly one of 'pattern' or a non-empty 'contains'")
        self._regex = compile_rule_regex(self.pattern, self.name) if self.pattern is not None else None
        self._needles = [needle.casefold() for needle in self.contains]
        return self

    def applies_to(self, intent: object) -> bool:
        """Whether rows of ``intent`` are in the rule's scope."""
        return self.intents is None or intent in self.intents

    def find(self, text: str) -> str | None:
        """What the rule matches in ``text`` (quoted), or ``None``."""
        if self._regex is not None:
            match = self._regex.search(text)
            return clip(match.group()) if match is not None else None
        folded = text.casefold()
        hits = (needle for needle, low in zip(self.contains, self._needles, strict=True) if low in folded)
        return next((repr(needle) for needle in hits), None)

    def describe(self) -> str:
        """The matcher in words, e.g. ``pattern 'rm\\s+-rf'`` or ``contains any of ['a', 'b']``."""
        return f"pattern {self.pattern!r}" if self.pattern is not None else f"contains any of {self.contains!r}"


class Params(PluginParams):
    """Params of the ``rules`` layer.

    Attributes:
        deny: Rules that reject the rows they match (rule ``deny:<name>``).
        require: Rules that reject the rows in their scope they do not match (rule ``require:<name>``).
    """

    deny: list[Rule] = Field(default_factory=list)
    require: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Params:
        for kind, rules in (("deny", self.deny), ("require", self.require)):
            names = [rule.name for rule in rules]
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"{kind} rule names must be unique, repeated: {repeated}")
        return self


def _suffix(rule: Rule) -> str:
    return f": {rule.reason}" if rule.reason else ""


def _check(row: dict, params: Params) -> Hit | None:
    text, intent = row_text(row), row.get("intent")
    for rule in params.deny:
        if rule.applies_to(intent) and (found := rule.find(text)) is not None:
            return f"deny:{rule.name}", f"matches deny rule {rule.name!r} ({found}){_suffix(rule)}"
    for rule in params.require:
        if rule.applies_to(intent) and rule.find(text) is None:
            return (
                f"require:{rule.name}",
                f"does not match require rule {rule.name!r} ({rule.describe()}){_suffix(rule)}",
            )
    return None


def _warn_unknown_intents(params: Params, ctx: ValidateContext) -> None:
    for kind, rules in (("deny", params.deny), ("require", params.require)):
        for rule in rules:
            unknown = sorted(set(rule.intents or ()) - set(ctx.intents))
            if unknown:
                ctx.warn(f"{kind} rule {rule.name!r} names unknown intents {unknown}")


@validators.register("rules", params=Params)
def rules(rows: Sequence[dict], params: Params, ctx: ValidateContext) -> Iterable[Rejection]:
    """Reject rows that match a deny rule or miss a require rule (regexes or substrings from the recipe).

    Deny rules are checked first, then require rules, each in the order written; the first that fires
    names the rejection (``deny:<name>`` or ``require:<name>``).

    Args:
        rows: Rows accepted by earlier layers.
        params: ``deny`` and ``require`` lists of ``Rule`` (``name``, ``pattern`` or ``contains``,
            ``intents``, ``reason``).
        ctx: The layer's context (progress, warnings about rules scoped to unknown intents).
    """
    _warn_unknown_intents(params, ctx)
    return collect_rejections(rows, (_check(row, params) for row in rows), ctx)
