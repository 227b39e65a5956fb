"""Benchmark a recipe's router on real data, side by side in one run (run by hand, not in CI).

    .venv/bin/python bench/bench_router.py                    # recipe banking77, from the repository root
    .venv/bin/python bench/bench_router.py --recipe code_search --queries 200
    .venv/bin/python bench/bench_router.py --run outputs/runs/banking77/<time>     # measure a finished run

It builds (or reuses from the cache) every stage of the recipe, then measures on the test split:
accuracy and ECE of the shipped INT8 bundle, INT8 vs fp32 accuracy, single-query latency of the bundle vs
PyTorch fp32 eager, batch throughput, and training time per epoch vs a plain transformers training loop
and the same loop with transformers.Trainer's defaults, fused AdamW and gradient clipping (in A-B-C-C-B-A
order, ``--train-repeats`` rounds).
Every figure is measured here and now; ratios compare numbers taken in this same process.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from _pipeline import build
from _timing import time_each

from framework.evaluation.calibration import ece_noise
from framework.io import read_json, read_jsonl
from framework.plugins.calibrators.temperature import calibration_errors, fit_temperature, softmax
from framework.plugins.trainers._pooled import load_classifier
from framework.runtime import Router
from framework.runtime.onnx_classifier import OnnxTextClassifier
from framework.stages.common import read_train_facts


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def timings(seconds: list[float]) -> str:
    return ", ".join(f"{value:.1f}" for value in seconds)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    return calibration_errors(probs, labels, bins)[0]


def ece_diagnostics(logits: np.ndarray, labels: np.ndarray, temperature: float) -> tuple[str, str]:
    """The test ECE a perfectly calibrated model would show by chance, and the ECE at the test set's own
    NLL-optimal temperature (an oracle no recipe can use: it shows how much of the gap the fit on eval costs)."""
    noise = ece_noise(softmax(logits, temperature).max(axis=1), 15)
    oracle = fit_temperature(logits, labels)
    return (
        f"{noise.mean:.4f} mean, {noise.p95:.4f} p95",
        f"{ece(softmax(logits, oracle), labels):.4f} (T={oracle:.3f})",
    )


def torch_model(train_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    model_dir = train_dir / "model"
    return AutoTokenizer.from_pretrained(model_dir), load_classifier(model_dir).eval()


def plain_loop_epoch(
    train_dir: Path,
    rows: list[dict],
    labels: list[str],
    batch_size: int,
    lr: float,
    max_length: int,
    clip: float | None = None,
    fused: bool = False,
) -> float:
    """One epoch of a plain transformers fine-tuning loop (the reference for training speed): random batches,
    torch's default AdamW. ``clip`` adds gradient clipping at that norm and ``fused`` the single-kernel AdamW,
    as transformers.Trainer does by default (and intentcraft's loop too)."""
    import torch
    from transformers import AutoTokenizer, DataCollatorWithPadding

    model_dir = train_dir / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_classifier(model_dir).train()
    collator = DataCollatorWithPadding(tokenizer)
    index = {label: i for i, label in enumerate(labels)}
    features = [
        {**tokenizer(row["text"], truncation=True, max_length=max_length), "labels": index[row["intent"]]}
        for row in rows
    ]
    random.Random(0).shuffle(features)  # as any training loop does (the split file is grouped by intent, and
    # unshuffled same-intent batches need ~18% fewer padded tokens on BANKING77: not a fair comparison)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=fused)
    started = time.perf_counter()
    for start in range(0, len(features), batch_size):
        batch = collator(features[start : start + batch_size])
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
    return time.perf_counter() - started


def our_epoch(rows: list[dict], labels: list[str], model_dir: Path, params: dict[str, Any], work: Path) -> float:
    from framework.pipeline.progress import Progress
    from framework.plugin_api import TrainContext
    from framework.plugins.trainers.encoder import EncoderParams, encoder

    chosen = {**params, "model": str(model_dir), "epochs": 1, "early_stopping_patience": None}
    with Progress() as progress:
        context = TrainContext(labels=labels, work_dir=work, seed=0, task=progress.task)
        result = encoder(rows, [], EncoderParams(**chosen), context)
    return result.metrics["history"][0]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="banking77")
    parser.add_argument("--outputs", type=Path, default=Path("outputs"))
    parser.add_argument("--queries", type=int, default=300, help="queries timed one by one per model")
    parser.add_argument("--train-rows", type=int, default=2000, help="rows for the training-speed comparison")
    parser.add_argument("--train-repeats", type=positive, default=1, help="A-B-C-C-B-A rounds of the epoch comparison")
    parser.add_argument(
        "--trainer-set",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="trainer param for the epoch comparison (YAML value), e.g. group_by_length=false; batch_size and lr "
        "apply to the plain loops too, max_grad_norm to the Trainer-defaults one",
    )
    parser.add_argument("--run", type=Path, help="measure a finished run directory (its run.json) instead of building")
    args = parser.parse_args()

    if args.run:
        dirs = {name: Path(stage["dir"]) for name, stage in read_json(args.run / "run.json")["stages"].items()}
    else:
        dirs, _ = build(args.recipe, args.outputs)
    bundle = dirs["bundle"] / "bundle"
    router = Router.load(bundle)
    labels = list(router.labels)
    test = read_jsonl(dirs["split"] / "test.jsonl")
    texts = [row["text"] for row in test]
    truth = np.array([labels.index(row["intent"]) for row in test])
    evidence = "real" if all(not r["provenance"].get("synthetic", True) for r in test) else "synthetic or mixed"
    max_length = read_train_facts(dirs["train"]).max_length
    calibration = read_json(bundle / "calibration.json")

    int8 = OnnxTextClassifier(bundle / "model.onnx", bundle / "tokenizer.json", max_length)
    fp32 = OnnxTextClassifier(dirs["export"] / "model.fp32.onnx", bundle / "tokenizer.json", max_length)
    int8_logits, fp32_logits = int8.logits(texts), fp32.logits(texts)
    probs, raw = softmax(int8_logits, calibration["temperature"]), softmax(int8_logits)
    chance, oracle = ece_diagnostics(int8_logits, truth, calibration["temperature"])

    tokenizer, model = torch_model(dirs["train"])
    import torch

    def torch_one(text: str) -> Any:
        with torch.no_grad():
            batch = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    sample = texts[: args.queries]
    bundle_p50, bundle_p99 = percentiles(time_each(lambda t: router.predict([t]), sample))
    torch_p50, torch_p99 = percentiles(time_each(torch_one, sample))
    started = time.perf_counter()
    router.predict(texts)
    exact_throughput = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    int8.logits(texts, batch_size=64, exact=False)
    padded_throughput = len(texts) / (time.perf_counter() - started)

    train_rows = read_jsonl(dirs["split"] / "train.jsonl")[: args.train_rows]
    trainer_params = {
        k: v
        for k, v in read_json(dirs["train"] / "manifest.json")["inputs"]["config"]["trainer"].items()
        if k != "plugin"
    }
    trainer_params.update(args.trainer_set)  # e.g. --trainer-set group_by_length=false

    def ours_once() -> float:
        return our_epoch(train_rows, labels, dirs["train"] / "model", trainer_params, args.outputs / "bench-train")

    def plain_once(clip: float | None = None, fused: bool = False) -> float:
        batch_size, lr = trainer_params["batch_size"], trainer_params["lr"]
        return plain_loop_epoch(dirs["train"], train_rows, labels, batch_size, lr, max_length, clip, fused)

    # A-B-C-C-B-A order, so no side gains from its place in a warming or slowing process; repeated as asked.
    clip = trainer_params.get("max_grad_norm")
    ours_times: list[float] = []
    plain_times: list[float] = []
    trainer_like_times: list[float] = []
    for _ in range(args.train_repeats):
        ours_times.append(ours_once())
        plain_times.append(plain_once())
        trainer_like_times += [plain_once(clip, fused=True), plain_once(clip, fused=True)]
        plain_times.append(plain_once())
        ours_times.append(ours_once())
    ours, plain, trainer_like = (float(np.mean(t)) for t in (ours_times, plain_times, trainer_like_times))

    size_mb = (bundle / "model.onnx").stat().st_size / 1e6
    rows = [
        (
            "machine",
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        ),
        ("recipe / test rows", f"{args.recipe} / {len(texts)} ({evidence})"),
        ("trainer params changed for the epoch comparison", dict(args.trainer_set) or "none"),
        (
            "batches, intentcraft / plain loops",
            f"{'length-grouped' if trainer_params.get('group_by_length') else 'random'} / random",
        ),
        ("test accuracy, INT8 bundle", f"{100 * float((int8_logits.argmax(1) == truth).mean()):.2f}%"),
        ("test accuracy, fp32 ONNX", f"{100 * float((fp32_logits.argmax(1) == truth).mean()):.2f}%"),
        (
            "test ECE before -> after calibration",
            f"{ece(raw, truth):.4f} -> {ece(probs, truth):.4f} (T={calibration['temperature']:.3f})",
        ),
        ("test ECE of a perfectly calibrated model (chance)", chance),
        ("test ECE at the test set's own best T (oracle)", oracle),
        ("model.onnx size", f"{size_mb:.1f} MB"),
        ("single query p50 / p99, INT8 bundle (Router)", f"{bundle_p50:.2f} / {bundle_p99:.2f} ms"),
        ("single query p50 / p99, PyTorch fp32 eager", f"{torch_p50:.2f} / {torch_p99:.2f} ms"),
        ("p50 speed-up, bundle vs PyTorch", f"{torch_p50 / bundle_p50:.2f}x"),
        ("throughput, Router (one text per run, exact)", f"{exact_throughput:.0f} texts/s"),
        ("throughput, padded batches of 64 (not exact)", f"{padded_throughput:.0f} texts/s"),
        (f"train epoch on {len(train_rows)} rows, intentcraft", f"{ours:.1f} s ({timings(ours_times)})"),
        (f"train epoch on {len(train_rows)} rows, plain transformers loop", f"{plain:.1f} s ({timings(plain_times)})"),
        (
            f"  ... with fused AdamW and clipping at {clip} (Trainer's defaults)",
            f"{trainer_like:.1f} s ({timings(trainer_like_times)})",
        ),
        ("training time ratio plain / intentcraft", f"{plain / ours:.2f}x"),
        ("training time ratio Trainer-defaults loop / intentcraft", f"{trainer_like / ours:.2f}x"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
