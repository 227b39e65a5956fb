"""Rules a grammar cannot express, checked on a parsed call: an argument the query must name (``from_query``: the
"magic path") and code arguments that must not run unsafe commands. The ``tool_safety`` validation layer and the
``ToolRouter`` share them, so training data and routed calls are held to the same rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import re2

from framework.data.rows import normalize_text
from framework.toolcalls.spec import ToolCallsSpec

_EDGES = "'\"`,;:()[]{}<>"
CLIP = 40
"""Longest excerpt of a value quoted in a reason (as the validation layers quote them)."""


def clipped(text: str, limit: int = CLIP) -> str:
    """A short quoted excerpt of ``text`` for a reason."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _bare(text: str) -> str:
    """A word of a query as a value would be written: case folded, without quotes, brackets, a sentence's final
    punctuation or a leading ``./``."""
    word = text.strip().casefold().strip(_EDGES).rstrip(".?!")
    return word.removeprefix("./")


def named_in(value: str, query: str) -> bool:
    """Whether the query names ``value``: a one-word value (a path) is one of the query's words, a longer one occurs
    in it as written, not inside a longer word. A value without a letter or digit (``""``, ``"."``) is never named."""
    if not normalize_text(value):
        return False
    wanted = _bare(value)
    if len(wanted.split()) == 1:
        return any(_bare(word) == wanted for word in query.split())
    return re.search(rf"(?<![\w/.]){re.escape(wanted)}(?![\w/])", query.casefold()) is not None


@dataclass(frozen=True)
class UnsafePattern:
    """A command a code argument must not run: an RE2 pattern, searched case-insensitively."""

    name: str
    pattern: str
    reason: str

    def compiled(self) -> Any:
        options = re2.Options()
        options.case_sensitive = False
        options.log_errors = False
        return re2.compile(self.pattern, options)


@dataclass
class SemanticRules:
    """What a routed call is checked against after decoding."""

    spec: ToolCallsSpec
    code_arguments: dict[str, list[str]] = field(default_factory=dict)
    unsafe: list[UnsafePattern] = field(default_factory=list)
    check_paths: bool = True

    def __post_init__(self) -> None:
        self._compiled = [(rule, rule.compiled()) for rule in self.unsafe]

    def problem(self, call: dict[str, Any], query: str) -> tuple[str, str] | None:
        """``(rule, reason)`` of the first rule the call breaks (``magic_path``, ``unsafe_code``), or None."""
        tool_use = call.get("tool_use") if call.get("status") == "running" else None
        if not isinstance(tool_use, dict):
            return None
        tool, arguments = str(tool_use.get("tool_name")), tool_use.get("arguments") or {}
        for name in self.code_arguments.get(tool, []):
            value = arguments.get(name)
            for code in [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]:
                for rule, regex in self._compiled:
                    found = regex.search(code)
                    if found:
                        return (
                            "unsafe_code",
                            f"{tool}.{name} runs {clipped(found.group())} ({rule.name}: {rule.reason})",
                        )
        declared = self.spec.tools[tool].arguments if tool in self.spec.tools else {}
        for name, argument in declared.items():
            value = arguments.get(name)
            if self.check_paths and argument.from_query and isinstance(value, str) and not named_in(value, query):
                return "magic_path", f"{tool}.{name} is {clipped(value)}, which the query never names"
        return None
