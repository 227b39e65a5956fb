"""Compare export choices on one trained model, side by side in one run (run by hand, not in CI).

    .venv/bin/python bench/bench_export.py --run outputs/runs/banking77/<time>
    .venv/bin/python bench/bench_export.py --run outputs/runs/banking77/<time> --rounds 8 --queries 300

From the run's trained model it exports two fp32 graphs with the ``onnx`` exporter's own functions: with
``token_type_ids`` as an input (the exporter's choice for BERT-family tokenizers) and without it (the graph
then rebuilds the segment ids itself). It quantizes the first four ways (per tensor or per channel, 8-bit or
7-bit weights) and the second the default way, then prints, for every variant, accuracy on the run's test and
eval splits and single-query latency p50 / p99 through the runtime's ``OnnxTextClassifier`` (one thread count
per row). Latency rounds are interleaved (order reversed every other round), so no variant gains from its place
in a warming or slowing machine. Every figure is measured here and now.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _timing import time_each

from framework.io import read_json, read_jsonl
from framework.plugins.exporters import _onnx_export as exporter
from framework.plugins.exporters.onnx import OnnxParams
from framework.runtime.onnx_classifier import OnnxTextClassifier
from framework.stages.common import read_train_facts


@dataclass(frozen=True)
class Variant:
    """One exported graph: its name, file, and the settings that made it."""

    name: str
    path: Path
    inputs: str
    weights: str


def export_fp32(model: Any, tokenizer: Any, work: Path, tag: str) -> Path:
    """The fused fp32 graph ``<tag>.fp32.onnx``, exported with the graph inputs ``tokenizer`` makes."""
    raw, fused = work / f"{tag}.raw.onnx", work / f"{tag}.fp32.onnx"
    exporter._export_graph(model, tokenizer, raw, OnnxParams().opset)
    return exporter._optimize(raw, fused, model.config, print)


def quantize(fp32: Path, work: Path, tag: str, per_channel: bool, reduce_range: bool) -> Path:
    target = work / f"{tag}.pc{int(per_channel)}.rr{int(reduce_range)}.int8.onnx"
    exporter._quantize(fp32, target, OnnxParams(per_channel=per_channel, reduce_range=reduce_range))
    return target


def accuracy(classifier: OnnxTextClassifier, rows: list[dict], labels: list[str]) -> float:
    truth = np.array([labels.index(row["intent"]) for row in rows])
    return float((classifier.logits([row["text"] for row in rows]).argmax(1) == truth).mean())


def latencies(classifiers: dict[str, OnnxTextClassifier], texts: list[str], rounds: int) -> dict[str, list[float]]:
    """Seconds per single-text call, each variant timed on every text once per round, rounds interleaved."""
    times: dict[str, list[float]] = {name: [] for name in classifiers}
    names = list(classifiers)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            classifier = classifiers[name]
            times[name] += time_each(lambda text, c=classifier: c.logits([text]), texts)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished run directory (its run.json)")
    parser.add_argument("--queries", type=int, default=300, help="test texts timed one by one per variant and round")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved latency rounds")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: the runtime's)")
    args = parser.parse_args()

    dirs = {name: Path(stage["dir"]) for name, stage in read_json(args.run / "run.json")["stages"].items()}
    model_dir = dirs["train"] / "model"
    facts = read_train_facts(dirs["train"])
    labels, max_length = facts.labels, facts.max_length
    splits = {split: read_jsonl(dirs["split"] / f"{split}.jsonl") for split in ("test", "eval")}
    tokenizer_json = model_dir / "tokenizer.json"

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        work = Path(tmp)
        tokenizer, model = exporter._load_reference(model_dir)
        three = export_fp32(model, tokenizer, work, "3in")
        tokenizer.model_input_names = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
        two = export_fp32(model, tokenizer, work, "2in")  # the graph then rebuilds the segment ids itself
        variants = [Variant("fp32", three, "ids, mask, token types", "fp32")]
        for per_channel, reduce_range in ((False, False), (False, True), (True, False), (True, True)):
            weights = f"{'per channel' if per_channel else 'per tensor'}, {7 if reduce_range else 8}-bit"
            path = quantize(three, work, "3in", per_channel, reduce_range)
            variants.append(Variant(f"3in.{weights}", path, "ids, mask, token types", weights))
        default = OnnxParams()
        path = quantize(two, work, "2in", default.per_channel, default.reduce_range)
        variants.append(Variant("2in.default", path, "ids, mask", "per channel, 7-bit"))

        classifiers = {
            v.name: OnnxTextClassifier(v.path, tokenizer_json, max_length, threads=args.threads) for v in variants
        }
        scores = {
            v.name: {s: accuracy(classifiers[v.name], rows, labels) for s, rows in splits.items()} for v in variants
        }
        texts = [row["text"] for row in splits["test"]][: args.queries]
        times = latencies(classifiers, texts, args.rounds)

        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"run: {args.run} ({len(splits['test'])} test, {len(splits['eval'])} eval rows)")
        print(f"latency: {args.rounds} interleaved rounds of {len(texts)} single-text calls per variant")
        row = "{:<24} {:<22} {:>9} {:>9} {:>6} {:>7} {:>7}"
        header = row.format("graph inputs", "weights", "test acc", "eval acc", "MB", "p50 ms", "p99 ms")
        print(header)
        print("-" * len(header))
        reference = times["3in.per channel, 7-bit"]
        for v in variants:
            ms = np.array(times[v.name]) * 1000
            test, evals = (f"{100 * scores[v.name][split]:.2f}%" for split in ("test", "eval"))
            size, p50, p99 = v.path.stat().st_size / 1e6, np.percentile(ms, 50), np.percentile(ms, 99)
            print(row.format(v.inputs, v.weights, test, evals, f"{size:.1f}", f"{p50:.3f}", f"{p99:.3f}"))
        ratio = np.percentile(times["2in.default"], 50) / np.percentile(reference, 50)
        print(f"p50 ratio, without / with token_type_ids as an input (default weights): {ratio:.2f}x")


if __name__ == "__main__":
    main()
