"""Validation layer ``tool_quality``: tool calls that parse but teach the model little.

- ``thought_too_short``: a thought of fewer than ``min_thought_words`` words says nothing about why;
- ``thought_parrots_query``: a thought that repeats the query (it holds the whole query, or most of its words are
  the query's) explains nothing;
- ``placeholder_argument``: an argument that is a placeholder (``path/to/file``, ``<path>``, ``query: "search"``)
  or just the tool's or the argument's own name is not specific to the query (enum arguments are exempt);
- ``answer_too_short``: a direct answer of fewer than ``min_answer_words`` words.

Words are counted on the normalised text; in scripts written without spaces (Chinese, Japanese, Korean) each
character counts as a word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import Field, PrivateAttr, field_validator, model_validator

from framework.data.rows import normalize_text, tokens
from framework.plugin_api import Rejection, ValidateContext
from framework.registry import PluginParams, validators
from framework.toolcalls.spec import ToolCallsSpec

from ._common import Hit, clip, collect_rejections, row_text
from ._toolcall import argument_strings, call_of, tool_calls_of, tool_use_of
from .rules import compile_rule_regex

DEFAULT_PLACEHOLDERS = [
    "search", "query", "file", "path", "filename", "code", "text", "string", "value", "example", "foo", "bar",
    "todo", "tbd", "xxx", "n a", "none", "null", "something", "anything", "your file", "my file",
]  # fmt: skip
DEFAULT_PLACEHOLDER_PATTERNS = [r"path/to/", r"^<[^>]*>$", r"\byour[_-]", r"^\.\.\.$", r"^\$\{?\w+\}?$"]


class Params(PluginParams):
    """Params of the ``tool_quality`` layer.

    Attributes:
        min_thought_words: Fewest words in a thought.
        parroting_overlap: A thought whose words are at least this share of the query's words (and that adds
            fewer than ``min_thought_words`` words of its own) parrots the query; 1.0 turns the overlap test off.
        placeholders: Argument values (compared normalised: case, punctuation) that are placeholders.
        placeholder_patterns: Regexes (RE2, case-insensitive) that mark an argument value as a placeholder.
        min_answer_words: Fewest words in a direct answer.
    """

    min_thought_words: int = Field(default=6, ge=1)
    parroting_overlap: float = Field(default=0.8, gt=0, le=1)
    placeholders: list[str] = Field(default_factory=lambda: list(DEFAULT_PLACEHOLDERS))
    placeholder_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_PLACEHOLDER_PATTERNS))
    min_answer_words: int = Field(default=2, ge=1)
    _patterns: list[Any] = PrivateAttr(default_factory=list)
    _placeholders: set[str] = PrivateAttr(default_factory=set)

    @field_validator("placeholder_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for index, pattern in enumerate(patterns):
            compile_rule_regex(pattern, f"placeholder_patterns[{index}]")
        return patterns

    @model_validator(mode="after")
    def _compile(self) -> Params:
        self._patterns = [
            compile_rule_regex(p, f"placeholder_patterns[{i}]") for i, p in enumerate(self.placeholder_patterns)
        ]
        self._placeholders = {normalize_text(value) for value in self.placeholders}
        return self

    def placeholder(self, value: str, names: set[str]) -> str | None:
        """Why ``value`` is a placeholder, or None."""
        key = normalize_text(value)
        if key in self._placeholders or key in names:
            return "a placeholder word" if key in self._placeholders else "the name of the tool or argument"
        for pattern in self._patterns:
            if pattern.search(value.strip()):
                return f"a placeholder (matches {pattern.pattern!r})"
        return None


_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
"""Scripts written without spaces between words (kana, CJK ideographs, Hangul syllables): a character counts."""


def word_count(text: str) -> int:
    """Words of ``text``; in scripts written without spaces each character counts as one."""
    return sum(max(1, len(_UNSPACED.findall(token))) for token in tokens(text))


def _parrots(thought: str, query: str, params: Params) -> bool:
    thought_key, query_key = normalize_text(thought), normalize_text(query)
    if len(query_key.split()) >= 3 and query_key in thought_key:
        extra = len(thought_key.split()) - len(query_key.split())
        return extra < params.min_thought_words
    if params.parroting_overlap >= 1.0:
        return False
    thought_words, query_words = tokens(thought), set(tokens(query))
    if not thought_words:
        return False
    shared = sum(word in query_words for word in thought_words) / len(thought_words)
    return shared >= params.parroting_overlap


def check(row: dict[str, Any], params: Params, spec: ToolCallsSpec) -> Hit | None:
    """The first quality rule the row's call breaks, or None."""
    call = call_of(row)
    if call is None:
        return None
    if call.get("status") == "complete":
        answer = str(call.get("final_answer", ""))
        if word_count(answer) < params.min_answer_words:
            return "answer_too_short", f"the answer has under {params.min_answer_words} words: {clip(answer)}"
        return None
    thought, query = str(call.get("thought", "")), row_text(row)
    if word_count(thought) < params.min_thought_words:
        return "thought_too_short", f"the thought has under {params.min_thought_words} words: {clip(thought)}"
    if _parrots(thought, query, params):
        return "thought_parrots_query", f"the thought repeats the query instead of giving a reason: {clip(thought)}"
    used = tool_use_of(call)
    if used is not None:
        tool, arguments = used
        declared = spec.tools[tool].arguments if tool in spec.tools else {}
        for name, value in argument_strings(arguments):
            if name in declared and declared[name].enum is not None:
                continue  # a value the tool declares is never a placeholder
            why = params.placeholder(value, {normalize_text(tool), normalize_text(name)})
            if why:
                return "placeholder_argument", f"{tool}.{name} is {why}, not taken from the query: {clip(value)}"
    return None


@validators.register("tool_quality", params=Params)
def tool_quality(rows: Sequence[dict], params: Params, ctx: ValidateContext) -> Iterable[Rejection]:
    """Reject calls with empty or parroting thoughts, placeholder arguments, or one-word answers."""
    spec = tool_calls_of(ctx, "tool_quality")
    return collect_rejections(rows, (check(row, params, spec) for row in rows), ctx)
