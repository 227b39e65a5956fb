"""What the recipe check refuses in a tool-call recipe before any stage runs: each problem with its key path."""

from __future__ import annotations

import pytest

from framework.errors import RecipeError
from tests.conftest import ASSETS, REPO, load_recipe

TINY_TOOLS = ASSETS / "recipes" / "tiny_tools.yaml"


def problems(path: object, *overrides: str) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path, *overrides)  # type: ignore[arg-type]
    return [issue.render() for issue in caught.value.issues]


def test_a_template_that_fails_to_render_is_found_by_the_check() -> None:
    found = problems(TINY_TOOLS, "tool_calls.answer.templates.0.final_answer='{{ term.nmae }} stands for it.'")
    assert len(found) == 1 and found[0].startswith("tool_calls.answer.templates[0]: cannot be rendered with the first")
    assert "nmae" in found[0]


def test_a_template_whose_call_fails_the_schema_is_found_by_the_check() -> None:
    found = problems(TINY_TOOLS, "tool_calls.tools.file_manager.templates.1.arguments.limit=lots")
    assert found == [
        "tool_calls.tools.file_manager.templates[1]: renders (with the first value of each slot) a call that fails "
        "the schema: tool_use.arguments.limit: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_the_tool_calls_target_needs_tools_and_the_structural_layer() -> None:
    found = problems(REPO / "recipes" / "code_search.yaml", "target=tool_calls")
    assert len(found) == 2 and found[0].startswith("tool_calls: the tool_calls target exports tool calls")
    assert found[1] == (
        "trainer.plugin: the tool_calls target trains a causal LM on chat records; encoder does not (use override "
        "/trainer: causal_lora)"
    )
    found = problems(TINY_TOOLS, "+validate.layers.structural.enabled=false")
    assert len(found) == 1 and found[0].startswith("validate.layers: no enabled tool_structural layer")


def test_the_export_tokenizer_must_be_the_trained_models() -> None:
    found = problems(TINY_TOOLS, "tool_export.tokenizer=smollm2", "trainer.model=/some/where")
    assert found == [
        "tool_export.tokenizer: is smollm2, but trainer.model is /some/where: the chat files are rendered with the "
        "tokenizer's chat template, which the model must share; set both to the same model (or leave "
        "tool_export.tokenizer null)"
    ]


def test_the_classifier_template_generator_is_refused_in_a_tool_recipe() -> None:
    found = problems(TINY_TOOLS, "+generate.generators.intents.plugin=template")
    assert found == [
        "generate.generators.intents.plugin: the template generator writes rows without tool calls; a recipe with "
        "tool_calls uses the tool_template generator (override /generate: tool_template)"
    ]


def test_the_tool_template_generator_is_refused_without_tools() -> None:
    found = problems(ASSETS / "recipes" / "tiny.yaml", "generate=tool_template")
    assert any("the tool_template generator makes tool-call rows from tool_calls.tools" in line for line in found)


def test_the_selector_must_be_a_classifier_trainer() -> None:
    found = problems(TINY_TOOLS, "selector.plugin=causal_lora")
    assert found == [
        "selector.plugin: the selector classifies queries into tools; causal_lora trains on chat records (use "
        "selector: encoder)"
    ]
    assert load_recipe(TINY_TOOLS, "selector.enabled=false").config.target == "tool_calls"
    assert load_recipe(TINY_TOOLS, "~selector").config.selector is None  # optional: no selector is trained
