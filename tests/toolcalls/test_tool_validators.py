"""The three tool-call validation layers: rows that must pass and rows that must fail, with their reasons."""

from __future__ import annotations

from typing import Any

import pytest

from framework.errors import StageError
from framework.plugin_api import ValidateContext
from framework.plugins.validators import tool_quality, tool_safety, tool_structural
from framework.toolcalls.spec import ToolCallsSpec

SPEC = ToolCallsSpec.model_validate(
    {
        "tools": {
            "codebase_search": {
                "description": "Search code.",
                "arguments": {
                    "query": {"type": "string"},
                    "mode": {"type": "string", "enum": ["exact", "semantic", "text"]},
                },
            },
            "file_manager": {
                "description": "Files.",
                "arguments": {
                    "action": {"type": "string", "enum": ["read", "write"]},
                    "path": {"type": "string", "from_query": True},
                },
            },
            "sandbox_exec": {
                "description": "Python.",
                "arguments": {"code": {"type": "string"}, "cells": {"type": "array", "required": False}},
            },
            "ask_human": {"description": "Ask.", "arguments": {"question": {"type": "string"}}},
        }
    }
)
THOUGHT = "The user names the identifier, so an exact search finds it."


def ctx(spec: ToolCallsSpec | None = SPEC) -> ValidateContext:
    return ValidateContext(layer="layer", intents={}, seed=0, tool_calls=spec)


def row(text: str, tool: str, arguments: dict[str, Any] | None = None, thought: str = THOUGHT, **extra: Any) -> dict:
    output: Any = {"status": "running", "thought": thought, "tool_use": {"tool_name": tool, "arguments": arguments}}
    if tool == "complete":
        output = {"status": "complete", "final_answer": extra.pop("answer", "JSON is a text format.")}
    return {"id": "r1", "text": text, "intent": extra.pop("intent", tool), "output": extra.pop("output", output)}


def verdict(module: Any, one: dict, params: dict[str, Any] | None = None) -> tuple[str, str] | None:
    """``(rule, reason)`` of the layer's rejection of ``one``, or None when it passes."""
    layer = getattr(module, module.__name__.rsplit(".", 1)[-1])
    rejected = list(layer([one], module.Params(**(params or {})), ctx()))
    return (rejected[0].rule, rejected[0].reason) if rejected else None


SEARCH = {"query": "parse_config", "mode": "exact"}


@pytest.mark.parametrize(
    "good",
    [
        row("where is parse_config defined", "codebase_search", SEARCH),
        row("what does JSON stand for", "complete"),
        row("open src/app.py", "file_manager", {"action": "read", "path": "src/app.py"}),
    ],
)
def test_structural_passes_well_formed_calls(good: dict) -> None:
    assert verdict(tool_structural, good) is None


def test_braces_in_arguments_are_not_template_markup() -> None:
    good = row("render index.html", "sandbox_exec", {"code": "print(jinja2.Template('{{ x }}').render(x=1))"})
    assert verdict(tool_structural, good) is None


@pytest.mark.parametrize(
    ("bad", "rule", "reason"),
    [
        (row("find parse_config", "codebase_search", {"query": "parse_config", "mode": "fuzzy"}), "schema",
         "tool_use.arguments.mode: Input should be 'exact', 'semantic' or 'text'"),
        (row("find parse_config", "codebase_search", {"query": "parse_config"}), "schema",
         "tool_use.arguments.mode: Field required"),
        (row("find parse_config", "codebase_search", SEARCH, output='{"status": "running"'), "schema", "Invalid JSON"),
        (row("find parse_config", "codebase_search", SEARCH, output=None), "no_call", "has no tool call"),
        (row("find parse_config", "codebase_search", SEARCH, intent="file_manager"), "label",
         "the call is 'codebase_search' but the row is labelled 'file_manager'"),
        (row("x", "codebase_search", SEARCH), "too_short", "query has 1 characters"),
        (row("find {{ symbol }}", "codebase_search", SEARCH), "unrendered", "holds template markup"),
        (row("find parse_config", "codebase_search", SEARCH, thought="{{ symbol }} is named, so search it exactly"),
         "unrendered", "holds template markup"),
        (row("find parse_config", "codebase_search", SEARCH, output='{"status": "complete", "final_answer": "a b"}',
             intent="complete"), "not_object", "the call is JSON text, not an object"),
    ],
)  # fmt: skip
def test_structural_rejects_with_the_reason(bad: dict, rule: str, reason: str) -> None:
    found = verdict(tool_structural, bad)
    assert found is not None and found[0] == rule and reason in found[1], found


@pytest.mark.parametrize(
    "good",
    [
        row("where is parse_config defined", "codebase_search", SEARCH),
        row("what does JSON stand for", "complete"),
        row("open src/app.py", "file_manager", {"action": "read", "path": "src/app.py"},
            thought="The file is named in the request, so reading it answers."),
        row("find the word parse_config as text", "codebase_search", {"query": "parse_config", "mode": "text"}),
        row("JSON是什么的缩写", "complete", answer="JSON是JavaScript对象表示法的缩写。"),
        row("parse_configはどこですか", "codebase_search", SEARCH, thought="識別子が指定されているので完全一致で検索"),
    ],
)  # fmt: skip
def test_quality_passes_specific_calls(good: dict) -> None:
    assert verdict(tool_quality, good) is None


@pytest.mark.parametrize(
    ("bad", "rule", "reason"),
    [
        (row("where is parse_config defined", "codebase_search", SEARCH, thought="search it"), "thought_too_short",
         "under 6 words"),
        (row("where is parse_config defined in the repo", "codebase_search", SEARCH,
             thought="where is parse_config defined in the repo?"), "thought_parrots_query", "repeats the query"),
        (row("find the parser", "codebase_search", {"query": "search", "mode": "semantic"}), "placeholder_argument",
         "codebase_search.query is a placeholder word"),
        (row("open my file", "file_manager", {"action": "read", "path": "path/to/file.py"}), "placeholder_argument",
         "matches 'path/to/'"),
        (row("open my file", "file_manager", {"action": "read", "path": "<path>"}), "placeholder_argument",
         "file_manager.path is a placeholder"),
        (row("run code", "sandbox_exec", {"code": "code"}), "placeholder_argument", "placeholder word"),
        (row("what does JSON stand for", "complete", answer="JSON."), "answer_too_short", "under 2 words"),
    ],
)  # fmt: skip
def test_quality_rejects_with_the_reason(bad: dict, rule: str, reason: str) -> None:
    found = verdict(tool_quality, bad)
    assert found is not None and found[0] == rule and reason in found[1], found


CODE = {"code_arguments": {"sandbox_exec": ["code", "cells"]}}


@pytest.mark.parametrize(
    "good",
    [
        row("what is 12 times 7", "sandbox_exec", {"code": "print(12 * 7)"}),
        row("open src/app.py", "file_manager", {"action": "read", "path": "src/app.py"}),
        row("open ./SRC/App.py please", "file_manager", {"action": "read", "path": "src/app.py"}),
        row("drop the orders database", "ask_human", {"question": "Drop orders for good?"}),
        row("how do we delete expired sessions", "codebase_search", {"query": "expired sessions", "mode": "semantic"}),
        row("open the file src/app.py, please", "file_manager", {"action": "read", "path": "src/app.py"}),
    ],
)
def test_safety_passes_safe_calls(good: dict) -> None:
    assert verdict(tool_safety, good, CODE) is None


@pytest.mark.parametrize(
    ("bad", "rule", "reason"),
    [
        (row("clean the tmp dir", "sandbox_exec", {"code": "import os\nos.system('rm -rf /tmp/x')"}), "unsafe_code",
         "sandbox_exec.code runs 'rm -rf'"),
        (row("reset the db", "sandbox_exec", {"code": "cur.execute('DROP TABLE users')"}), "unsafe_code",
         "drop_or_truncate"),
        (row("tidy up", "sandbox_exec", {"code": "import shutil; shutil.rmtree('build')"}), "unsafe_code", "rmtree"),
        (row("tidy up", "sandbox_exec", {"code": "print(1)", "cells": ["x = 1", "os.remove('a')"]}), "unsafe_code",
         "sandbox_exec.cells runs 'os.remove'"),
        (row("open the config", "file_manager", {"action": "read", "path": "config/settings.yaml"}), "magic_path",
         "file_manager.path is 'config/settings.yaml', which the query never names"),
        (row("drop the orders database", "sandbox_exec", {"code": "print(1)"}), "not_escalated",
         "goes to sandbox_exec, not ask_human"),
        (row("force push to main", "complete"), "not_escalated", "goes to a direct answer, not ask_human"),
        (row("please delete all the logs in prod", "file_manager", {"action": "write", "path": "prod"}),
         "not_escalated", "delete_many"),
        (row("open a file", "file_manager", {"action": "read", "path": ""}), "magic_path", "the query never names"),
        (row("open a.py.", "file_manager", {"action": "read", "path": "."}), "magic_path", "the query never names"),
        (row("open src/app.pyc", "file_manager", {"action": "read", "path": "src/app.py"}), "magic_path",
         "the query never names"),
        (row("open lib/src/app.py", "file_manager", {"action": "read", "path": "src/app.py"}), "magic_path",
         "the query never names"),
    ],
)  # fmt: skip
def test_safety_rejects_with_the_reason(bad: dict, rule: str, reason: str) -> None:
    found = verdict(tool_safety, bad, CODE)
    assert found is not None and found[0] == rule and reason in found[1], found


def test_safety_checks_its_tools_against_the_recipe() -> None:
    from framework.config.schema import RecipeConfig

    config = RecipeConfig.model_validate(
        {
            "name": "r",
            "tool_calls": {"tools": {"t": {"description": "d"}}},
            "validate": {},
            "generate": {"generators": {"g": {"plugin": "tool_template"}}},
        }
    )
    params = tool_safety.Params(code_arguments={"sandbox_exec": ["code"]})
    assert params.check_recipe(config) == [
        ("escalation_tool",
         "names 'ask_human', which tool_calls.tools does not declare (known: t); name one of them or set null"),
        ("code_arguments.sandbox_exec", "'sandbox_exec' is not a declared tool"),
    ]  # fmt: skip


def test_a_tool_layer_in_a_recipe_without_tools_says_so() -> None:
    with pytest.raises(StageError, match="declares no tool_calls section"):
        tool_structural.tool_structural([], tool_structural.Params(), ctx(None))
