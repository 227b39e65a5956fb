"""The tool declarations of a recipe and the pydantic union built from them."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from framework.config.schema import RecipeConfig
from framework.toolcalls.schema import ToolCallSchema, describe_errors
from framework.toolcalls.spec import ArgumentSpec, ToolCallsSpec, derived_intents

TOOLS = {
    "tools": {
        "codebase_search": {
            "description": "Search code.",
            "arguments": {
                "query": {"type": "string", "min_length": 2},
                "mode": {"type": "string", "enum": ["exact", "semantic", "hybrid"]},
            },
        },
        "sandbox_exec": {
            "description": "Run Python.",
            "arguments": {
                "code": {"type": "string"},
                "timeout_s": {"type": "integer", "minimum": 1, "maximum": 30, "required": False},
                "tags": {"type": "array", "items": "string", "required": False},
            },
        },
    }
}


@pytest.fixture
def schema() -> ToolCallSchema:
    return ToolCallSchema(ToolCallsSpec.model_validate(TOOLS))


def running(tool: str, **arguments: object) -> dict:
    return {"status": "running", "thought": "a reason", "tool_use": {"tool_name": tool, "arguments": arguments}}


def test_a_valid_call_of_each_kind_parses(schema: ToolCallSchema) -> None:
    call = schema.parse(running("codebase_search", query="parse_config", mode="exact"))
    assert schema.label(call) == "codebase_search"
    answer = schema.parse('{"status": "complete", "final_answer": "JSON is a format."}')
    assert schema.label(answer) == "complete"


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (
            running("codebase_search", query="x", mode="exact"),
            "tool_use.arguments.query: String should have at least 2",
        ),
        (running("codebase_search", query="abc", mode="fuzzy"), "tool_use.arguments.mode: Input should be 'exact'"),
        (running("codebase_search", query="abc"), "tool_use.arguments.mode: Field required"),
        (running("codebase_search", query="abc", mode="exact", extra=1), "tool_use.arguments.extra: Extra inputs"),
        (running("sandbox_exec", code="print(1)", timeout_s=31), "timeout_s: Input should be less than or equal to 30"),
        (running("sandbox_exec", code="print(1)", timeout_s="30"), "timeout_s: Input should be a valid integer"),
        (running("nope"), "tool_use: Input tag 'nope' found using 'tool_name' does not match"),
        ({"status": "done"}, "<call>: Input tag 'done' found using 'status'"),
        ({"status": "complete"}, "final_answer: Field required"),
        ('{"status": "complete", "final_answer": "x"', "<call>: Invalid JSON"),
    ],
)
def test_invalid_calls_fail_with_a_readable_reason(schema: ToolCallSchema, call: object, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        schema.parse(call)  # type: ignore[arg-type]
    assert reason in describe_errors(caught.value)


def test_coerce_converts_rendered_text_to_the_declared_types(schema: ToolCallSchema) -> None:
    call = schema.coerce(running("sandbox_exec", code="print(1)", timeout_s="30"))
    assert schema.dump(call)["tool_use"]["arguments"]["timeout_s"] == 30


def test_null_fields_are_left_out_and_key_order_follows_the_models(schema: ToolCallSchema) -> None:
    call = schema.parse(running("sandbox_exec", code="print(1)"))
    lean, full = schema.to_json(call), schema.to_json(call, exclude_none=False)
    use = '{"tool_name":"sandbox_exec","arguments":{"code":"print(1)"}}'
    assert lean == '{"status":"running","thought":"a reason","tool_use":' + use + "}"
    assert json.loads(full)["tool_use"]["arguments"] == {"code": "print(1)", "timeout_s": None, "tags": None}


def test_json_schema_is_a_discriminated_union(schema: ToolCallSchema) -> None:
    text = json.dumps(schema.json_schema)
    assert '"discriminator"' in text and "CodebaseSearchArguments" in text and '"additionalProperties": false' in text
    assert set(schema.tool_json_schemas()) == {"codebase_search", "sandbox_exec"}


def test_without_direct_answers_complete_is_not_a_status() -> None:
    schema = ToolCallSchema(ToolCallsSpec.model_validate({**TOOLS, "answer": None}))
    with pytest.raises(ValidationError):
        schema.parse({"status": "complete", "final_answer": "a b"})
    assert ToolCallsSpec.model_validate({**TOOLS, "answer": None}).labels == ["codebase_search", "sandbox_exec"]


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ({"type": "string", "enum": []}, "enum has no values"),
        ({"type": "string", "enum": ["a", "a"]}, "enum repeats a value"),
        ({"type": "integer", "enum": ["a"]}, "are not of type integer"),
        ({"type": "string", "minimum": 1}, "minimum and maximum bound numbers"),
        ({"type": "integer", "pattern": "a"}, "pattern applies to strings"),
        ({"type": "string", "pattern": "("}, "pattern is not a valid regular expression"),
        (
            {"type": "string", "pattern": "(?<=a)b"},
            "look-around, including look-ahead and look-behind, is not supported",
        ),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "minimum 5.0 is above maximum 1.0"),
        ({"type": "boolean", "from_query": True}, "from_query applies to strings"),
        ({"type": "str"}, "Input should be 'string', 'integer', 'number', 'boolean' or 'array'"),
    ],
)
def test_bad_argument_declarations_are_refused(argument: dict, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ArgumentSpec.model_validate(argument)
    assert message in str(caught.value)


def test_tool_names_must_be_identifiers_and_not_complete() -> None:
    for name, message in [("file-manager", "must be identifiers"), ("complete", "the intent of direct answers")]:
        with pytest.raises(ValidationError) as caught:
            ToolCallsSpec.model_validate({"tools": {name: {"description": "d"}}})
        assert message in str(caught.value)


def test_intents_are_derived_from_the_tools() -> None:
    spec = {**TOOLS, "answer": {"description": "Answer.", "weight": 0.5}}
    assert derived_intents(spec) == {
        "codebase_search": {"description": "Search code."},
        "sandbox_exec": {"description": "Run Python."},
        "complete": {"description": "Answer.", "weight": 0.5},
    }
    config = RecipeConfig.model_validate(
        {
            "name": "r",
            "tool_calls": spec,
            "validate": {},
            "generate": {"generators": {"t": {"plugin": "tool_template"}}},
        }
    )
    assert list(config.intents) == ["codebase_search", "sandbox_exec", "complete"]


def test_a_recipe_with_tools_and_intents_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        RecipeConfig.model_validate(
            {"name": "r", "tool_calls": TOOLS, "intents": {"A": {}, "B": {}}, "validate": {}, "sources": {}}
        )
    assert "takes its intents from tool_calls.tools" in str(caught.value)


def test_rendered_text_converts_to_integer_enums_and_strings() -> None:
    spec = ToolCallsSpec.model_validate(
        {
            "tools": {
                "t": {
                    "description": "d",
                    "arguments": {"k": {"type": "integer", "enum": [1, 2]}, "q": {"type": "string"}},
                }
            }
        }
    )
    schema = ToolCallSchema(spec)
    call = schema.coerce(
        {"status": "running", "thought": "x", "tool_use": {"tool_name": "t", "arguments": {"k": "2", "q": 42}}}
    )
    assert schema.dump(call)["tool_use"]["arguments"] == {"k": 2, "q": "42"}


def test_a_pattern_must_match_the_whole_value() -> None:
    spec = ToolCallsSpec.model_validate(
        {"tools": {"t": {"description": "d", "arguments": {"p": {"type": "string", "pattern": "[a-z]+"}}}}}
    )
    schema = ToolCallSchema(spec)
    schema.parse(running("t", p="abc"))
    with pytest.raises(ValidationError, match="should match pattern"):
        schema.parse(running("t", p="123abc456"))


def test_one_tool_without_direct_answers_is_not_a_router() -> None:
    with pytest.raises(ValidationError, match="a router needs at least two choices"):
        ToolCallsSpec.model_validate({"tools": {"t": {"description": "d"}}, "answer": None})
