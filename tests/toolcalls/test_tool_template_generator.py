"""The tool_template generator: queries and calls rendered from one draw of slot values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framework.errors import StageError
from framework.plugin_api import GenerateContext
from framework.plugins.generators.tool_template import Params, tool_template
from framework.toolcalls.schema import ToolCallSchema
from framework.toolcalls.spec import ToolCallsSpec
from tests.conftest import ASSETS, load_recipe

RECIPE = ASSETS / "recipes" / "tiny_tools.yaml"


def generate(
    spec: ToolCallsSpec, counts: dict[str, int], tmp_path: Path, seed: int = 7
) -> tuple[list[dict], list[str]]:
    warnings: list[str] = []
    ctx = GenerateContext(
        name="tools", plugin_id="builtin.tool_template.v1", intents={}, slots={label: {} for label in counts},
        counts=counts, seed=seed, work_dir=tmp_path, warn=warnings.append, tool_calls=spec,
    )  # fmt: skip
    return list(tool_template(Params(), ctx)), warnings


@pytest.fixture(scope="module")
def spec() -> ToolCallsSpec:
    config = load_recipe(RECIPE).config
    assert config.tool_calls is not None
    return config.tool_calls


def test_queries_and_calls_name_the_same_slot_values(spec: ToolCallsSpec, tmp_path: Path) -> None:
    rows, warnings = generate(spec, {"file_manager": 30, "ask_human": 20, "complete": 20}, tmp_path)
    assert not warnings
    schema = ToolCallSchema(spec)
    for row in rows:
        call = schema.parse(row["output"])  # strictly: the rendered "10" became 10
        assert schema.label(call) == row["intent"]
        values: dict[str, Any] = row["provenance"]["slots"]
        if row["intent"] == "file_manager":
            assert row["output"]["tool_use"]["arguments"]["path"] == values["path"] in row["text"]
            if "lines of" in row["text"]:
                assert row["output"]["tool_use"]["arguments"]["limit"] == int(values["n"])
            else:
                assert "limit" not in row["output"]["tool_use"]["arguments"]  # optional, left out: no null
        elif row["intent"] == "complete":
            term = values["term"]
            assert term["name"] in row["text"] and row["output"]["final_answer"].endswith(f"{term['meaning']}.")
    assert {r["provenance"]["synthetic"] for r in rows} == {True}
    assert len({r["text"] for r in rows}) == len(rows)


def test_rows_are_deterministic_under_the_seed(spec: ToolCallsSpec, tmp_path: Path) -> None:
    first, _ = generate(spec, {"file_manager": 10, "complete": 5}, tmp_path)
    again, _ = generate(spec, {"file_manager": 10, "complete": 5}, tmp_path)
    other, _ = generate(spec, {"file_manager": 10, "complete": 5}, tmp_path, seed=8)
    assert first == again and first != other


def test_too_few_distinct_queries_is_a_warning(spec: ToolCallsSpec, tmp_path: Path) -> None:
    rows, warnings = generate(spec, {"ask_human": 100}, tmp_path)
    assert len(rows) == 32  # 4 leads x 8 databases
    assert warnings == ["ask_human: produced 32 unique queries of 100 asked; add templates or slot values"]


def test_a_call_that_fails_its_schema_is_kept_for_the_structural_layer(tmp_path: Path) -> None:
    spec = ToolCallsSpec.model_validate(
        {
            "tools": {
                "t": {
                    "description": "d",
                    "arguments": {"n": {"type": "integer"}},
                    "templates": [{"query": "q {{ v }}", "thought": "a reason", "arguments": {"n": "{{ v }}"}}],
                    "slots": {"v": ["x", "y"]},
                }
            },
        }
    )
    rows, _ = generate(spec, {"t": 2}, tmp_path)
    assert sorted(r["output"]["tool_use"]["arguments"]["n"] for r in rows) == ["x", "y"]


def test_a_recipe_without_tools_is_told_which_generator_to_use(tmp_path: Path) -> None:
    ctx = GenerateContext(name="g", plugin_id="p", intents={}, slots={}, counts={}, seed=1, work_dir=tmp_path)
    with pytest.raises(StageError, match="for a classifier recipe use the template generator"):
        list(tool_template(Params(), ctx))
