"""Validation layer ``tool_structural``: tool-call rows whose call is not what the recipe's tools declare.

The call is checked against the pydantic union built from ``tool_calls`` (well-formed JSON, the ``status`` and
``tool_name`` discriminators, required keys, types, enums, bounds, patterns, no unknown keys), strictly: text
where a number belongs fails. The call's tool (or ``complete``) must be the row's label, and the query must
be text within bounds, and the query, thought and answer without unrendered template markers (arguments may
hold braces: code, templates of the user's own).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from framework.plugin_api import Rejection, ValidateContext
from framework.registry import validators
from framework.toolcalls.schema import ToolCallSchema, describe_errors

from ._common import Hit, TextBounds, clip, collect_rejections, row_text
from ._toolcall import tool_calls_of

_TEMPLATE = re.compile(r"\{\{|\}\}|\{%|%\}")


class Params(TextBounds):
    """Params of the ``tool_structural`` layer.

    Attributes:
        min_chars: Queries whose stripped text is shorter are rejected (``too_short``).
        max_chars: Queries whose stripped text is longer are rejected (``too_long``).
    """


def check(row: dict[str, Any], schema: ToolCallSchema, params: Params) -> Hit | None:
    """The first structural rule the row breaks, or None."""
    text = row_text(row).strip()
    if len(text) < params.min_chars:
        return "too_short", f"query has {len(text)} characters, under min_chars {params.min_chars}"
    if len(text) > params.max_chars:
        return "too_long", f"query has {len(text)} characters, over max_chars {params.max_chars}"
    output = row.get("output")
    if output is None:
        return "no_call", "the row has no tool call (output); every row of a tool-call recipe needs one"
    try:
        call = schema.parse(output)
    except ValidationError as exc:
        return "schema", f"the call does not match the tools' schema: {describe_errors(exc)}"
    if not isinstance(output, dict):
        return "not_object", "the call is JSON text, not an object: a generator writes calls as mappings"
    label = schema.label(call)
    if label != row.get("intent"):
        return "label", f"the call is {label!r} but the row is labelled {row.get('intent')!r}"
    # the words, not the arguments: code and file contents may hold braces of their own
    dumped = schema.dump(call)
    for piece in [text, dumped.get("thought", ""), dumped.get("final_answer", "")]:
        if _TEMPLATE.search(piece):
            return "unrendered", f"holds template markup: {clip(piece)}"
    return None


@validators.register("tool_structural", params=Params)
def tool_structural(rows: Sequence[dict], params: Params, ctx: ValidateContext) -> Iterable[Rejection]:
    """Reject rows whose call does not parse into the recipe's tool-call union, or is not the row's label."""
    schema = ToolCallSchema(tool_calls_of(ctx, "tool_structural"))
    return collect_rejections(rows, (check(row, schema, params) for row in rows), ctx)
