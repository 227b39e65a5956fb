"""Where a bundle's single-query time goes, and what onnxruntime's session settings do to it (run by hand).

    .venv/bin/python bench/bench_latency.py --bundle outputs/runs/banking77/<time>/bundle
    .venv/bin/python bench/bench_latency.py --bundle <bundle> --rounds 6 --queries 400

Part 1 splits ``Router.predict([text])`` into tokenizing, the onnxruntime run and routing the logits (p50
of each, timed apart), then profiles the bundle's model with onnxruntime's own profiler over single test
queries and prints the kernel time per operator type per query. Part 2 times ``Router.predict([text])``
under several session settings. Each setting runs in its own child process, so one session's idle threads
never spin against another's, and the settings take turns for ``--rounds`` rounds: compare the medians and
ratios within one run. Queries are the BANKING77 test texts from ``../shared/data`` (or ``--texts``, a CSV
with a ``text`` column).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import onnxruntime as ort
from _timing import time_each

from framework.runtime.onnx_classifier import session_options
from framework.runtime.router import Router

DEFAULT_TEXTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77" / "test.csv"
SETTINGS: dict[str, tuple[int | None, dict[str, str]]] = {
    "runtime default": (None, {}),
    "1 thread": (1, {}),
    "no spinning": (None, {"session.intra_op.allow_spinning": "0"}),
    "dynamic_block_base=4": (None, {"session.dynamic_block_base": "4"}),
    "denormals as zero": (None, {"session.set_denormal_as_zero": "1"}),
}


def read_texts(path: Path, limit: int) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)][:limit]


def session(
    model: Path, threads: int | None, entries: dict[str, str], profile: str | None = None
) -> ort.InferenceSession:
    """A session with the runtime's options, plus ``entries`` (session config keys) and profiling if asked."""
    options = session_options(threads)
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])


def p50_ms(fn: Any, items: list[Any]) -> float:
    """Median milliseconds of ``fn(item)`` over ``items`` (after 20 warm-up calls)."""
    return statistics.median(time_each(fn, items)) * 1000


def op_profile(bundle: Path, texts: list[str]) -> None:
    """Print the parts of a single query, then onnxruntime's kernel time per operator type, per query."""
    router = Router.load(bundle)
    classifier = router.classifier
    feeds = [classifier._pack([encoding]) for encoding in classifier.encode(texts)]
    wants = router.ood_arrays is not None  # the Mahalanobis score reads the embedding output too
    outputs = [classifier._run(feed, wants) for feed in feeds]
    logits = [out[0][0] for out in outputs]
    pooled = [out[1][0] if wants else None for out in outputs]
    parts = {
        "Router.predict([text])": p50_ms(lambda text: router.predict([text]), texts),
        "tokenize": p50_ms(lambda text: classifier.encode([text]), texts),
        "onnxruntime run": p50_ms(lambda feed: classifier._run(feed, wants), feeds),
        "route the logits": p50_ms(
            lambda index: router.route_logits(texts[index], logits[index], embedding=pooled[index]),
            list(range(len(texts))),
        ),
        f"  of which the OOD score ({router.ood.method if router.ood else 'none'})": p50_ms(
            lambda index: router.ood_score(logits[index], pooled[index]), list(range(len(texts)))
        ),
    }
    print(f"Part 1: p50 of each part of a single query, timed apart over {len(texts)} queries")
    for name, ms in parts.items():
        print(f"  {name:<28} {ms:8.3f} ms")
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        profiled = session(router.info.model_path, None, {}, profile=str(Path(tmp) / "ort"))
        for feed in feeds:
            profiled.run([classifier.output_name], feed)
        events = json.loads(Path(profiled.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    nodes: dict[str, set[str]] = defaultdict(set)
    runs = []
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
            nodes[event["args"]["op_name"]].add(event["name"])
        elif event.get("cat") == "Session" and event["name"] == "model_run":
            runs.append(event["dur"])
    print(f"onnxruntime profile, {len(feeds)} single-text runs (the profiler adds its own time)")
    print(f"  model run p50: {statistics.median(runs) / 1000:.3f} ms; kernel time per query by operator type:")
    for op, micros in sorted(per_op.items(), key=lambda item: -item[1]):
        print(f"  {op:<28} {len(nodes[op]):>3} nodes {micros / len(feeds) / 1000:>8.3f} ms")


def child(bundle: Path, texts_path: Path, queries: int, name: str) -> None:
    """Print the p50 (ms) of ``Router.predict([text])`` under one setting."""
    threads, entries = SETTINGS[name]
    texts = read_texts(texts_path, queries)
    router = Router.load(bundle)
    router.classifier.session = session(router.info.model_path, threads, entries)
    times = time_each(lambda text: router.predict([text]), texts, warmup=30)
    print(json.dumps(statistics.median(times) * 1000))


def compare_settings(bundle: Path, texts_path: Path, queries: int, rounds: int) -> None:
    medians: dict[str, list[float]] = {name: [] for name in SETTINGS}
    names = list(SETTINGS)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            command = [sys.executable, __file__, "--bundle", str(bundle), "--texts", str(texts_path)]
            command += ["--queries", str(queries), "--child", name]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            medians[name].append(float(done.stdout.strip().splitlines()[-1]))
    print(f"Part 2: Router.predict([text]) p50 per process, {rounds} rounds of {queries} queries per setting")
    reference = statistics.median(medians["runtime default"])
    for name, values in medians.items():
        each = ", ".join(f"{value:.2f}" for value in values)
        middle = statistics.median(values)
        print(f"  {name:<22} median {middle:6.2f} ms  ({each})  ratio to the default {middle / reference:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle directory")
    parser.add_argument("--texts", type=Path, default=DEFAULT_TEXTS, help="CSV with a text column")
    parser.add_argument("--queries", type=int, default=400, help="single-text queries per process")
    parser.add_argument("--rounds", type=int, default=4, help="turns each setting takes")
    parser.add_argument("--child", choices=list(SETTINGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.bundle, args.texts, args.queries, args.child)
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}; bundle {args.bundle}"
    )
    op_profile(args.bundle, read_texts(args.texts, args.queries))
    compare_settings(args.bundle, args.texts, args.queries, args.rounds)


if __name__ == "__main__":
    main()
