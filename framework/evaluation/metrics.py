"""Evaluation metrics, evidence labelling and confusion-matrix rendering (pure functions, no torch).

Every result is JSON-serialisable (plain floats, ints, lists, dicts). A ratio whose denominator is zero
(e.g. out-of-scope recall when no row is out of scope) is ``None``, never a made-up 0 or 1.

Only rows whose ``provenance.synthetic`` is exactly ``False`` count as real; anything else, a missing
flag included, is synthetic. ``evaluate_rows`` is the entry point for stages: it labels every block of
metrics with its evidence so a synthetic number can never pass for a benchmark result.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from framework.evaluation.calibration import ece_noise, top_label_errors
from framework.evaluation.ood import detection
from framework.io import atomic_write_bytes

ACCEPT, ABSTAIN = "accept", "abstain"  # the values of ``decisions``
DECISIONS = (ACCEPT, ABSTAIN)
ANNOTATE_MAX_LABELS = 20
TOP_CONFUSED_PAIRS = 20


def _ratio(numerator: int, denominator: int) -> float | None:
    return float(numerator / denominator) if denominator else None


def _check_lengths(**columns: Sequence[Any] | None) -> int:
    lengths = {name: len(values) for name, values in columns.items() if values is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"lengths differ: {lengths}")
    return next(iter(lengths.values()), 0)


def _check_known(values: Sequence[str | None], labels: Sequence[str], what: str) -> None:
    unknown = sorted({v for v in values if v is not None} - set(labels))
    if unknown:
        raise ValueError(f"{what} not in labels: {unknown[:5]}")


def _oos_metrics(y_true: Sequence[str], y_pred: Sequence[str | None], fallback: str) -> dict[str, Any]:
    """Out-of-scope recall and precision; ``None`` in ``y_pred`` (abstained) counts as the fallback."""
    routed = [fallback if p is None else p for p in y_pred]
    hits = sum(t == fallback and p == fallback for t, p in zip(y_true, routed, strict=True))
    support = sum(t == fallback for t in y_true)
    return {
        "recall": _ratio(hits, support),
        "precision": _ratio(hits, sum(p == fallback for p in routed)),
        "support": support,
    }


def classification_report(
    y_true: list[str], y_pred: list[str], labels: list[str], fallback_intent: str | None = None
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-intent metrics and the confusion matrix of raw predictions.

    Args:
        y_true: True intents.
        y_pred: Predicted intents (argmax, before any abstention); one outside ``labels`` (e.g. ``""`` for
            a text that could not be scored) counts as wrong and in ``unknown_predictions``.
        labels: Every intent, in the order of the confusion matrix.
        fallback_intent: The out-of-scope intent; adds ``out_of_scope`` and ``in_scope_accuracy``.

    Returns:
        ``n, accuracy, macro_f1`` (over labels seen in ``y_true`` or ``y_pred``), ``weighted_f1``,
        ``per_intent: {label: {precision, recall, f1, support}}``, ``unknown_predictions``, ``labels``,
        ``confusion_matrix`` (rows: true, columns: predicted; unknown predictions left out) and, with a
        fallback, ``out_of_scope: {recall, precision, support}`` and ``in_scope_accuracy``.

    Raises:
        ValueError: On empty input, mismatched lengths or true intents missing from ``labels``.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # lazy: a 4 s import

    n = _check_lengths(y_true=y_true, y_pred=y_pred)
    if n == 0:
        raise ValueError("no rows to evaluate")
    _check_known([*y_true, fallback_intent], labels, "true intents")
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    seen = set(y_true) | set(y_pred)
    present = [i for i, label in enumerate(labels) if label in seen]
    report: dict[str, Any] = {
        "n": n,
        "accuracy": float(np.mean([t == p for t, p in zip(y_true, y_pred, strict=True)])),
        "macro_f1": float(np.mean(f1[present])),
        "weighted_f1": float(np.average(f1, weights=support)),
        "per_intent": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "unknown_predictions": sum(p not in labels for p in y_pred),
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    if fallback_intent is not None:
        report["out_of_scope"] = _oos_metrics(y_true, y_pred, fallback_intent)
        in_scope = [t == p for t, p in zip(y_true, y_pred, strict=True) if t != fallback_intent]
        report["in_scope_accuracy"] = _ratio(sum(in_scope), len(in_scope))
    return report


def routed_report(
    y_true: list[str],
    routed: list[str | None],
    decisions: list[str],
    labels: list[str],
    fallback_intent: str | None,
) -> dict[str, Any]:
    """Metrics of the final routing decision, after abstention.

    Args:
        y_true: True intents; ``labels``: every intent; ``fallback_intent``: the out-of-scope intent or ``None``.
        routed: The intent each request was finally routed to; ``None`` (abstained, nowhere to go) counts
            as the fallback intent when there is one.
        decisions: ``"accept"`` (the prediction passed its threshold) or ``"abstain"`` per row.

    Returns:
        ``n, accepted, coverage`` (share accepted), ``selective_accuracy`` (accuracy among accepted),
        ``accuracy`` (final routing correct, abstention to the fallback included), ``in_scope_abstained``
        (share of in-scope rows abstained on), ``out_of_scope_accepted`` (share of out-of-scope rows
        accepted as an in-scope intent), ``out_of_scope: {recall, precision, support}`` (or ``None``).
    """
    n = _check_lengths(y_true=y_true, routed=routed, decisions=decisions)
    _check_known([*y_true, *routed], labels, "intents")
    bad = sorted(set(decisions) - set(DECISIONS))
    if bad:
        raise ValueError(f"decisions must be one of {DECISIONS}, got {bad[:5]}")
    final = [fallback_intent if r is None else r for r in routed]
    correct = [t == r for t, r in zip(y_true, final, strict=True)]
    accepted = [d == ACCEPT for d in decisions]
    in_scope = [t != fallback_intent for t in y_true]
    wrongly_accepted = sum(
        not inside and ok and r != fallback_intent for inside, ok, r in zip(in_scope, accepted, final, strict=True)
    )
    return {
        "n": n,
        "accepted": sum(accepted),
        "coverage": _ratio(sum(accepted), n),
        "selective_accuracy": _ratio(sum(c for c, a in zip(correct, accepted, strict=True) if a), sum(accepted)),
        "accuracy": _ratio(sum(correct), n),
        "in_scope_abstained": _ratio(
            sum(inside and not a for inside, a in zip(in_scope, accepted, strict=True)), sum(in_scope)
        ),
        "out_of_scope_accepted": None if fallback_intent is None else _ratio(wrongly_accepted, n - sum(in_scope)),
        "out_of_scope": None if fallback_intent is None else _oos_metrics(y_true, routed, fallback_intent),
    }


def is_real(row: dict[str, Any]) -> bool:
    """True only when the row says ``provenance.synthetic`` is ``False``; a missing flag is synthetic."""
    return (row.get("provenance") or {}).get("synthetic") is False


def split_by_evidence(rows: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """Indices of real and of synthetic rows: ``{"real": [...], "synthetic": [...]}``."""
    parts: dict[str, list[int]] = {"real": [], "synthetic": []}
    for index, row in enumerate(rows):
        parts["real" if is_real(row) else "synthetic"].append(index)
    return parts


def evidence_label(rows: Sequence[dict[str, Any]]) -> str:
    """``"real"`` if every row is real, ``"mixed"`` if some are, else ``"synthetic"`` (also for no rows)."""
    parts = split_by_evidence(rows)
    if parts["real"] and not parts["synthetic"]:
        return "real"
    return "mixed" if parts["real"] else "synthetic"


def worst_misclassified(
    rows: Sequence[dict[str, Any]], y_pred: Sequence[str], confidences: Sequence[float], k: int
) -> list[dict[str, Any]]:
    """The ``k`` wrong predictions with the highest confidence, most confident first (ties keep row order)."""
    _check_lengths(rows=rows, y_pred=y_pred, confidences=confidences)
    wrong = [i for i, row in enumerate(rows) if row["intent"] != y_pred[i]]
    wrong.sort(key=lambda i: -float(confidences[i]))
    return [
        {
            "id": rows[i].get("id"),
            "text": rows[i].get("text", ""),
            "intent": rows[i]["intent"],
            "predicted": y_pred[i],
            "confidence": float(confidences[i]),
            "source": rows[i].get("source"),
            "synthetic": not is_real(rows[i]),
        }
        for i in wrong[: max(k, 0)]
    ]


def calibration_report(y_true: Sequence[str], y_pred: Sequence[str], confidences: Sequence[float], bins: int) -> dict:
    """ECE and MCE of the top-label confidences on these rows, with the ECE a perfectly calibrated model
    would measure on them by chance (``ece_noise_mean``, ``ece_noise_p95``), and the bin count."""
    confidence = np.asarray(confidences, dtype=np.float64)
    correct = np.array([t == p for t, p in zip(y_true, y_pred, strict=True)], dtype=np.float64)
    ece, mce = top_label_errors(confidence, correct, bins)
    noise = ece_noise(confidence, bins)
    return {"ece": ece, "mce": mce, "ece_noise_mean": noise.mean, "ece_noise_p95": noise.p95, "ece_bins": bins}


def _evaluate_part(
    columns: dict[str, Any],
    indices: list[int],
    evidence: str,
    labels: list[str],
    fallback: str | None,
    worst_k: int,
    ece_bins: int,
    ood_threshold: float | None = None,
) -> dict[str, Any]:
    picked: dict[str, Any] = {key: None if col is None else [col[i] for i in indices] for key, col in columns.items()}
    rows, y_pred = picked["rows"], picked["y_pred"]
    y_true = [row["intent"] for row in rows]
    part = classification_report(y_true, y_pred, labels, fallback)
    if picked["routed"] is not None and picked["decisions"] is not None:
        part["routed"] = routed_report(y_true, picked["routed"], picked["decisions"], labels, fallback)
    part["calibration"] = calibration_report(y_true, y_pred, picked["confidences"], ece_bins)
    scores = picked.get("ood_scores")
    if scores is not None and fallback is not None and all(score is not None for score in scores):
        out_of_scope = np.array([truth == fallback for truth in y_true])
        part["ood"] = detection(np.asarray(scores, dtype=np.float64), out_of_scope, ood_threshold).model_dump()
    part["worst_misclassified"] = worst_misclassified(rows, y_pred, picked["confidences"], worst_k)
    return {**part, "evidence": evidence, "benchmark_evidence": evidence == "real"}


def evaluate_rows(
    rows: Sequence[dict[str, Any]],
    y_pred: Sequence[str],
    confidences: Sequence[float],
    routed: Sequence[str | None] | None,
    decisions: Sequence[str] | None,
    labels: list[str],
    fallback_intent: str | None,
    worst_k: int = 10,
    ece_bins: int = 15,
    ood_scores: Sequence[float | None] | None = None,
    ood_threshold: float | None = None,
) -> dict[str, Any]:
    """Metrics of all rows and of their real and synthetic parts, each labelled with its evidence.

    Args:
        rows: Evaluated rows (``intent`` is the truth; ``provenance.synthetic`` decides the evidence).
        y_pred: Raw predictions; ``confidences``: their calibrated probabilities.
        routed: Final routed intents (``None`` = abstained), or ``None`` to skip routed metrics.
        decisions: ``"accept"`` / ``"abstain"`` per row, or ``None`` (with ``routed``).
        labels: Every intent; ``fallback_intent``: the out-of-scope intent or ``None``.
        worst_k: How many confident mistakes to keep per part.
        ece_bins: Equal-width confidence bins of the held-out ECE and MCE (``calibration`` of each part).
        ood_scores: Each row's out-of-distribution score (``RouteResult.ood_score``); with a fallback intent,
            each part gets ``ood``: how the score separates the fallback intent's rows from the rest
            (``framework.evaluation.ood.detection``, at ``ood_threshold``, the bundle's).

    Returns:
        ``{"all": {...}, "real": {...} | None, "synthetic": {...} | None}``; each block holds the
        ``classification_report`` keys plus ``routed``, ``calibration`` (held-out ECE and MCE of the
        confidences, see ``calibration_report``), ``ood`` (when scored), ``worst_misclassified``, ``evidence``
        (``real``/``synthetic``/``mixed``) and ``benchmark_evidence`` (true only for real rows).
    """
    if not _check_lengths(
        rows=rows, y_pred=y_pred, confidences=confidences, routed=routed, decisions=decisions, ood_scores=ood_scores
    ):
        raise ValueError("no rows to evaluate")
    if (routed is None) != (decisions is None):
        raise ValueError("pass both routed and decisions, or neither")
    columns = {
        "rows": rows,
        "y_pred": y_pred,
        "confidences": confidences,
        "routed": routed,
        "decisions": decisions,
        "ood_scores": ood_scores,
    }
    parts = {"all": list(range(len(rows))), **split_by_evidence(rows)}
    evidence = {"all": evidence_label(rows), "real": "real", "synthetic": "synthetic"}
    return {
        name: _evaluate_part(
            columns, indices, evidence[name], labels, fallback_intent, worst_k, ece_bins, ood_threshold
        )
        if indices
        else None
        for name, indices in parts.items()
    }


def _row_shares(matrix: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(matrix, dtype=float).reshape(len(matrix), -1)
    totals = counts.sum(axis=1, keepdims=True)
    return counts, np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> Path:
    """Write a row-normalised confusion matrix as PNG (Agg, no display); returns ``path``.

    Up to ``ANNOTATE_MAX_LABELS`` labels the cells show their share; beyond that the figure grows,
    tick labels shrink and cells carry no numbers. The title gives the row count.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: keeps importing metrics cheap
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    counts, shares = _row_shares(matrix)
    n = len(labels)
    small = n <= ANNOTATE_MAX_LABELS
    side = max(6.0, 2.5 + 0.55 * n) if small else min(32.0, 4.0 + 0.22 * n)
    figure = Figure(figsize=(side + 1.5, side), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0))  # small confusions show
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true intent's rows")
    font = 9 if small else 7 if n <= 100 else 5
    axes.set_xticks(range(n), labels, rotation=45 if small else 90, ha="right" if small else "center", fontsize=font)
    axes.set_yticks(range(n), labels, fontsize=font)
    axes.set_xlabel("predicted intent")
    axes.set_ylabel("true intent")
    axes.set_title(f"{title}\n{int(counts.sum()):,} rows, each row normalised by its true-intent count", fontsize=12)
    if small:
        for (i, j), share in np.ndenumerate(shares):
            if counts[i, j]:
                color = "white" if share > 0.4 else "black"
                axes.text(j, i, f"{share:.2f}", ha="center", va="center", fontsize=8, color=color)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def _md_table(headers: Sequence[str], body: Sequence[Sequence[object]]) -> str:
    cells = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in [headers, *body]]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join([lines[0], "|" + "---|" * len(headers), *lines[1:]])


def top_confused_pairs(matrix: Sequence[Sequence[int]], labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal cells: ``{true, predicted, count, share}`` (share of the true row)."""
    counts, shares = _row_shares(matrix)
    pairs = [(int(counts[i, j]), i, j) for i in range(len(labels)) for j in range(len(labels)) if i != j]
    pairs = sorted((p for p in pairs if p[0] > 0), key=lambda p: (-p[0], p[1], p[2]))[:k]
    return [
        {"true": labels[i], "predicted": labels[j], "count": count, "share": float(shares[i, j])}
        for count, i, j in pairs
    ]


def confusion_table_markdown(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """The confusion matrix as a Markdown table, or for more than 20 labels its top-20 confused pairs."""
    if len(labels) <= ANNOTATE_MAX_LABELS:
        body = [[f"**{label}**", *map(int, row)] for label, row in zip(labels, matrix, strict=True)]
        return _md_table(["true \\ predicted", *labels], body)
    pairs = top_confused_pairs(matrix, labels, TOP_CONFUSED_PAIRS)
    if not pairs:
        return "No confusions: every row was predicted as its true intent."
    body = [[p["true"], p["predicted"], p["count"], f"{p['share']:.1%}"] for p in pairs]
    return _md_table(["true", "predicted", "count", "share of true"], body)


def plot_ood_scores(scores: np.ndarray, out_of_scope: np.ndarray, threshold: float, path: Path, title: str) -> Path:
    """Write the out-of-distribution score's two distributions (in-scope rows, out-of-scope rows) with the
    router's threshold as PNG; a log axis when the positive scores span more than two decades. Returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scores = np.asarray(scores, dtype=np.float64)
    outside = np.asarray(out_of_scope, dtype=bool)
    positive = bool((scores > 0).all())
    log = positive and scores.max() > 100 * scores.min()
    low, high = scores.min(), max(scores.max(), threshold)
    edges = np.geomspace(low, high, 41) if log else np.linspace(min(low, threshold), high, 41)
    figure = Figure(figsize=(7.5, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for mask, name, colour in ((~outside, "in-scope", "#1f77b4"), (outside, "out-of-scope", "#d62728")):
        if mask.any():
            axes.hist(
                scores[mask], bins=edges.tolist(), alpha=0.55, color=colour, label=f"{name} ({int(mask.sum())} rows)"
            )
    axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g} (abstain above)")
    if log:
        axes.set_xscale("log")
    axes.set_xlabel("out-of-distribution score (higher: less like the training data)")
    axes.set_ylabel("rows")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
    return path
