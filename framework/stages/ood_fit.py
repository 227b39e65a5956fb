"""The calibrate stage's out-of-distribution step: fit the score, set its threshold, compare it with the others.

The Mahalanobis scorer is fitted on the train split's in-scope rows (their pooled embeddings from the exported
model, run as the runtime runs it). Every score then runs on the eval split: the chosen one gets the threshold
that keeps ``in_scope_recall`` of the in-scope eval rows; each one is measured at its own threshold for the same
recall, and by AUROC and FPR at 95% recall where the eval split has out-of-scope rows (the fallback intent's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from framework.errors import StageError
from framework.evaluation.ood import Detection, detection, fit_mahalanobis, threshold_for_recall
from framework.pipeline.facts import OodFacts
from framework.pipeline.runner import StageRun
from framework.runtime.onnx_classifier import OnnxTextClassifier
from framework.runtime.ood import METHODS, OOD_FILE, MahalanobisArrays, OodMethod, ood_scores
from framework.stages.common import model_outputs, say, split_rows, trained_labels

EVAL_SCORES_FILE = "ood_eval_scores.npz"
"""Each method's eval-split scores and which rows are out of scope, for the report and for checks."""


@dataclass(frozen=True)
class EvalOutputs:
    """The exported model's outputs on the eval split, with each row's class and the fallback intent's column."""

    logits: np.ndarray
    embeddings: np.ndarray | None
    label_ids: np.ndarray
    fallback_id: int | None

    @property
    def out_of_scope(self) -> np.ndarray:
        """Which eval rows belong to the fallback intent."""
        if self.fallback_id is None:
            return np.zeros(len(self.label_ids), dtype=bool)
        return self.label_ids == self.fallback_id


def fit_ood(
    run: StageRun,
    model: OnnxTextClassifier,
    in_scope_recall: float,
    method: str,
    temperature: float,
    evaluated: EvalOutputs,
) -> OodFacts:
    """Fit ``method`` (and, for comparison, the logit scores energy and max-softmax; Mahalanobis, which costs a
    pass over the train split, only when it is the method), write ``ood.npz`` for
    Mahalanobis and the eval scores, and return the facts with the threshold for ``calibration.json``."""
    arrays, fit_rows = None, 0
    if evaluated.embeddings is not None:
        arrays, fit_rows = _fit_mahalanobis(run, model, evaluated.fallback_id)
    scores: dict[str, np.ndarray] = {
        name: ood_scores(name, evaluated.logits, temperature, evaluated.embeddings, arrays)
        for name in _comparable(arrays)
    }
    oos = evaluated.out_of_scope
    if oos.all():
        raise StageError(
            "calibrate: every eval row belongs to the fallback intent, so no in-scope row can set the "
            "out-of-distribution threshold; give the eval split in-scope rows or set calibrate.ood.method=none."
        )
    compared: dict[str, Detection] = {
        name: detection(values, oos, threshold_for_recall(values[~oos], in_scope_recall))
        for name, values in scores.items()
    }
    threshold = compared[method].threshold
    assert threshold is not None
    arrays_to_save: dict[str, Any] = {"out_of_scope": oos, **scores}
    np.savez(run.work_dir / EVAL_SCORES_FILE, **arrays_to_save)
    file = None
    if method == "mahalanobis":
        assert arrays is not None
        arrays.save(run.work_dir / OOD_FILE)
        file = OOD_FILE
    chosen = compared[method]
    caught = "" if chosen.out_of_scope_caught is None else f", catches {chosen.out_of_scope_caught:.1%} of out-of-scope"
    say(
        f"calibrate: out-of-distribution score {method}, threshold {threshold:.4g} keeps {in_scope_recall:.0%} of "
        f"in-scope eval rows{caught}"
    )
    return OodFacts(
        method=method,
        threshold=threshold,
        in_scope_recall=in_scope_recall,
        file=file,
        fit_rows=fit_rows,
        classes=0 if arrays is None else int(arrays.means.shape[0]),
        eval=compared,
        scores_file=EVAL_SCORES_FILE,
    )


def _comparable(arrays: MahalanobisArrays | None) -> list[OodMethod]:
    return [name for name in METHODS if name != "mahalanobis" or arrays is not None]


def _fit_mahalanobis(
    run: StageRun, model: OnnxTextClassifier, fallback_id: int | None
) -> tuple[MahalanobisArrays, int]:
    """Class means and shared covariance of the train split's in-scope embeddings, and the rows fitted on."""
    labels = trained_labels(run)
    rows = [row for row in split_rows(run, "train") if labels.index(row["intent"]) != fallback_id]
    if not rows:
        raise StageError(
            "calibrate: the train split has no in-scope rows to fit the Mahalanobis score on; set "
            "calibrate.ood.method to energy, max_softmax or none."
        )
    _, embeddings = model_outputs(run, model, rows, "calibrate: train", embeddings=True)
    assert embeddings is not None
    label_ids = np.array([labels.index(row["intent"]) for row in rows], dtype=np.int64)
    classes = [c for c in range(len(labels)) if c != fallback_id]
    return fit_mahalanobis(embeddings, label_ids, classes), len(rows)
