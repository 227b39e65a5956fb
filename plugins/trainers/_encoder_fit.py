"""The ``encoder`` trainer's work (torch, transformers): fine-tune a small transformer encoder for sequence
classification. Imported when the trainer runs, not when the plugin registers (:mod:`.encoder`)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from framework.errors import StageError
from framework.io import atomic_write_json
from framework.models import hub_error, quiet_transformers, resolve_model
from framework.plugin_api import TrainContext, TrainResult
from framework.plugins.trainers._batching import Encoded, collate, encode, length_grouped_batches, sequential_batches
from framework.plugins.trainers._pooled import (
    LOGISTIC_C_GRID,
    PooledClassifier,
    checkpoint_pooling,
    init_head_from_class_means,
    init_head_from_logistic,
)

if TYPE_CHECKING:  # the plugin module imports this one when the plugin runs
    from framework.plugins.trainers.encoder import EncoderParams


def _device_and_precision(params: EncoderParams, warn: Any) -> tuple[torch.device, torch.dtype | None]:
    cuda = torch.cuda.is_available()
    if params.device == "cuda" and not cuda:
        raise StageError("trainer.device=cuda but no CUDA device is available; use trainer.device=auto or cpu.")
    device = torch.device("cuda" if (params.device == "cuda" or (params.device == "auto" and cuda)) else "cpu")
    if device.type == "cpu":
        if params.precision in ("fp16", "bf16"):
            warn(f"trainer.precision={params.precision} needs CUDA; training in fp32 on the CPU")
        return device, None
    if params.precision == "fp32":
        return device, None
    if params.precision == "auto":
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.bfloat16 if params.precision == "bf16" else torch.float16


def pooling_of(params: EncoderParams, source: str, is_local: bool, warn: Any = None) -> str:
    """``mean`` or ``cls_head``: ``params.pooling``, with ``auto`` resolved from the checkpoint's own pooling."""
    if params.pooling != "auto":
        return params.pooling
    declared = checkpoint_pooling(Path(source)) if is_local else _hub_pooling(source)
    if declared is None and not is_local and warn is not None:
        warn(
            f"trainer.pooling=auto: no sentence-transformers pooling config found for {source} (neither in the "
            "cache nor on the hub), so the [CLS] head is used; set trainer.pooling=mean or cls_head to choose"
        )
    return "mean" if declared == "mean" else "cls_head"


def _hub_pooling(source: str) -> str | None:
    """The pooling a hub checkpoint declares: its ``modules.json`` and its Pooling module's ``config.json``, each
    from the local cache or the hub (None when either is missing or unreachable)."""
    from transformers.utils import cached_file

    def fetch(name: str) -> str | None:
        try:
            return cached_file(source, name, _raise_exceptions_for_missing_entries=False)
        except OSError:
            return None

    modules = fetch("modules.json")
    if modules is None:
        return None
    try:
        entries = json.loads(Path(modules).read_text(encoding="utf-8"))
        folder = next(str(e.get("path", "")) for e in entries if str(e.get("type", "")).endswith(".Pooling"))
    except (OSError, ValueError, StopIteration, AttributeError, TypeError):
        return None
    if fetch(f"{folder}/config.json" if folder else "config.json") is None:
        return None
    return checkpoint_pooling(Path(modules).parent)


def _load(params: EncoderParams, labels: list[str], warn: Any = None) -> tuple[Any, Any, str, str]:
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    resolved = resolve_model(params.model)
    quiet_transformers()  # "newly initialised classifier" is expected here
    try:
        pooling = pooling_of(params, resolved.source, resolved.is_local, warn)
        tokenizer = AutoTokenizer.from_pretrained(resolved.source)
        if pooling == "mean":
            model = PooledClassifier(AutoModel.from_pretrained(resolved.source), labels)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                resolved.source,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                ignore_mismatched_sizes=True,
            )
    except OSError as exc:
        if resolved.is_local:
            raise StageError(f"trainer.model={params.model}: cannot load {resolved.source}: {exc}") from exc
        raise hub_error(params.model, exc) from exc
    return tokenizer, model, resolved.origin, pooling


# torch's single-kernel AdamW, as transformers.Trainer uses by default; the per-tensor loop torch otherwise picks on
# the CPU spends ~6x longer in the optimizer step (130 vs 20 ms a step for MiniLM on 2 cores).
_FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def _optimizer(model: torch.nn.Module, params: EncoderParams, steps: int) -> tuple[Any, Any]:
    from transformers import get_linear_schedule_with_warmup

    decay, no_decay, head, head_bias = [], [], [], []
    for name, weight in model.named_parameters():
        plain = name.endswith("bias") or "LayerNorm" in name or "norm" in name.lower()
        if params.head_lr is not None and name.startswith("classifier."):
            (head_bias if plain else head).append(weight)
        else:
            (no_decay if plain else decay).append(weight)
    groups = [{"params": decay, "weight_decay": params.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if params.head_lr is not None:  # the head's own rate (its own groups only then: the default keeps two groups)
        groups += [
            {"params": head, "weight_decay": params.weight_decay, "lr": params.head_lr},
            {"params": head_bias, "weight_decay": 0.0, "lr": params.head_lr},
        ]
    fused = next(model.parameters()).device.type in _FUSED_ADAMW_DEVICES
    optimizer = torch.optim.AdamW(groups, lr=params.lr, fused=fused)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(steps * params.warmup_ratio), steps)
    return optimizer, scheduler


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _batches(data: Encoded, indices: Iterator[list[int]] | list[list[int]], pad_id: int, device: torch.device):
    for batch in indices:
        yield len(batch), {k: v.to(device) for k, v in collate(data, batch, pad_id).items()}


@torch.no_grad()
def evaluate(
    model: Any, data: Encoded, pad_id: int, device: torch.device, dtype: torch.dtype | None
) -> dict[str, float]:
    """Accuracy and mean loss on an encoded split."""
    model.eval()
    correct, loss_sum = 0, 0.0
    for size, batch in _batches(data, sequential_batches(data, 128), pad_id, device):
        with _autocast(device, dtype):
            out = model(**batch)
        loss_sum += float(out.loss) * size
        correct += int((out.logits.argmax(-1) == batch["labels"]).sum())
    return {"accuracy": correct / len(data), "loss": loss_sum / len(data)}


def _labels_of(rows: list[dict[str, Any]], labels: list[str]) -> list[int]:
    index = {label: i for i, label in enumerate(labels)}
    return [index[row["intent"]] for row in rows]


@dataclass
class _Session:
    """Everything one fine-tuning run works with."""

    params: EncoderParams
    model: Any
    tokenizer: Any
    origin: str
    pooling: str
    device: torch.device
    dtype: torch.dtype | None
    train: Encoded
    evals: Encoded
    rng: random.Random
    scaler: Any = None
    head_c: float | None = None  # the logistic head's C, when head_init is logistic

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0


def _prepare(
    train_rows: list[dict], eval_rows: list[dict], params: EncoderParams, ctx: TrainContext, seed: int
) -> _Session:
    torch.manual_seed(seed)
    torch.set_num_threads(params.threads or os.cpu_count() or 1)
    device, dtype = _device_and_precision(params, ctx.warn)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    tokenizer, model, origin, pooling = _load(params, ctx.labels, ctx.warn)
    model.to(device)
    train = encode(tokenizer, [r["text"] for r in train_rows], _labels_of(train_rows, ctx.labels), params.max_length)
    evals = encode(tokenizer, [r["text"] for r in eval_rows], _labels_of(eval_rows, ctx.labels), params.max_length)
    if not len(evals):
        ctx.warn("the eval split is empty: no early stopping, the last epoch is kept")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    session = _Session(
        params, model, tokenizer, origin, pooling, device, dtype, train, evals, random.Random(seed), scaler
    )
    if isinstance(model, PooledClassifier) and params.head_init != "random":
        _init_head(session, ctx)
    return session


def _init_head(session: _Session, ctx: TrainContext) -> None:
    """Start the head from the frozen embeddings: their class means, or a logistic regression on them."""
    model = session.model
    train = _frozen_embeddings(session, session.train, ctx, "train")
    if session.params.head_init == "class_means":
        init_head_from_class_means(model, *train)
        return
    evals = _frozen_embeddings(session, session.evals, ctx, "eval")
    bar = ctx.task("train: logistic regression head, one fit per C", len(LOGISTIC_C_GRID), unit="fits")
    session.head_c = init_head_from_logistic(model, train, evals, on_fit=bar)


@torch.no_grad()
def _frozen_embeddings(
    session: _Session, data: Encoded, ctx: TrainContext, split: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled embeddings, label ids) of one split under the untrained encoder (one pass)."""
    model = session.model
    model.eval()
    batches = list(sequential_batches(data, 128))
    bar = ctx.task(f"train: frozen embeddings of the {split} split", len(batches), unit="batches")
    pooled, label_ids = [], []
    for _, batch in _batches(data, batches, session.pad_id, session.device):
        with _autocast(session.device, session.dtype):
            pooled.append(
                model.pooled(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")).float()
            )
        label_ids.append(batch["labels"])
        bar(1)
    if not pooled:
        width = model.classifier.in_features
        return torch.zeros((0, width), device=session.device), torch.zeros(0, dtype=torch.long, device=session.device)
    return torch.cat(pooled), torch.cat(label_ids)


def _train_epoch(session: _Session, optimizer: Any, scheduler: Any, bar: Any) -> float:
    model, params, scaler = session.model, session.params, session.scaler
    model.train()
    seen, loss_sum, started = 0, 0.0, time.perf_counter()
    batches = length_grouped_batches(session.train, params.batch_size, session.rng, params.group_by_length)
    for size, batch in _batches(session.train, batches, session.pad_id, session.device):
        with _autocast(session.device, session.dtype):
            loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if params.max_grad_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), params.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        seen += size
        loss_sum += float(loss.detach()) * size
        bar.note(f"loss {loss_sum / seen:.4f} · {seen / (time.perf_counter() - started):.0f} ex/s")
        bar(1)
    return loss_sum / seen


def _epoch_record(session: _Session, epoch: int, loss: float, seconds: float) -> dict[str, Any]:
    evals = session.evals
    scores = evaluate(session.model, evals, session.pad_id, session.device, session.dtype) if len(evals) else {}
    return {
        "epoch": epoch,
        "loss": loss,
        "eval_accuracy": scores.get("accuracy"),
        "eval_loss": scores.get("loss"),
        "seconds": round(seconds, 2),
        "examples_per_second": round(len(session.train) / seconds, 1),
    }


def _score(record: dict[str, Any]) -> tuple[float, float]:
    """Higher is better: eval accuracy, then lower eval loss; without eval, later epochs win."""
    if record["eval_accuracy"] is None:
        return (record["epoch"], 0.0)
    return (record["eval_accuracy"], -record["eval_loss"])


def _fit(session: _Session, ctx: TrainContext) -> list[dict[str, Any]]:
    """Train epoch by epoch, keep the best weights, stop early when eval accuracy stalls."""
    params = session.params
    steps_per_epoch = -(-len(session.train) // params.batch_size)
    optimizer, scheduler = _optimizer(session.model, params, steps_per_epoch * params.epochs)
    history: list[dict[str, Any]] = []
    best_state, stale = None, 0
    for epoch in range(1, params.epochs + 1):
        started = time.perf_counter()
        bar = ctx.task(f"train: epoch {epoch}/{params.epochs}", steps_per_epoch, unit="steps")
        loss = _train_epoch(session, optimizer, scheduler, bar)
        record = _epoch_record(session, epoch, loss, time.perf_counter() - started)
        history.append(record)
        shown = "n/a" if record["eval_accuracy"] is None else f"{record['eval_accuracy']:.4f}"
        ctx.log(f"epoch {epoch}/{params.epochs}: train loss {loss:.4f}, eval accuracy {shown}, {record['seconds']} s")
        if best_state is None or _score(record) > max(_score(h) for h in history[:-1]):
            best_state, stale = copy.deepcopy(session.model.state_dict()), 0
            continue
        stale += 1
        if params.early_stopping_patience and len(session.evals) and stale >= params.early_stopping_patience:
            ctx.log(f"early stopping after epoch {epoch}: no better eval accuracy for {stale} epochs")
            break
    session.model.load_state_dict(best_state)
    return history


def train_encoder(
    train_rows: list[dict], eval_rows: list[dict], params: EncoderParams, ctx: TrainContext
) -> TrainResult:
    """Fine-tune a transformer encoder for sequence classification, keeping the best epoch on the eval split."""
    seed = ctx.seed if params.seed is None else params.seed
    session = _prepare(train_rows, eval_rows, params, ctx, seed)
    history = _fit(session, ctx)
    out = ctx.work_dir / "model"
    session.model.to("cpu").save_pretrained(out, safe_serialization=True)
    session.tokenizer.save_pretrained(out)
    best = max(history, key=_score)
    metrics = {
        "model": params.model,
        "model_origin": session.origin,
        "pooling": session.pooling,
        "head_init": params.head_init if session.pooling == "mean" else "random",
        "head_c": session.head_c,
        "device": session.device.type,
        "precision": str(session.dtype or "fp32"),
        "threads": torch.get_num_threads(),
        "train_rows": len(session.train),
        "eval_rows": len(session.evals),
        "seed": seed,
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "best_eval_accuracy": best["eval_accuracy"],
        "history": history,
        "seconds_per_epoch": round(sum(h["seconds"] for h in history) / len(history), 2),
    }
    atomic_write_json(ctx.work_dir / "training.json", metrics)
    return TrainResult(out, metrics)
