"""Built-in task ``tool_calls``: one request per record asking for ``n`` queries of one tool, each with its call.

The answer is read as ``{"examples": [{"query": ..., "call": {...}}]}``; each call is converted into the recipe's
union where it can be (``"30"`` -> 30) and kept as written where it cannot, so the ``tool_structural`` layer
rejects it with the reason (and the report counts it per model and axis) instead of the record vanishing.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

from pydantic import ValidationError

from framework.llm.records import GenerationRecord, ToolExamples
from framework.llm.requests import TaskError, request
from framework.registry import llm_tasks
from framework.toolcalls.schema import ToolCallSchema
from framework.toolcalls.spec import ToolCallsSpec

_SCHEMAS: dict[int, tuple[ToolCallsSpec, ToolCallSchema]] = {}


def _schema(spec: ToolCallsSpec) -> ToolCallSchema:
    """One union per declaration (records of a run share it)."""
    cached = _SCHEMAS.get(id(spec))
    if cached is None or cached[0] is not spec:
        cached = _SCHEMAS[id(spec)] = (spec, ToolCallSchema(spec))
    return cached[1]


def _call(schema: ToolCallSchema, call: dict[str, Any] | str) -> dict[str, Any] | str:
    """The call in the union's form where it converts; else as written (a string that is a JSON object is read)."""
    if isinstance(call, str):
        try:
            parsed = json.loads(call)
        except ValueError:
            return call
        if not isinstance(parsed, dict):
            return call
        call = parsed
    try:
        return schema.dump(schema.coerce(call))
    except ValidationError:
        return call


@llm_tasks.register("tool_calls")
def tool_calls(record: GenerationRecord) -> Generator[Any, Any, list[dict[str, Any]]]:
    """Ask once for ``n`` examples of ``record.intent`` (a tool, or ``complete``); keep those with a query."""
    if not isinstance(record.tool_calls, ToolCallsSpec):
        raise TaskError("no_tools", "the tool_calls task runs in a recipe that declares tool_calls")
    schema = _schema(record.tool_calls)
    answer = yield request(record.prompt, system=record.system, schema=ToolExamples, step="tool_calls")
    rows, seen = [], set()
    for example in answer.parsed.examples:
        query = " ".join(example.query.split())
        if query and query not in seen:
            seen.add(query)
            rows.append({"text": query, "intent": record.intent, "output": _call(schema, example.call)})
    if not rows:
        raise TaskError("no_queries", "the answer held no example with a non-empty query")
    return rows[: record.n]
