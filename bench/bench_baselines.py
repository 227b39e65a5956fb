"""The shipped bundle against the baselines a user would pick instead, on the same files in one run (by hand).

    .venv/bin/python bench/bench_baselines.py                        # recipe banking77, from the repository root
    .venv/bin/python bench/bench_baselines.py --recipe code_search --queries 200
    .venv/bin/python bench/bench_baselines.py --run outputs/runs/banking77/<time>   # a finished run's stages

It builds (or reuses from the cache) every stage of the recipe, then fits three baselines on the run's own
train split and scores all four on its test split:

- TF-IDF word (1-2) and character (2-5, within word boundaries) n-grams + logistic regression (scikit-learn);
- the trainer's base checkpoint frozen (all-MiniLM-L6-v2 by default), mean-pooled and L2-normalised
  embeddings + logistic regression;
- nearest labelled train utterance by cosine similarity on the same frozen embeddings (semantic-router style).

Each logistic regression picks C on the eval split from ``--c-grid``. Printed side by side: accuracy,
macro-F1 (over the true intents), out-of-scope recall and precision (when the recipe has an out-of-scope
intent), fit time and single-query p50 latency (encoding included; the methods take turns over ``--rounds``).
The bundle is scored as it ships: the Router's final routes (an abstention counts as the out-of-scope intent,
or as an error without one), and also its top-1 prediction before thresholds.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from _pipeline import build
from _timing import time_each

from framework.config.check import check_recipe
from framework.io import read_json, read_jsonl
from framework.models import resolve_model
from framework.pipeline.facts import BundleFacts, SplitFacts
from framework.pipeline.runner import MANIFEST, facts_from_manifest
from framework.runtime import Router

EMBED_BATCH = 64
ABSTAINED = "<abstained>"  # a route to no intent (a recipe without an out-of-scope intent): always wrong


def split_rows(split_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The run's train, eval and test rows, from the files the split stage names."""
    facts = facts_from_manifest(read_json(split_dir / MANIFEST), SplitFacts)
    return {split: read_jsonl(split_dir / name) for split, name in facts.files.items()}


def scores(truth: list[str], predicted: list[str], fallback: str | None) -> dict[str, float | None]:
    """Accuracy, macro-F1 and (with a fallback intent) its recall and precision."""
    from sklearn.metrics import f1_score

    hits = [t == p for t, p in zip(truth, predicted, strict=True)]
    result: dict[str, float | None] = {
        "accuracy": float(np.mean(hits)),
        # over the true intents only: an abstention is an error, not a 78th class whose F1 of 0 drags the mean
        "macro_f1": float(f1_score(truth, predicted, labels=sorted(set(truth)), average="macro", zero_division=0)),
        "oos_recall": None,
        "oos_precision": None,
    }
    if fallback is not None:
        true_oos = [t == fallback for t in truth]
        said_oos = [p == fallback for p in predicted]
        both = sum(a and b for a, b in zip(true_oos, said_oos, strict=True))
        result["oos_recall"] = both / sum(true_oos) if any(true_oos) else None
        result["oos_precision"] = both / sum(said_oos) if any(said_oos) else None
    return result


class FrozenEncoder:
    """A sentence-transformers checkpoint, frozen: mean pooling over the attention mask, then L2 normalisation."""

    def __init__(self, model: str, max_length: int) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        source = resolve_model(model).source
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModel.from_pretrained(source).eval()
        self.max_length = max_length
        self.torch = torch

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        chunks = []
        with self.torch.inference_mode():
            for start in range(0, len(texts), EMBED_BATCH):
                batch = self.tokenizer(
                    texts[start : start + EMBED_BATCH],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(self.torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(chunks)


def fit_logistic(
    train_x: Any, train_y: list[str], eval_x: Any, eval_y: list[str], grid: list[float]
) -> tuple[Any, float]:
    """Logistic regression fitted on train with the C of ``grid`` that scores best on eval; (model, C)."""
    from sklearn.linear_model import LogisticRegression

    best: tuple[float, float, Any] | None = None
    for c in grid:
        model = LogisticRegression(C=c, max_iter=2000).fit(train_x, train_y)
        accuracy = float(np.mean(model.predict(eval_x) == np.array(eval_y))) if eval_y else 0.0
        if best is None or accuracy > best[0]:
            best = (accuracy, c, model)
    assert best is not None
    return best[2], best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="banking77")
    parser.add_argument("--outputs", type=Path, default=Path("outputs"))
    parser.add_argument("--run", type=Path, help="measure a finished run directory (its run.json) instead of building")
    parser.add_argument("--queries", type=int, default=300, help="test queries timed one by one per method and round")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved timing rounds (forward, backward, ...)")
    parser.add_argument(
        "--c-grid", type=float, nargs="+", default=[1.0, 10.0, 100.0, 1000.0], help="C values tried on eval"
    )
    args = parser.parse_args()

    if args.run:
        record = read_json(args.run / "run.json")
        dirs = {name: Path(stage["dir"]) for name, stage in record["stages"].items()}
        composed = args.run / "recipe.yaml"  # the run's composed recipe, as it ran
        recipe = check_recipe(yaml.safe_load(composed.read_text(encoding="utf-8")), str(composed))
    else:
        dirs, recipe = build(args.recipe, args.outputs)
    rows = split_rows(dirs["split"])
    train, evaluation, test = rows["train"], rows["eval"], rows["test"]
    fallback = recipe.config.fallback_intent
    truth = [row["intent"] for row in test]
    texts = [row["text"] for row in test]
    timed = texts[: args.queries]
    results: list[tuple[str, dict[str, float | None], float | None, str]] = []  # (method, scores, fit, timer)
    timers: dict[str, Any] = {}  # one single-query function per model, timed together at the end

    bundle_dir = dirs["bundle"] / facts_from_manifest(read_json(dirs["bundle"] / MANIFEST), BundleFacts).bundle_dir
    router = Router.load(bundle_dir)
    names = {label: name for name, label in recipe.config.display_labels.items()}
    routed = router.predict(texts)
    final = [names.get(r.intent, r.intent) if r.intent is not None else fallback or ABSTAINED for r in routed]
    top1 = [names.get(r.predicted, r.predicted) for r in routed]
    timers["bundle"] = lambda text: router.predict([text])
    trained = read_json(dirs["train"] / MANIFEST)["train"]
    fit_seconds = sum(epoch.get("seconds", 0.0) for epoch in trained.get("history", []))
    results.append(
        (
            "intentcraft bundle, routed (INT8; an abstention is an error unless the recipe has an out-of-scope intent)",
            scores(truth, final, fallback),
            fit_seconds,
            "bundle",
        )
    )
    results.append(
        ("intentcraft bundle, top-1 before thresholds (INT8)", scores(truth, top1, fallback), fit_seconds, "bundle")
    )

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    started = time.perf_counter()
    vectorizer = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
    )
    train_x = vectorizer.fit_transform([row["text"] for row in train])
    eval_x = vectorizer.transform([row["text"] for row in evaluation])
    tfidf, c = fit_logistic(
        train_x, [row["intent"] for row in train], eval_x, [r["intent"] for r in evaluation], args.c_grid
    )
    tfidf_seconds = time.perf_counter() - started
    predicted = list(tfidf.predict(vectorizer.transform(texts)))
    timers["tfidf"] = lambda text: tfidf.predict(vectorizer.transform([text]))
    results.append(
        (
            f"TF-IDF word+char n-grams + logistic regression (C={c:g})",
            scores(truth, predicted, fallback),
            tfidf_seconds,
            "tfidf",
        )
    )

    params = recipe.bound("trainer").params
    encoder = FrozenEncoder(str(params.model), int(getattr(params, "max_length", 128)))
    started = time.perf_counter()
    train_e = encoder.encode([row["text"] for row in train])
    eval_e = encoder.encode([row["text"] for row in evaluation])
    embed_seconds = time.perf_counter() - started
    started = time.perf_counter()
    frozen, c = fit_logistic(
        train_e, [row["intent"] for row in train], eval_e, [r["intent"] for r in evaluation], args.c_grid
    )
    frozen_seconds = embed_seconds + time.perf_counter() - started
    test_e = encoder.encode(texts)
    predicted = list(frozen.predict(test_e))

    def frozen_one(text: str) -> Any:
        return frozen.predict(encoder.encode([text]))

    timers["frozen"] = frozen_one
    results.append(
        (
            f"frozen embeddings (mean-pooled) + logistic regression (C={c:g})",
            scores(truth, predicted, fallback),
            frozen_seconds,
            "frozen",
        )
    )

    train_labels = np.array([row["intent"] for row in train])
    nearest = list(train_labels[np.argmax(test_e @ train_e.T, axis=1)])

    def nearest_one(text: str) -> Any:
        return train_labels[int(np.argmax(train_e @ encoder.encode([text])[0]))]

    timers["nearest"] = nearest_one
    results.append(
        (
            "nearest train utterance, cosine on frozen embeddings",
            scores(truth, nearest, fallback),
            embed_seconds,
            "nearest",
        )
    )

    p50 = interleaved_p50(timers, timed, args.rounds)
    rows = [(name, score, fit, p50[timer]) for name, score, fit, timer in results]
    print_table(recipe.name, len(train), len(test), rows, f"{args.rounds} interleaved rounds of {len(timed)} queries")


def interleaved_p50(timers: dict[str, Any], texts: list[str], rounds: int) -> dict[str, float]:
    """Median milliseconds per single query of each timer, over ``rounds`` rounds that take turns (forward, then
    backward), so that the machine's drift over minutes reaches every method alike."""
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for index in range(rounds):
        for name in list(timers)[:: 1 if index % 2 == 0 else -1]:
            samples[name] += time_each(timers[name], texts)
    return {name: float(np.median(values)) * 1000 for name, values in samples.items()}


def print_table(
    recipe: str,
    n_train: int,
    n_test: int,
    results: list[tuple[str, dict[str, float | None], float | None, float]],
    timing: str,
) -> None:
    """One Markdown table, with the machine it was measured on."""
    cpu = platform.processor() or platform.machine()
    print(
        f"\n{recipe}: {n_train:,} train rows, {n_test:,} test rows; {os.cpu_count()} CPUs ({cpu}), "
        f"Python {platform.python_version()}"
    )
    print(
        f"p50 latency: one query at a time, {timing}, encoding included; fit: the bundle's training epochs, the "
        "baselines' vectorising or embedding plus fitting\n"
    )

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}%"

    print("| method | accuracy | macro-F1 | OOS recall | OOS precision | fit | p50 latency |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, score, seconds, ms in results:
        fit = "n/a" if seconds is None else f"{seconds:.0f} s"
        row = [
            name,
            pct(score["accuracy"]),
            pct(score["macro_f1"]),
            pct(score["oos_recall"]),
            pct(score["oos_precision"]),
        ]
        print("| " + " | ".join([*row, fit, f"{ms:.2f} ms"]) + " |")


if __name__ == "__main__":
    main()
