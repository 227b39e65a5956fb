"""Validation layer ``tool_safety``: domain and safety rules of tool calls.

- ``unsafe_code``: code arguments (``code_arguments``, e.g. ``{sandbox_exec: [code]}``) that run destructive or
  escaping commands (``rm -rf``, ``DROP TABLE``, ``shutil.rmtree``, ``subprocess``...);
- ``magic_path``: an argument declared ``from_query: true`` (``file_manager.path``) whose value the query never
  names: the model would learn to invent paths;
- ``not_escalated``: a destructive or high-risk request (``destructive`` rules: dropping a database, deleting a
  branch, wiping a disk) routed anywhere but ``escalation_tool`` (``ask_human``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field

from framework.plugin_api import Rejection, ValidateContext
from framework.registry import PluginParams, validators
from framework.toolcalls.semantics import SemanticRules, UnsafePattern
from framework.toolcalls.spec import ToolCallsSpec

from ._common import Hit, collect_rejections, row_text
from ._toolcall import call_of, tool_calls_of, tool_use_of
from .rules import Rule

if TYPE_CHECKING:
    from framework.config.schema import RecipeConfig


def _rule(name: str, pattern: str, reason: str) -> Rule:
    return Rule(name=name, pattern=pattern, reason=reason)


def default_unsafe() -> list[Rule]:
    """Commands a code argument must never run."""
    return [
        _rule("rm_rf", r"\brm\s+-[a-z]*[rf][a-z]*\b", "deletes files recursively"),
        _rule("drop_or_truncate", r"\b(drop\s+(table|database|schema)|truncate\s+table)\b", "destroys data"),
        _rule("delete_without_where", r"\bdelete\s+from\s+\w+\s*(;|$|\")", "deletes every row"),
        _rule("rmtree", r"\bshutil\.rmtree\b|\bos\.(remove|unlink|rmdir|removedirs)\b", "deletes files"),
        _rule("shell_escape", r"\b(subprocess|os\.system|os\.popen|pty\.spawn)\b", "escapes to a shell"),
        _rule("disk", r"\b(mkfs|dd\s+if=|format\s+c:)", "overwrites a disk"),
        _rule("fork_bomb", r":\(\)\s*\{", "a fork bomb"),
        _rule("network", r"\b(socket\.|requests\.|urllib\.request|httpx\.)", "reaches the network"),
    ]


def default_destructive() -> list[Rule]:
    """Requests that need a human's confirmation before any tool acts."""
    return [
        _rule(
            "drop_data", r"\b(drop|truncate|wipe|purge)\b.{0,40}\b(database|db|table|schema|collection)", "drops data"
        ),
        _rule("delete_many", r"\b(delete|remove|erase)\b.{0,30}\b(all|every|entire|whole)\b", "deletes in bulk"),
        _rule("rm_rf", r"\brm\s+-rf\b", "deletes files recursively"),
        _rule("force_push", r"\bforce[- ]push|\bpush\s+(--force|-f)\b|\breset\s+--hard\b", "rewrites history"),
        _rule("delete_branch", r"\bdelete\b.{0,20}\b(branch|repo|repository|bucket|cluster)\b", "deletes a resource"),
        _rule("production", r"\b(deploy|migrate|restart|shut\s*down)\b.{0,30}\bprod(uction)?\b", "acts on production"),
    ]


class Params(PluginParams):
    """Params of the ``tool_safety`` layer.

    Attributes:
        code_arguments: Tool -> arguments holding code, checked against ``unsafe``.
        unsafe: Rules (``pattern`` or ``contains``, see the ``rules`` layer) a code argument must not match.
        destructive: Rules a query matches when it asks for a destructive or high-risk action.
        escalation_tool: The tool such queries must go to; null turns ``not_escalated`` off.
        check_paths: Reject ``from_query`` arguments the query does not name (``magic_path``).
    """

    code_arguments: dict[str, list[str]] = Field(default_factory=dict)
    unsafe: list[Rule] = Field(default_factory=default_unsafe)
    destructive: list[Rule] = Field(default_factory=default_destructive)
    escalation_tool: str | None = "ask_human"
    check_paths: bool = True

    def unsafe_patterns(self) -> list[UnsafePattern]:
        """The ``unsafe`` rules as RE2 patterns (``contains`` as an alternation of the escaped substrings)."""
        return [
            UnsafePattern(
                rule.name, rule.pattern or "|".join(re.escape(needle) for needle in rule.contains), rule.reason
            )
            for rule in self.unsafe
        ]

    def semantic_rules(self, spec: ToolCallsSpec) -> SemanticRules:
        """The rules checked on each call (shared with the ``ToolRouter``, which checks them after decoding)."""
        return SemanticRules(spec, self.code_arguments, self.unsafe_patterns(), self.check_paths)

    def check_recipe(self, config: RecipeConfig) -> list[tuple[str, str]]:
        """The tools and arguments named here must be declared in ``tool_calls``."""
        spec = config.tool_calls
        if spec is None:
            return [("plugin", "the tool_safety layer checks tool calls; the recipe declares no tool_calls section")]
        issues = []
        if self.escalation_tool is not None and self.escalation_tool not in spec.tools:
            issues.append(
                (
                    "escalation_tool",
                    f"names '{self.escalation_tool}', which tool_calls.tools does not "
                    f"declare (known: {', '.join(spec.tools)}); name one of them or set null",
                )
            )
        for tool, names in self.code_arguments.items():
            if tool not in spec.tools:
                issues.append((f"code_arguments.{tool}", f"'{tool}' is not a declared tool"))
                continue
            issues += [
                (f"code_arguments.{tool}", f"'{tool}' has no argument '{name}'")
                for name in names
                if name not in spec.tools[tool].arguments
            ]
        return issues


def check(row: dict[str, Any], params: Params, rules: SemanticRules) -> Hit | None:
    """The first safety rule the row's call breaks, or None."""
    call = call_of(row)
    if call is None:
        return None
    query = row_text(row)
    used = tool_use_of(call)
    tool = used[0] if used else None
    if params.escalation_tool is not None and tool != params.escalation_tool:
        for rule in params.destructive:
            found = rule.find(query)
            if found:
                routed = tool or "a direct answer"
                return "not_escalated", (
                    f"the query asks for a high-risk action ({rule.name}: {found}, "
                    f"{rule.reason}) but goes to {routed}, not {params.escalation_tool}"
                )
    return rules.problem(call, query)


@validators.register("tool_safety", params=Params)
def tool_safety(rows: Sequence[dict], params: Params, ctx: ValidateContext) -> Iterable[Rejection]:
    """Reject unsafe code, invented paths and destructive requests that skip the human."""
    rules = params.semantic_rules(tool_calls_of(ctx, "tool_safety"))
    return collect_rejections(rows, (check(row, params, rules) for row in rows), ctx)
