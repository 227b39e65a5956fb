"""A tiny Llama causal LM built locally from a config (random weights) with a tiny ChatML tokenizer: seconds, no
download. For tests of LoRA training and constrained decoding."""

from __future__ import annotations

from pathlib import Path

from tests.assets.tiny_chat_tokenizer import CHATML, build_tiny_chat_tokenizer


def build_tiny_causal_lm(target: Path, seed: int = 0, chat_template: str | None = CHATML) -> Path:
    """A 2-layer, 32-wide Llama and its tokenizer (with ``chat_template``), saved in Hugging Face layout."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    build_tiny_chat_tokenizer(target, chat_template)
    tokenizer = AutoTokenizer.from_pretrained(str(target))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(target, safe_serialization=True)
    return target
