"""Tools declared in a recipe (``tool_calls:``): names, descriptions, argument schemas, rules and templates.

A ``tool_calls`` recipe turns a query into ``{"status": "running", "thought": ..., "tool_use": {"tool_name": ...,
"arguments": {...}}}`` or ``{"status": "complete", "final_answer": ...}``. This module is the YAML side; the
pydantic models of that output are built from it in :mod:`framework.toolcalls.schema`. Each tool is an intent
of the recipe (and ``complete`` is the intent of direct answers), so the split, the reports and a classifier
over the tool names work as for any recipe.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, field_validator, model_validator
from pydantic_core import SchemaError

TOOL_NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_]*"
"""Tool and argument names: identifiers (they are JSON keys and function names in OpenAI's format)."""
COMPLETE = "complete"
"""The intent, and ``status``, of a direct answer."""
RUNNING = "running"
ArgType = Literal["string", "integer", "number", "boolean", "array"]
ItemType = Literal["string", "integer", "number", "boolean"]
SlotValue = str | dict[str, str]
_NUMERIC = {"integer", "number"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArgumentSpec(_Strict):
    """One argument of a tool.

    Attributes:
        type: string | integer | number | boolean | array (of ``items``).
        description: What the argument holds; shown in the system prompt and the generator prompt.
        required: A call without it is invalid; an optional argument left out costs no tokens.
        enum: The only values allowed.
        minimum / maximum: Bounds of a number (inclusive).
        min_length / max_length: Bounds of a string's length (an array's item count).
        pattern: A regular expression the whole string must match.
        items: The type of an array's items.
        from_query: The value must be written in the user's query (a path the user names, never invented).
    """

    type: ArgType
    description: str = ""
    required: bool = True
    enum: list[str | int | float] | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=1)
    pattern: str | None = None
    items: ItemType = "string"
    from_query: bool = False

    @field_validator("enum")
    @classmethod
    def _enum_has_values(cls, enum: list[Any] | None) -> list[Any] | None:
        if enum is not None and not enum:
            raise ValueError("enum has no values; list the values the argument may take, or remove enum")
        if enum is not None and len(set(map(repr, enum))) != len(enum):
            raise ValueError(f"enum repeats a value: {enum}; list each value once")
        return enum

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression ({exc})") from exc
            try:  # calls are checked by pydantic-core's regex engine (Rust's regex: linear time)
                TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)])
            except SchemaError as exc:
                why = str(exc).strip().splitlines()[-1].removeprefix("error: ")
                raise ValueError(
                    f"pattern cannot run on the engine that checks calls, Rust's regex, which has no look-around or "
                    f"backreferences ({why}); rewrite it without them"
                ) from exc
        return pattern

    @model_validator(mode="after")
    def _keys_fit_the_type(self) -> ArgumentSpec:
        bounds = [
            key
            for key in ("minimum", "maximum", "min_length", "max_length", "pattern")
            if getattr(self, key) is not None
        ]
        if self.enum is not None and bounds:
            raise ValueError(
                f"enum lists every allowed value, so {', '.join(bounds)} cannot apply; remove one or the other"
            )
        if self.type not in _NUMERIC and (self.minimum is not None or self.maximum is not None):
            raise ValueError(f"minimum and maximum bound numbers, but the type is {self.type}; remove them")
        if self.type not in {"string", "array"} and (self.min_length is not None or self.max_length is not None):
            raise ValueError(f"min_length and max_length bound strings and arrays, but the type is {self.type}")
        if self.pattern is not None and self.type != "string":
            raise ValueError(f"pattern applies to strings, but the type is {self.type}; remove it")
        if self.from_query and self.type != "string":
            raise ValueError(f"from_query applies to strings, but the type is {self.type}; remove it")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is above maximum {self.maximum}")
        if self.enum is not None:
            wrong = [value for value in self.enum if not _fits(value, self.type)]
            if wrong:
                raise ValueError(f"enum values {wrong} are not of type {self.type}; quote or fix them")
        return self


def _fits(value: Any, type_: str) -> bool:
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return False  # booleans and arrays take no enum


class ToolTemplate(_Strict):
    """A query and the tool call it needs, rendered together from one draw of slot values (jinja2 sandbox), so
    the label is right by construction. String argument values are templates; others are kept as written."""

    query: str = Field(min_length=1)
    thought: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class AnswerTemplate(_Strict):
    """A query answered directly, and the answer (both templates)."""

    query: str = Field(min_length=1)
    final_answer: str = Field(min_length=1)


class ToolSpec(_Strict):
    """One tool: what it does, its arguments, rules in words for the generator prompt, and templates.

    Attributes:
        description: What the tool does; shown in the system prompt.
        arguments: Argument name -> its schema.
        rules: When and how to use the tool, in words (the system prompt and the LLM generator show them).
        slots: Slot values for this tool's templates (overlay the recipe's ``slots``); a value may be a mapping
            (``{name: JSON, meaning: JavaScript Object Notation}``) whose fields a template reads together.
        templates: Queries with their calls, for the ``tool_template`` generator.
        weight: Multiplier on ``generate.samples_per_intent`` for this tool.
    """

    description: str = Field(min_length=1)
    arguments: dict[str, ArgumentSpec] = Field(default_factory=dict)
    rules: list[str] = Field(default_factory=list)
    slots: dict[str, list[SlotValue]] = Field(default_factory=dict)
    templates: list[ToolTemplate] = Field(default_factory=list)
    weight: float = Field(default=1.0, gt=0, le=100)

    @field_validator("arguments")
    @classmethod
    def _argument_names(cls, arguments: dict[str, ArgumentSpec]) -> dict[str, ArgumentSpec]:
        bad = [name for name in arguments if not re.fullmatch(TOOL_NAME_PATTERN, name)]
        if bad:
            raise ValueError(f"argument names must be identifiers (a letter, then letters, digits or _): {bad}")
        return arguments


class AnswerSpec(_Strict):
    """Direct answers (``status: complete``): when the query needs no tool."""

    description: str = "Answer directly when the query needs no tool."
    rules: list[str] = Field(default_factory=list)
    slots: dict[str, list[SlotValue]] = Field(default_factory=dict)
    templates: list[AnswerTemplate] = Field(default_factory=list)
    weight: float = Field(default=1.0, gt=0, le=100)


class RoutingRule(_Strict):
    """A rule across tools, in words: ``when`` this holds, ``use`` this tool (or ``complete``)."""

    when: str = Field(min_length=1)
    use: str = Field(min_length=1)


class ToolCallsSpec(_Strict):
    """The ``tool_calls:`` section: the tools, direct answers and routing rules of a tool-call router.

    Attributes:
        tools: Tool name -> its declaration.
        answer: Direct answers (``status: complete``); None: every query needs a tool.
        rules: Routing rules across tools, in words (each names the tool it routes to).
        system_prompt: The instructions before the tool list in the system prompt of every exported example.
    """

    tools: dict[str, ToolSpec] = Field(min_length=1)
    answer: AnswerSpec | None = Field(default_factory=AnswerSpec)
    rules: list[RoutingRule] = Field(default_factory=list)
    system_prompt: str = Field(
        default=(
            "You route a user's request. Reply with one JSON object and nothing else: either call one tool, "
            'as {"status": "running", "thought": <why, in one sentence>, "tool_use": {"tool_name": <tool>, '
            '"arguments": {...}}}, or answer directly, as {"status": "complete", "final_answer": <answer>}.'
        ),
        min_length=1,
    )

    @field_validator("tools")
    @classmethod
    def _tool_names(cls, tools: dict[str, ToolSpec]) -> dict[str, ToolSpec]:
        bad = [name for name in tools if not re.fullmatch(TOOL_NAME_PATTERN, str(name))]
        if bad:
            raise ValueError(f"tool names must be identifiers (a letter, then letters, digits or _): {bad}")
        if COMPLETE in tools:
            raise ValueError(f"'{COMPLETE}' is the intent of direct answers; give the tool another name")
        return tools

    @model_validator(mode="after")
    def _two_choices(self) -> ToolCallsSpec:
        if len(self.tools) < 2 and self.answer is None:
            raise ValueError(
                "a router needs at least two choices: declare a second tool, or allow direct answers (remove "
                "answer: null)"
            )
        return self

    @property
    def labels(self) -> list[str]:
        """The intents: one per tool, then ``complete`` when direct answers are allowed."""
        return [*self.tools, *([COMPLETE] if self.answer is not None else [])]

    def description_of(self, label: str) -> str:
        """A tool's description, or the direct answers' one."""
        if label == COMPLETE and self.answer is not None:
            return self.answer.description
        return self.tools[label].description

    def weight_of(self, label: str) -> float:
        """A label's multiplier on ``generate.samples_per_intent``."""
        if label == COMPLETE and self.answer is not None:
            return self.answer.weight
        return self.tools[label].weight

    def slots_of(self, label: str, shared: dict[str, list[str]]) -> dict[str, list[SlotValue]]:
        """The recipe's slots overlaid with the tool's (or the direct answers') own."""
        own = self.answer.slots if label == COMPLETE and self.answer is not None else self.tools[label].slots
        merged: dict[str, list[SlotValue]] = {name: list(values) for name, values in shared.items()}
        return merged | own


def derived_intents(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``intents`` mapping a raw ``tool_calls`` section gives: one per tool, then ``complete``."""
    tools = spec.get("tools") if isinstance(spec, dict) else None
    if not isinstance(tools, dict):
        return {}
    intents = {
        str(name): {"description": str(tool.get("description", "")) if isinstance(tool, dict) else ""}
        for name, tool in tools.items()
    }
    answer = spec.get("answer", {})
    if answer is not None:
        text = answer.get("description") if isinstance(answer, dict) else None
        intents[COMPLETE] = {"description": str(text or AnswerSpec().description)}
    # weights out of range are reported once, under tool_calls: the intents keep the default then
    for name, tool in tools.items():
        if isinstance(tool, dict) and _valid_weight(tool.get("weight")):
            intents[str(name)]["weight"] = tool["weight"]
    if isinstance(answer, dict) and _valid_weight(answer.get("weight")):
        intents[COMPLETE]["weight"] = answer["weight"]
    return intents


def _valid_weight(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 100
