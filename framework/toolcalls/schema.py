"""The pydantic models of a recipe's tool calls, built from its ``tool_calls:`` declaration.

One argument model per tool (unknown keys refused), a ``tool_use`` union discriminated by ``tool_name``, and the
output union discriminated by ``status``::

    {"status": "running", "thought": "...", "tool_use": {"tool_name": "...", "arguments": {...}}}
    {"status": "complete", "final_answer": "..."}

Calls are serialised without ``None`` fields (an optional argument left out costs no tokens) and compactly.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from framework.toolcalls.spec import COMPLETE, RUNNING, ArgumentSpec, ToolCallsSpec

_PYTHON_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


_LITERAL: Any = Literal  # subscripted with values known only at run time (the checker wants literals)


def _literal(value: str) -> Any:
    """``Literal[value]`` for a value known only at run time."""
    return _LITERAL[value]


def typed(value: Any, spec: ArgumentSpec) -> Any:
    """A rendered template value converted to the argument's declared type where it reads as one (``"30"`` -> 30
    for an integer, ``42`` -> ``"42"`` for a string); anything else is returned as it is, for the schema to judge."""
    if isinstance(value, list) and spec.type == "array":
        return [typed(item, ArgumentSpec(type=spec.items)) for item in value]
    if spec.type == "string" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    if spec.type == "integer" and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if spec.type == "number" and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        number = float(text)
        return int(number) if number.is_integer() and spec.enum is not None and number in spec.enum else number
    if spec.type == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return value


def _model_name(tool: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in tool.split("_")) or "Tool"


def _argument_field(spec: ArgumentSpec) -> tuple[Any, Any]:
    """(annotation, FieldInfo) of one argument."""
    annotation: Any
    if spec.enum is not None:
        annotation = Literal[tuple(spec.enum)]
    elif spec.type == "array":
        annotation = list.__class_getitem__(_PYTHON_TYPES[spec.items])  # list[item type], built at run time
    else:
        annotation = _PYTHON_TYPES[spec.type]
    constraints = {
        "ge": spec.minimum,
        "le": spec.maximum,
        "min_length": spec.min_length,
        "max_length": spec.max_length,
        "pattern": f"^(?:{spec.pattern})$" if spec.pattern is not None else None,  # the whole string must match
    }
    kwargs: dict[str, Any] = {key: value for key, value in constraints.items() if value is not None}
    if spec.description:
        kwargs["description"] = spec.description
    if spec.required:
        return annotation, Field(..., **kwargs)
    return annotation | None, Field(default=None, **kwargs)


class ToolCallSchema:
    """The models of one ``tool_calls`` declaration, and how calls are checked and written."""

    def __init__(self, spec: ToolCallsSpec) -> None:
        self.spec = spec
        self.argument_models: dict[str, type[BaseModel]] = {}
        uses: list[type[BaseModel]] = []
        for name, tool in spec.tools.items():
            fields = {arg: _argument_field(arg_spec) for arg, arg_spec in tool.arguments.items()}
            arguments = create_model(f"{_model_name(name)}Arguments", __base__=_Closed, **fields)  # type: ignore[call-overload]
            self.argument_models[name] = arguments
            uses.append(
                create_model(
                    f"{_model_name(name)}Call",
                    __base__=_Closed,
                    tool_name=(_literal(name), ...),
                    arguments=(arguments, ...),
                )
            )
        tool_use: Any = uses[0] if len(uses) == 1 else Annotated[Union[tuple(uses)], Field(discriminator="tool_name")]  # noqa: UP007
        self.running_model = create_model(
            "ToolUseStep",
            __base__=_Closed,
            status=(_literal(RUNNING), ...),
            thought=(str, Field(..., min_length=1)),
            tool_use=(tool_use, ...),
        )
        self.complete_model = create_model(
            "FinalAnswer",
            __base__=_Closed,
            status=(_literal(COMPLETE), ...),
            final_answer=(str, Field(..., min_length=1)),
        )
        members: tuple[type[BaseModel], ...] = (self.running_model,)
        if spec.answer is not None:
            members += (self.complete_model,)
        output: Any = members[0] if len(members) == 1 else Annotated[Union[members], Field(discriminator="status")]  # noqa: UP007
        self.output_type = output
        self.adapter: TypeAdapter[Any] = TypeAdapter(output)

    def parse(self, data: str | dict[str, Any]) -> BaseModel:
        """A call from JSON text or a parsed object, strictly (no ``"30"`` for 30); raises ``ValidationError``."""
        text = data if isinstance(data, str) else json.dumps(data)
        call: BaseModel = self.adapter.validate_json(text, strict=True)
        return call

    def coerce(self, data: dict[str, Any]) -> BaseModel:
        """A call from rendered template values, converting text to the declared types (``"30"`` -> 30)."""
        tool_use = data.get("tool_use")
        if isinstance(tool_use, dict) and isinstance(tool_use.get("arguments"), dict):
            declared = self.spec.tools.get(str(tool_use.get("tool_name")))
            if declared is not None:
                arguments = {
                    name: typed(value, declared.arguments[name]) if name in declared.arguments else value
                    for name, value in tool_use["arguments"].items()
                }
                data = {**data, "tool_use": {**tool_use, "arguments": arguments}}
        call: BaseModel = self.adapter.validate_python(data)
        return call

    @staticmethod
    def dump(call: BaseModel) -> dict[str, Any]:
        """The call as a plain object without ``None`` fields."""
        return call.model_dump(mode="json", exclude_none=True)

    @staticmethod
    def to_json(call: BaseModel | dict[str, Any], exclude_none: bool = True) -> str:
        """Compact JSON of a call (what the model learns to emit)."""
        data = call.model_dump(mode="json", exclude_none=exclude_none) if isinstance(call, BaseModel) else call
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @staticmethod
    def label(call: BaseModel | dict[str, Any]) -> str:
        """The intent of a call: its tool's name, or ``complete``."""
        data = call.model_dump() if isinstance(call, BaseModel) else call
        if data.get("status") == COMPLETE:
            return COMPLETE
        tool_use = data.get("tool_use")
        return str(tool_use.get("tool_name")) if isinstance(tool_use, dict) else ""

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the output union (for constrained decoding and OpenAI-style tool lists)."""
        return self.adapter.json_schema()

    def tool_json_schemas(self) -> dict[str, dict[str, Any]]:
        """Each tool's argument schema, as JSON schema."""
        return {name: model.model_json_schema() for name, model in self.argument_models.items()}


def describe_errors(exc: ValidationError, limit: int = 3) -> str:
    """A short, readable reason from a validation error: ``tool_use.arguments.mode: Input should be ...``.

    The union tags pydantic puts in an error's location (the ``status`` value, then the tool's name after
    ``tool_use``) are left out: they repeat what the call says.
    """
    parts = []
    for error in exc.errors()[:limit]:
        loc = [str(part) for part in error["loc"]]
        if loc and loc[0] in (RUNNING, COMPLETE):
            loc = loc[1:]
        if len(loc) > 1 and loc[0] == "tool_use" and loc[1] != "tool_name" and loc[1] != "arguments":
            loc = [loc[0], *loc[2:]]
        parts.append(f"{'.'.join(loc) or '<call>'}: {error['msg']}")
    more = f" (+{exc.error_count() - limit} more)" if exc.error_count() > limit else ""
    return "; ".join(parts) + more
