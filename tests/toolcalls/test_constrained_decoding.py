"""Decoding constrained to the tool-call union: even an untrained model's answer parses into the union."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.toolcalls.decoding import ConstrainedDecoder, bounded_schema, token_budget
from framework.toolcalls.exports import system_prompt
from framework.toolcalls.schema import ToolCallSchema
from tests.assets.tiny_chat_tokenizer import build_tiny_chat_tokenizer
from tests.conftest import ASSETS, load_recipe

SPEC = load_recipe(ASSETS / "recipes" / "tiny_tools.yaml").config.tool_calls
assert SPEC is not None


def tiny_causal_lm(vocab_size: int, eos: int, seed: int) -> object:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True, eos_token_id=eos,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(build_tiny_chat_tokenizer(tmp_path_factory.mktemp("tok"))))


def test_bounded_schema_caps_free_strings_and_arrays() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "string", "maxLength": 5}, "c": {"type": "string", "enum": ["x"]},
        "d": {"type": "array", "items": {"type": "string"}}}}  # fmt: skip
    bounded = bounded_schema(schema, max_chars=50)
    props = bounded["properties"]
    assert props["a"]["maxLength"] == 50 and props["b"]["maxLength"] == 5 and "maxLength" not in props["c"]
    assert props["d"]["maxItems"] == 16 and props["d"]["items"]["maxLength"] == 50
    assert "maxLength" not in schema["properties"]["a"]  # the input is left as it was
    assert token_budget(bounded) > 4 * (50 + 5 + 16 * 50)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_untrained_model_still_writes_a_valid_call(tokenizer: object, seed: int) -> None:
    schema = ToolCallSchema(SPEC)  # type: ignore[arg-type]
    model = tiny_causal_lm(len(tokenizer), tokenizer.eos_token_id, seed)  # type: ignore[arg-type, attr-defined]
    decoder = ConstrainedDecoder(model, tokenizer, schema, max_chars=40)
    for query in ["open src/a.py", "drop the orders database", "what does JSON stand for?"]:
        turns = [{"role": "system", "content": system_prompt(SPEC)}, {"role": "user", "content": query}]  # type: ignore[arg-type]
        prompt = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]
        decoded = decoder.generate(prompt)
        assert decoded.complete and decoded.tokens <= decoder.budget
        call = schema.parse(decoded.text)  # raises if the JSON or the schema were broken
        assert schema.label(call) in SPEC.labels  # type: ignore[union-attr]
        assert decoder.generate(prompt).text == decoded.text  # greedy: the same answer again


def test_a_schema_llguidance_cannot_compile_is_refused(tokenizer: object, monkeypatch: pytest.MonkeyPatch) -> None:
    schema = ToolCallSchema(SPEC)  # type: ignore[arg-type]
    monkeypatch.setattr(ToolCallSchema, "json_schema", {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}})
    with pytest.raises(ValueError, match="llguidance refuses the tool-call schema"):
        ConstrainedDecoder(tiny_causal_lm(len(tokenizer), 1, 0), tokenizer, schema)  # type: ignore[arg-type]


def test_the_shipped_recipes_union_compiles(tmp_path: Path, tokenizer: object) -> None:
    spec = load_recipe(Path("recipes/agent_router.yaml").resolve()).config.tool_calls
    decoder = ConstrainedDecoder(tiny_causal_lm(len(tokenizer), 1, 0), tokenizer, ToolCallSchema(spec))  # type: ignore[arg-type]
    assert decoder.budget > 0
