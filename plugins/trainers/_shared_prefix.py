"""Causal-LM loss with the examples' shared prefix computed once per batch.

Every tool-call conversation starts with the same system prompt, most of each example's tokens (on the shipped
agent_router recipe, 92%). The prefix's keys and values do not depend on what follows it (causal attention), so
a batch runs it once at batch size 1, repeats its cache across the batch, and runs each example's remaining
tokens on top. Gradients flow through the repeated cache into the prefix pass, so the loss and its gradients
are those of the plain forward pass up to float rounding (tested); what changes is that one LoRA dropout mask
is drawn for the prefix of the whole batch instead of one per example.

The prefix pass asks for no logits (``logits_to_keep=1`` where the model takes it), and the prefix ends before
every example's first completion token, so no loss term lies on it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from framework.toolcalls.decoding import cache_argument

IGNORE = -100
"""Label of a token that is not in the loss (the prompt's, and padding)."""


@functools.cache
def _takes(model_class: type, name: str) -> bool:
    try:
        return name in inspect.signature(model_class.forward).parameters
    except (TypeError, ValueError):
        return False


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def causal_loss_sum(
    model: Any, batch: dict[str, torch.Tensor], prefix: torch.Tensor | None
) -> tuple[torch.Tensor, int]:
    """``(sum of the completion tokens' cross-entropy, their count)`` for a right-padded batch.

    ``batch`` holds ``input_ids``, ``attention_mask`` and ``labels`` of the tokens after ``prefix`` (shape
    ``[1, P]``, the tokens every example starts with), or of the whole examples when ``prefix`` is None.
    """
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    if prefix is None or prefix.shape[1] == 0:
        logits = model(input_ids=ids, attention_mask=mask).logits
    else:
        key = cache_argument()
        extra = {"logits_to_keep": 1} if _takes(type(_base(model)), "logits_to_keep") else {}
        head = model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True, **extra)
        cache = getattr(head, key)
        cache.batch_repeat_interleave(ids.shape[0])
        seen = torch.ones(ids.shape[0], prefix.shape[1], dtype=mask.dtype, device=mask.device)
        full_mask = torch.cat([seen, mask], 1)
        logits = model(input_ids=ids, attention_mask=full_mask, use_cache=True, **{key: cache}).logits
    targets = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return loss, int((targets != IGNORE).sum())
