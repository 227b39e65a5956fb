"""Scores of routed tool calls against the expected ones: JSON validity, schema pass rate, tool, status and argument
accuracy, unsafe calls, invented paths and latency."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from framework.toolcalls.router import ToolRoute
from framework.toolcalls.schema import ToolCallSchema

SEMANTIC_RULES = ("magic_path", "unsafe_code")
SCORE_ROWS = [
    ("JSON validity (first answer)", "json_valid"),
    ("schema pass (first answer)", "schema_pass"),
    ("tool accuracy", "tool_accuracy"),
    ("status accuracy", "status_accuracy"),
    ("call exact match", "call_exact_match"),
    ("unsafe calls (first answer)", "unsafe_call_rate"),
    ("invented paths (first answer)", "magic_path_rate"),
    ("regenerated with feedback", "regenerated"),
    ("failed after retries", "failed"),
    ("latency p50 (ms)", "latency_ms_p50"),
    ("latency p95 (ms)", "latency_ms_p95"),
]
"""How the model card, the report and the run summary name each score, in the order they show them."""
HEAD_ROWS = [
    ("tool accuracy", "tool_accuracy"),
    ("latency p50 (ms)", "latency_ms_p50"),
    ("latency p95 (ms)", "latency_ms_p95"),
]
"""The scores on which the two heads of one spec (the LoRA router, the encoder selector) are set side by side."""


def _json_valid(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def score_routes(routes: Sequence[ToolRoute], expected: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Metrics of ``routes`` against the expected calls (the rows' ``output``), in the same order.

    JSON validity, schema pass and the rule rates are of the first answer (before any regeneration); the
    accuracies are of the final route (a failed route counts as wrong). ``call_exact_match``: for a tool call, the
    same tool and the same arguments (the thought is free text and not compared); for a direct answer, the same
    answer text.
    """
    n = len(routes)
    first_valid = first_schema = tools = statuses = exact = retried = failed = 0
    rule_hits: dict[str, int] = dict.fromkeys(SEMANTIC_RULES, 0)
    per_argument: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for route, want in zip(routes, expected, strict=True):
        first = route.attempts[0]
        first_valid += _json_valid(first.text)
        first_schema += first.rule not in ("schema", "truncated")
        if first.rule in rule_hits:
            rule_hits[first.rule] += 1
        retried += len(route.attempts) > 1
        failed += not route.ok
        got = ToolCallSchema.dump(route.call) if route.call is not None else {}
        statuses += got.get("status") == want.get("status")
        tools += route.call is not None and ToolCallSchema.label(got) == ToolCallSchema.label(want)
        if want.get("status") != "running":
            exact += got == want
            continue
        want_args = want["tool_use"]["arguments"]
        got_use = got.get("tool_use") or {}
        same_tool = got_use.get("tool_name") == want["tool_use"]["tool_name"]
        got_args = got_use.get("arguments", {}) if same_tool else {}
        exact += same_tool and got_args == want_args
        for name, value in want_args.items():
            key = f"{want['tool_use']['tool_name']}.{name}"
            per_argument[key][0] += got_args.get(name) == value
            per_argument[key][1] += 1
    latencies = np.array([route.latency_ms for route in routes]) if n else np.zeros(1)
    return {
        "rows": n,
        "json_valid": _share(first_valid, n),
        "schema_pass": _share(first_schema, n),
        "tool_accuracy": _share(tools, n),
        "status_accuracy": _share(statuses, n),
        "call_exact_match": _share(exact, n),
        "per_argument_match": {key: _share(hit, total) for key, (hit, total) in sorted(per_argument.items())},
        "unsafe_call_rate": _share(rule_hits["unsafe_code"], n),
        "magic_path_rate": _share(rule_hits["magic_path"], n),
        "regenerated": _share(retried, n),
        "failed": _share(failed, n),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 1),
    }
