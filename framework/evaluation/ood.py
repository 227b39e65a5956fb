"""Fitting and measuring the out-of-distribution scores of ``framework.runtime.ood`` (build time: numpy, scikit-learn).

The Mahalanobis scorer's class means and shared covariance come from the train split's pooled embeddings; the
covariance is the Ledoit-Wolf shrinkage estimate (scikit-learn) of the class-centred embeddings, which stays
invertible when a small recipe has fewer rows than embedding dimensions. Thresholds and detection metrics come
from the eval split, so the rows that fit the scorer never set its threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from framework.runtime.ood import MahalanobisArrays

IN_SCOPE_RECALL_FOR_FPR = 0.95
"""The in-scope recall at which ``fpr_at_95`` counts the out-of-scope rows still accepted."""


class Detection(BaseModel):
    """How well one score separates in-scope from out-of-scope rows (None where a side has no rows).

    Attributes:
        auroc: Area under the ROC curve with out-of-scope as the positive class (0.5: chance, 1.0: perfect).
        fpr_at_95: Share of out-of-scope rows scored below the threshold that keeps 95% of in-scope rows.
        in_scope_kept: Share of in-scope rows at or below ``threshold`` (None without a threshold).
        out_of_scope_caught: Share of out-of-scope rows above ``threshold``.
    """

    model_config = ConfigDict(extra="forbid")

    in_scope: int
    out_of_scope: int
    auroc: float | None = None
    fpr_at_95: float | None = None
    threshold: float | None = None
    in_scope_kept: float | None = None
    out_of_scope_caught: float | None = None


def fit_mahalanobis(embeddings: np.ndarray, label_ids: np.ndarray, classes: Sequence[int]) -> MahalanobisArrays:
    """Class means of ``classes`` and the whitening of their shared (Ledoit-Wolf) covariance.

    Args:
        embeddings: ``[n, d]`` train-split embeddings.
        label_ids: ``[n]`` class of each row.
        classes: the in-scope classes with rows (the fallback intent left out).
    """
    from sklearn.covariance import LedoitWolf

    x = np.asarray(embeddings, dtype=np.float64)
    kept = [c for c in classes if (label_ids == c).any()]
    if not kept:
        raise ValueError("no in-scope train rows to fit the Mahalanobis score on")
    means = np.stack([x[label_ids == c].mean(axis=0) for c in kept])
    rows = np.isin(label_ids, kept)
    index = {c: i for i, c in enumerate(kept)}
    centred = x[rows] - means[[index[int(c)] for c in label_ids[rows]]]
    covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
    # W with W @ W.T = inverse covariance: the inverse of the Cholesky factor, transposed
    try:
        factor = np.linalg.cholesky(covariance)
    except np.linalg.LinAlgError:  # rows that do not vary around their means (one per class): a small ridge
        ridge = max(1e-12, 1e-6 * float(np.trace(covariance)) / len(covariance))
        factor = np.linalg.cholesky(covariance + np.eye(len(covariance)) * ridge)
    whitening = np.linalg.inv(factor).T
    return MahalanobisArrays.as_stored(means @ whitening, whitening)


THRESHOLD_MARGIN = 1e-6
"""Relative margin above the last kept score: the runtime recomputes each score in another batch and BLAS
path, a few ulps away, and a threshold equal to a score would abstain on that very row."""


def threshold_for_recall(in_scope_scores: np.ndarray, recall: float) -> float:
    """A hair (``THRESHOLD_MARGIN``) above the smallest score at or below which at least ``recall`` of the
    in-scope scores lie."""
    scores = np.sort(np.asarray(in_scope_scores, dtype=np.float64))
    if not len(scores):
        raise ValueError("no in-scope eval rows to set the out-of-distribution threshold on")
    kept = float(scores[min(len(scores) - 1, max(0, math.ceil(recall * len(scores)) - 1))])
    return kept + THRESHOLD_MARGIN * max(1.0, abs(kept))


def detection(scores: np.ndarray, out_of_scope: np.ndarray, threshold: float | None = None) -> Detection:
    """AUROC and FPR at 95% in-scope recall of ``scores`` (higher: more out-of-scope), and the shares kept and
    caught at ``threshold``."""
    scores = np.asarray(scores, dtype=np.float64)
    oos = np.asarray(out_of_scope, dtype=bool)
    inside, outside = scores[~oos], scores[oos]
    result = Detection(in_scope=len(inside), out_of_scope=len(outside), threshold=threshold)
    if threshold is not None:
        result.in_scope_kept = float((inside <= threshold).mean()) if len(inside) else None
        result.out_of_scope_caught = float((outside > threshold).mean()) if len(outside) else None
    if len(inside) and len(outside):
        from sklearn.metrics import roc_auc_score

        result.auroc = float(roc_auc_score(oos, scores))
        at_95 = threshold_for_recall(inside, IN_SCOPE_RECALL_FOR_FPR)
        result.fpr_at_95 = float((outside <= at_95).mean())
    return result
