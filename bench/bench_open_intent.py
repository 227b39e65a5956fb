"""Open-intent detection on BANKING77, and SNIPS as far-out-of-domain queries (run by hand).

    .venv/bin/python bench/bench_open_intent.py                       # 25%, 50% and 75% of intents known
    .venv/bin/python bench/bench_open_intent.py --known 0.25 --seed 1

The standard open-intent protocol: a seeded share of BANKING77's 77 intents is known; the router is built
(every stage, through the pipeline, with recipes/banking77.yaml's training settings) on the known intents' rows
of the official training set only, so nothing of the unknown intents is seen in training, calibration or
threshold fitting. The official test set then holds the known intents' rows (in scope) and the unknown intents'
rows (out of scope); SNIPS's 700 test queries (music, weather, restaurants, ...) are far out of domain.

Each out-of-distribution score (max-softmax, energy and Mahalanobis, ``framework.runtime.ood``) is measured on
the same bundle's outputs: its threshold is the one the calibrate stage fitted on the eval split to keep
``calibrate.ood.in_scope_recall`` (98%) of the in-scope eval rows, and the table gives the in-scope test rows
kept, the out-of-scope rows caught, AUROC and FPR at 95% in-scope recall. The bundle's own decisions (its
confidence thresholds together with its Mahalanobis score) are the last row of each block.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from _pipeline import build

from framework.evaluation.ood import detection
from framework.io import read_json
from framework.pipeline.runner import MANIFEST
from framework.runtime import Router
from framework.runtime.ood import METHODS, ood_scores

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RECIPE = """\
defaults:
  - intentcraft
  - override /generate: null
  - _self_
name: {name}
description: BANKING77 with {known} of its 77 intents known (open-intent benchmark, seed {seed}).
intents_from: sources.train
sources:
  train: {{plugin: csv, path: {train}, text_column: text, label_column: category}}
  test: {{plugin: csv, path: {test}, text_column: text, label_column: category, split: test}}
generate: {{generators: {{}}}}
validate:
  max_rejected_fraction: 0.2
  layers:
    quality: {{min_words: null, parroting: false, near_duplicates: {{enabled: false}}}}
split:
  ratios: {{train: 0.85, eval: 0.15, test: 0.0}}
trainer: {{epochs: 10, lr: 3.0e-5, early_stopping_patience: 2, group_by_length: true}}
"""


def read_rows(path: Path) -> list[dict[str, str]]:
    """A CSV's rows (``text``, ``category``)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    """Rows as a CSV with ``text`` and ``category``."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "category"])
        writer.writeheader()
        writer.writerows({"text": row["text"], "category": row["category"]} for row in rows)
    return path


def known_intents(labels: list[str], share: float, seed: int) -> list[str]:
    """A seeded ``share`` of the labels (at least two)."""
    order = np.random.default_rng(seed).permutation(sorted(labels))
    return sorted(order[: max(2, round(share * len(labels)))].tolist())


def measure(router: Router, calibrate: dict[str, Any], texts: list[str], out_of_scope: np.ndarray) -> dict[str, Any]:
    """Each score's detection metrics at its eval-fitted threshold, and the bundle's own decisions."""
    logits, pooled = router.classifier.outputs(texts)
    fitted = calibrate["ood"]["eval"]
    result = {}
    for method in METHODS:
        scores = ood_scores(method, logits, router.temperature, pooled, router.ood_arrays)
        result[method] = detection(scores, out_of_scope, fitted[method]["threshold"]).model_dump()
    routes = router.predict(texts)
    accepted = np.array([r.accepted for r in routes])
    result["bundle"] = {
        "in_scope_kept": float(accepted[~out_of_scope].mean()),
        "out_of_scope_caught": float((~accepted[out_of_scope]).mean()),
    }
    result["predicted"] = [r.predicted for r in routes]
    return result


def run_one(share: float, seed: int, outputs: Path, work: Path) -> dict[str, Any]:
    """Build the router for one known share and measure it on BANKING77's test set and SNIPS."""
    train, test = read_rows(DATA / "banking77" / "train.csv"), read_rows(DATA / "banking77" / "test.csv")
    known = set(known_intents(sorted({row["category"] for row in train}), share, seed))
    name = f"banking77_open_{round(100 * share)}_seed{seed}"
    recipe_file = work / f"{name}.yaml"
    files = {
        split: write_rows(work / f"{name}_{split}.csv", [row for row in rows if row["category"] in known])
        for split, rows in (("train", train), ("test", test))
    }
    recipe_file.write_text(
        RECIPE.format(name=name, known=len(known), seed=seed, train=files["train"], test=files["test"]),
        encoding="utf-8",
    )
    print(f"{name}: {len(known)} known intents, {sum(r['category'] in known for r in train)} training rows")
    started = time.perf_counter()
    stages, _ = build(recipe_file, outputs, indent="  ")
    seconds = time.perf_counter() - started
    router = Router.load(stages["bundle"] / "bundle")
    calibrate = read_json(stages["calibrate"] / MANIFEST)
    texts = [row["text"] for row in test]
    unknown = np.array([row["category"] not in known for row in test])
    open_set = measure(router, calibrate, texts, unknown)
    predicted = open_set.pop("predicted")  # the router answers with the data's labels
    right = [row["category"] == label for row, label in zip(test, predicted, strict=True)]
    in_scope_accuracy = float(np.mean([ok for ok, far in zip(right, unknown, strict=True) if not far]))
    snips = [row["text"] for row in read_rows(DATA / "snips" / "test.csv")]
    in_scope_texts = [t for t, far in zip(texts, unknown, strict=True) if not far]
    far_mask = np.array([False] * len(in_scope_texts) + [True] * len(snips))
    far = measure(router, calibrate, in_scope_texts + snips, far_mask)
    far.pop("predicted")
    return {
        "share": share,
        "known": len(known),
        "seconds": seconds,
        "in_scope_accuracy": in_scope_accuracy,
        "open": open_set,
        "far": far,
    }


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def print_results(results: list[dict[str, Any]]) -> None:
    """One block per known share: a row per score."""
    header = (
        f"{'known':>8} {'score':<12} {'in-scope kept':>13} {'OOS caught':>10} {'AUROC':>7} {'FPR@95':>7} "
        f"{'SNIPS caught':>12} {'SNIPS AUROC':>11}"
    )
    print(header)
    for result in results:
        label = f"{result['known']} ({round(100 * result['share'])}%)"
        for method in (*METHODS, "bundle"):
            near, far = result["open"][method], result["far"][method]
            auroc = "" if near.get("auroc") is None else f"{near['auroc']:.4f}"
            fpr = "" if near.get("fpr_at_95") is None else pct(near["fpr_at_95"])
            far_auroc = "" if far.get("auroc") is None else f"{far['auroc']:.4f}"
            name = "router" if method == "bundle" else method
            print(
                f"{label:>8} {name:<12} {pct(near['in_scope_kept']):>13} {pct(near['out_of_scope_caught']):>10} "
                f"{auroc:>7} {fpr:>7} {pct(far['out_of_scope_caught']):>12} {far_auroc:>11}"
            )
            label = ""
        print(
            f"{'':>8} in-scope accuracy (top-1 of known intents' test rows) {pct(result['in_scope_accuracy'])}, "
            f"build {result['seconds'] / 60:.1f} min"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--known", type=float, nargs="+", default=[0.25, 0.5, 0.75], help="shares of known intents")
    parser.add_argument("--seed", type=int, default=0, help="which intents are known")
    parser.add_argument("--outputs", type=Path, default=Path("outputs"), help="the pipeline's outputs (cache)")
    args = parser.parse_args()
    for name in ("banking77/train.csv", "banking77/test.csv", "snips/test.csv"):
        if not (DATA / name).is_file():
            raise SystemExit(f"{DATA / name} is missing: this benchmark reads ../shared/data")
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    work = args.outputs / "bench" / "open_intent"  # stable paths: a second run reuses the cached stages
    work.mkdir(parents=True, exist_ok=True)
    results = [run_one(share, args.seed, args.outputs, work) for share in args.known]
    print_results(results)


if __name__ == "__main__":
    main()
