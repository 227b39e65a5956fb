"""Helpers shared by the tool-call validation layers (underscore: not loaded as a plugin)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from framework.errors import StageError
from framework.plugin_api import ValidateContext
from framework.toolcalls.spec import ToolCallsSpec


def tool_calls_of(ctx: ValidateContext, layer: str) -> ToolCallsSpec:
    """The recipe's tools, or the error a classifier recipe gets for naming a tool-call layer."""
    if ctx.tool_calls is None:
        raise StageError(
            f"validate.layers.{ctx.layer}: the {layer} layer checks tool calls, and the recipe declares no "
            "tool_calls section; remove the layer or declare the tools (see recipes/agent_router.yaml)"
        )
    return ctx.tool_calls


def call_of(row: dict[str, Any]) -> dict[str, Any] | None:
    """The row's tool call when it is a mapping (the structural layer rejects the others)."""
    output = row.get("output")
    return output if isinstance(output, dict) else None


def tool_use_of(call: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(tool name, arguments)`` of a running call, or None for a direct answer."""
    tool_use = call.get("tool_use")
    if call.get("status") != "running" or not isinstance(tool_use, dict):
        return None
    arguments = tool_use.get("arguments")
    return str(tool_use.get("tool_name")), arguments if isinstance(arguments, dict) else {}


def argument_strings(arguments: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(argument name, text)`` of every string in the arguments, list items included."""
    for name, value in arguments.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str):
                yield name, item
