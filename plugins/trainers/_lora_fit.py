"""The ``causal_lora`` trainer's work (torch, transformers, peft). Imported when the trainer runs, not when the
plugin registers (:mod:`.causal_lora`, which says what it does)."""

from __future__ import annotations

import copy
import importlib.util
import math
import os
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from framework.errors import StageError
from framework.io import atomic_write_json
from framework.models import checkpoint_from_gguf, hub_error, quiet_transformers, resolve_model
from framework.plugin_api import TrainContext, TrainResult
from framework.plugins.trainers._batching import length_grouped_batches
from framework.plugins.trainers._shared_prefix import IGNORE, causal_loss_sum
from framework.toolcalls.prefix import shared_prefix_length

if TYPE_CHECKING:  # the plugin module imports this one when the plugin runs
    from framework.plugins.trainers.causal_lora import Params


@dataclass
class _Examples:
    ids: list[list[int]]
    labels: list[list[int]]
    prompt_lengths: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def without_prefix(self, length: int) -> _Examples:
        """The examples after their first ``length`` tokens (the shared prefix)."""
        return _Examples(
            [row[length:] for row in self.ids],
            [row[length:] for row in self.labels],
            [n - length for n in self.prompt_lengths],
        )


def _encode(tokenizer: Any, rows: list[dict[str, Any]], max_length: int, warn: Any, split: str) -> _Examples:
    """Prompt and completion tokenised apart; the prompt's labels are ``IGNORE``."""
    ids, labels, prompt_lengths, dropped = [], [], [], 0
    for row in rows:
        prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        if len(prompt) + len(completion) > max_length:
            dropped += 1
            continue
        ids.append(prompt + completion)
        labels.append([IGNORE] * len(prompt) + completion)
        prompt_lengths.append(len(prompt))
    if dropped:
        warn(f"{dropped} {split} examples are longer than max_length {max_length} tokens and were left out")
    return _Examples(ids, labels, prompt_lengths)


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


def choose_quantization(setting: str, device: str, has_bitsandbytes: bool) -> tuple[str, str | None]:
    """``(nf4 | none, a warning or None)``: QLoRA (4-bit NF4 base weights) needs CUDA and bitsandbytes."""
    if setting == "none":
        return "none", None
    if device != "cuda":
        if setting == "nf4":
            raise StageError(
                "trainer.quantization=nf4 (QLoRA) needs a CUDA device and bitsandbytes; this run trains on the CPU. "
                "Use trainer.quantization=auto (plain LoRA on the CPU) or train where torch sees a GPU"
            )
        return "none", None
    if not has_bitsandbytes:
        fix = "pip install 'intentcraft[gpu]' (bitsandbytes)"
        if setting == "nf4":
            raise StageError(f"trainer.quantization=nf4 (QLoRA) needs bitsandbytes, which is not installed: {fix}")
        return "none", f"CUDA without bitsandbytes: plain LoRA on float32 weights; for QLoRA, {fix}"
    return "nf4", None


def _quantized_kwargs(quantization: str) -> dict[str, Any]:
    if quantization != "nf4":
        return {"dtype": torch.float32}
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )  # fmt: skip
    return {"quantization_config": config, "device_map": {"": 0}, "dtype": torch.bfloat16}


def _load(params: Params, cache_root: Path | None, quantization: str) -> tuple[Any, Any, str, str]:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    source, origin = base_checkpoint(params.model, cache_root)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **_quantized_kwargs(quantization))
    except OSError as exc:
        raise hub_error(params.model, exc) from exc
    if quantization == "nf4":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
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


def _eval_loss(run: _Run) -> float | None:
    """Mean loss per completion token over the eval examples."""
    data, model = run.evals, run.model
    if not len(data):
        return None
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), run.params.batch_size):
            indices = list(range(start, min(start + run.params.batch_size, len(data))))
            batch = {key: value.to(run.device) for key, value in _batch(data, indices, run.pad_id).items()}
            loss, count = causal_loss_sum(model, batch, run.prefix)
            total += float(loss)
            tokens += count
    model.train()
    return total / max(tokens, 1)


@dataclass
class _Run:
    """What an epoch needs: the examples after the shared prefix, and the prefix (None: not shared)."""

    params: Params
    model: Any
    train: _Examples
    evals: _Examples
    pad_id: int
    rng: random.Random
    device: torch.device
    prefix: torch.Tensor | None


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
    prefix_tokens = 0 if run.prefix is None else run.prefix.shape[1]
    started, loss_sum, loss_tokens, seen_tokens = time.perf_counter(), 0.0, 0, 0
    for step, indices in enumerate(batches, start=1):
        batch = {key: value.to(run.device) for key, value in _batch(run.train, indices, run.pad_id).items()}
        summed, completion_tokens = causal_loss_sum(model, batch, run.prefix)
        loss = summed / max(completion_tokens, 1)
        (loss / params.grad_accumulation).backward()
        if step % params.grad_accumulation == 0 or step == len(batches):
            if params.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], params.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        loss_sum += float(summed.detach())
        loss_tokens += completion_tokens
        seen_tokens += int(batch["attention_mask"].sum()) + prefix_tokens * len(indices)
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
        eval_loss = _eval_loss(run)
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


def train_lora(train_rows: list[dict], eval_rows: list[dict], params: Params, ctx: TrainContext) -> TrainResult:
    """Train LoRA adapters on the chat records' completions; writes ``adapter/`` (safetensors) and ``training.json``."""
    seed = ctx.seed if params.seed is None else params.seed
    torch.manual_seed(seed)
    torch.set_num_threads(params.threads or os.cpu_count() or 1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = _device(params)
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    quantization, warning = choose_quantization(params.quantization, device.type, has_bnb)
    if warning:
        ctx.warn(warning)
    tokenizer, model, source, origin = _load(params, ctx.cache_dir, quantization)
    train = _encode(tokenizer, train_rows, params.max_length, ctx.warn, "train")
    evals = _encode(tokenizer, eval_rows, params.max_length, ctx.warn, "eval")
    if not len(train):
        raise StageError(f"no train example fits in trainer.max_length={params.max_length} tokens; raise it")
    if not len(evals):
        ctx.warn("the eval split is empty: no early stopping, the last epoch is kept")
    if quantization == "none":  # a 4-bit model is placed on the GPU as it loads, and cannot be moved
        model.to(device)
    shared = shared_prefix_length(train.ids + evals.ids, train.prompt_lengths + evals.prompt_lengths)
    prefix = None
    if params.shared_prefix and shared:
        prefix = torch.tensor([train.ids[0][:shared]], device=device)
        train, evals = train.without_prefix(shared), evals.without_prefix(shared)
        ctx.log(f"the first {shared} tokens of every example (the system prompt) run once per batch")
    run = _Run(params, model, train, evals, tokenizer.pad_token_id, random.Random(seed), device, prefix)
    started = time.perf_counter()
    history = _fit(run, ctx)
    out = ctx.work_dir / "adapter"
    (model if quantization == "nf4" else model.to("cpu")).save_pretrained(str(out), safe_serialization=True)
    trainable, total = model.get_nb_trainable_parameters()
    scored = [h for h in history if h["eval_loss"] is not None]
    best = min(scored, key=lambda h: h["eval_loss"]) if scored else history[-1]  # no eval split: the last is kept
    metrics = {
        "model": params.model,
        "model_origin": origin,
        "base_checkpoint": source,
        "device": device.type,
        "precision": "nf4 base, bf16 compute (QLoRA)" if quantization == "nf4" else "fp32",
        "threads": torch.get_num_threads(),
        "train_rows": len(train),
        "shared_prefix_tokens": 0 if prefix is None else shared,
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
