"""The system prompt, chat rendering and token counts behind the tool_export stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.toolcalls.exports import TokenStats, messages, render_chat, system_prompt
from framework.toolcalls.schema import ToolCallSchema
from framework.toolcalls.spec import ToolCallsSpec
from tests.assets.tiny_chat_tokenizer import build_tiny_chat_tokenizer

SPEC = ToolCallsSpec.model_validate(
    {
        "tools": {
            "file_manager": {
                "description": "Read files.",
                "rules": ["never guess a path"],
                "arguments": {
                    "path": {"type": "string", "from_query": True, "description": "the file"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "required": False},
                    "mode": {"type": "string", "enum": ["read", "list"]},
                },
            }
        },
        "answer": {"description": "Answer general questions.", "rules": ["keep it short"]},
        "rules": [{"when": "a file is named.", "use": "file_manager"}],
    }
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(build_tiny_chat_tokenizer(tmp_path_factory.mktemp("tok"))))


def test_system_prompt_lists_tools_arguments_rules_and_answers() -> None:
    text = system_prompt(SPEC)
    assert text.startswith(SPEC.system_prompt)
    for line in [
        "- file_manager: Read files.",
        "    - path (string, required, taken from the request): the file",
        "    - limit (integer, optional, >= 1, <= 100)",
        "    - mode (one of read|list, required)",
        "    Rule: never guess a path",
        "Answer directly (complete): Answer general questions.",
        "    Rule: keep it short",
        "- When a file is named: file_manager.",
    ]:
        assert line in text.splitlines(), line


def test_render_chat_cuts_the_assistant_turn_out(tokenizer: object) -> None:
    turns = messages("SYS", "open a.py", '{"status":"complete","final_answer":"ok then"}')
    prompt, completion = render_chat(tokenizer, turns)
    assert prompt == "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nopen a.py<|im_end|>\n<|im_start|>assistant\n"
    assert completion == '{"status":"complete","final_answer":"ok then"}<|im_end|>\n'


def test_a_template_that_does_not_render_the_prompt_as_a_prefix_is_refused(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    odd = "{% for m in messages %}{{ m['content'] }}|{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    tokenizer = AutoTokenizer.from_pretrained(str(build_tiny_chat_tokenizer(tmp_path, chat_template=odd)))
    with pytest.raises(ValueError, match="cannot be cut out"):
        render_chat(tokenizer, messages("S", "U", "A"))


def test_token_stats_count_what_null_fields_cost(tokenizer: object) -> None:
    schema, stats = ToolCallSchema(SPEC), TokenStats()
    call = {"status": "running", "thought": "named file", "tool_use": {"tool_name": "file_manager",
            "arguments": {"path": "a.py", "mode": "read"}}}  # fmt: skip
    stats.add(tokenizer, schema, call, "PROMPT")
    summary = stats.summary()
    assert summary["examples"] == 1 and summary["saved_per_example_mean"] > 0
    full = schema.to_json(schema.parse(call), exclude_none=False)
    assert '"limit":null' in full
    lean_tokens = len(tokenizer.encode(schema.to_json(schema.parse(call)), add_special_tokens=False))  # type: ignore[attr-defined]
    assert summary["completion_tokens_mean"] == lean_tokens
