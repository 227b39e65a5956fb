"""The shared-prefix loss: the system prompt run once per batch gives the plain forward pass's loss and gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framework.plugins.trainers._lora_fit import _batch, _encode
from framework.plugins.trainers._shared_prefix import causal_loss_sum
from framework.toolcalls.prefix import shared_prefix_length
from tests.assets.tiny_causal_lm import build_tiny_causal_lm
from tests.toolcalls.test_causal_lora_trainer import CALLS, SPEC

QUERIES = ["open src/a.py", "what does CI stand for", "read the file docs/getting-started/install.md please"]


def test_the_prefix_is_what_every_example_starts_with_and_ends_before_each_prompt_does() -> None:
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]], [3, 3, 2]) == 1
    assert shared_prefix_length([[1, 2, 3, 4, 5], [1, 2, 3, 4, 6]], [4, 4]) == 3
    assert shared_prefix_length([[7, 1], [8, 1]], [1, 1]) == 0
    assert shared_prefix_length([], []) == 0


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    config = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False)
    return tokenizer, get_peft_model(model, config)


def _loss_and_grads(model: Any, batch: dict[str, Any], prefix: Any) -> tuple[float, int, dict[str, Any]]:
    model.zero_grad(set_to_none=True)
    loss, count = causal_loss_sum(model, batch, prefix)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return float(loss.detach()), count, grads


def test_sharing_the_prefix_gives_the_plain_loss_and_gradients(lora: tuple[Any, Any]) -> None:
    import torch

    from framework.toolcalls.exports import messages, render_chat, system_prompt

    tokenizer, model = lora
    rows = []
    for i, query in enumerate(QUERIES):
        prompt, completion = render_chat(tokenizer, messages(system_prompt(SPEC), query, CALLS[i % 2][1]))  # type: ignore[arg-type]
        rows.append({"prompt": prompt, "completion": completion})
    data = _encode(tokenizer, rows, 4096, print, "train")
    shared = shared_prefix_length(data.ids, data.prompt_lengths)
    assert shared > 0.5 * min(data.prompt_lengths)  # the system prompt is most of every prompt
    plain_loss, plain_count, plain_grads = _loss_and_grads(model, _batch(data, [0, 1, 2], 0), None)
    prefix = torch.tensor([data.ids[0][:shared]])
    rest = data.without_prefix(shared)
    loss, count, grads = _loss_and_grads(model, _batch(rest, [0, 1, 2], 0), prefix)
    assert count == plain_count == sum(len(r) - n for r, n in zip(data.ids, data.prompt_lengths, strict=True))
    assert loss == pytest.approx(plain_loss, rel=1e-5)
    assert grads.keys() == plain_grads.keys() and len(grads) > 0
    for name, grad in grads.items():
        assert torch.allclose(grad, plain_grads[name], rtol=1e-4, atol=1e-6), name
    assert any(float(g.abs().sum()) > 0 for g in grads.values())


def test_the_trainer_records_the_shared_prefix_and_trains_the_same_without_it(tmp_path: Path) -> None:
    from tests.toolcalls.test_causal_lora_trainer import train

    base = build_tiny_causal_lm(tmp_path / "tiny-lm")
    _, shared, _ = train(base, tmp_path / "shared", epochs=1, dropout=0.0)
    _, plain, _ = train(base, tmp_path / "plain", epochs=1, dropout=0.0, shared_prefix=False)
    assert shared["shared_prefix_tokens"] > 0 and plain["shared_prefix_tokens"] == 0
    assert shared["history"][0]["train_loss"] == pytest.approx(plain["history"][0]["train_loss"], rel=1e-4)
    assert shared["best_eval_loss"] == pytest.approx(plain["best_eval_loss"], rel=1e-4)
