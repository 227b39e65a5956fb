"""score_routes: first-answer validity and rule rates, final-route accuracies, per-argument matches, latency."""

from __future__ import annotations

from framework.toolcalls.evaluation import score_routes
from framework.toolcalls.router import Attempt, ToolRoute
from framework.toolcalls.schema import ToolCallSchema
from framework.toolcalls.spec import ToolCallsSpec

SPEC = ToolCallsSpec.model_validate(
    {"tools": {"files": {"description": "d", "arguments": {"action": {"type": "string", "enum": ["read", "list"]},
                                                          "path": {"type": "string"}}}}}
)  # fmt: skip
SCHEMA = ToolCallSchema(SPEC)


def call(action: str, path: str) -> dict:
    return {
        "status": "running",
        "thought": "t",
        "tool_use": {"tool_name": "files", "arguments": {"action": action, "path": path}},
    }


ANSWER = {"status": "complete", "final_answer": "JSON is a format."}


def route(final: dict | None, first_rule: str | None = None, ms: float = 10.0) -> ToolRoute:
    attempts = [
        Attempt('{"x": 1}' if first_rule != "truncated" else '{"x"', "p" if first_rule else None, first_rule, 5, 0.1)
    ]
    if first_rule and final is not None:
        attempts.append(Attempt("{}", None, None, 5, 0.1))
    return ToolRoute("q", SCHEMA.parse(final) if final else None, None if final else first_rule, attempts, ms)


def test_scores() -> None:
    expected = [call("read", "a.py"), call("read", "b.py"), call("list", "src"), ANSWER]
    routes = [
        route(call("read", "a.py"), ms=10),  # exact
        route(call("read", "c.py"), first_rule="magic_path", ms=30),  # regenerated, right tool, wrong path
        route(None, first_rule="truncated", ms=50),  # failed
        route(ANSWER, ms=20),  # exact direct answer
    ]
    scores = score_routes(routes, expected)
    assert scores["rows"] == 4
    assert scores["json_valid"] == 0.75 and scores["schema_pass"] == 0.75
    assert scores["tool_accuracy"] == 0.75 and scores["status_accuracy"] == 0.75 and scores["call_exact_match"] == 0.5
    assert scores["per_argument_match"] == {"files.action": 0.6667, "files.path": 0.3333}
    assert scores["magic_path_rate"] == 0.25 and scores["unsafe_call_rate"] == 0.0
    assert scores["regenerated"] == 0.25 and scores["failed"] == 0.25
    assert scores["latency_ms_p50"] == 25.0 and scores["latency_ms_p95"] == 47.0
