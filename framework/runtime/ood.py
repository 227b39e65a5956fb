"""Out-of-distribution scores of the runtime: how far a text lies from what the router was trained on.

Every score is higher for text that looks less like the training data, so one rule serves them all: the
router abstains when the score exceeds the threshold that calibration fitted on the eval split.

- ``mahalanobis``: the squared Mahalanobis distance of the pooled sentence embedding to the nearest in-scope
  class mean, under one covariance shared by all classes (Podolskiy et al., AAAI 2021). The bundle stores the
  class means already whitened (``means = mu @ W``) and the whitening matrix ``W`` (``W @ W.T`` is the
  inverse covariance), so the score is ``min_k |x @ W - means_k|^2``: one matrix product per text.
- ``energy``: the free energy ``-T logsumexp(logits / T)`` at the calibrated temperature (Liu et al., 2020).
- ``max_softmax``: ``1 - max softmax(logits / T)``, one minus the calibrated confidence (Hendrycks & Gimpel).

Pure numpy: the calibrate stage that fits the threshold and the ``Router`` that applies it call these same
functions, so a score computed at build time and at run time is the same number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

OOD_FILE = "ood.npz"
"""The bundle file holding the Mahalanobis scorer's arrays (``means``, ``whitening``), read without pickle."""

OodMethod = Literal["mahalanobis", "energy", "max_softmax"]
METHODS: tuple[OodMethod, ...] = ("mahalanobis", "energy", "max_softmax")


def _logsumexp(scaled: np.ndarray) -> np.ndarray:
    top = scaled.max(axis=-1, keepdims=True)
    return (top + np.log(np.exp(scaled - top).sum(axis=-1, keepdims=True)))[..., 0]


def energy_score(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Free energy ``-T logsumexp(logits / T)`` per row (float64): higher means further from the training data."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    return -temperature * _logsumexp(scaled)


def max_softmax_score(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``1 - max softmax(logits / T)`` per row (float64): one minus the calibrated confidence."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    return 1.0 - np.exp(scaled.max(axis=-1) - _logsumexp(scaled))


def mahalanobis_score(embeddings: np.ndarray, means: np.ndarray, whitening: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each embedding row to the nearest class mean (float64).

    Args:
        embeddings: ``[n, d]`` pooled sentence embeddings.
        means: ``[k, d]`` class means, already whitened (``mu @ whitening``).
        whitening: ``[d, d]`` matrix ``W`` with ``W @ W.T`` the inverse of the shared covariance.
    """
    z = np.asarray(embeddings, dtype=np.float64) @ whitening
    # |z - m|^2 = |z|^2 - 2 z.m + |m|^2, one product for all classes; clipped at 0 against rounding
    squared = (z**2).sum(axis=1, keepdims=True) - 2.0 * z @ means.T + (means**2).sum(axis=1)[None, :]
    return np.maximum(squared.min(axis=1), 0.0)


@dataclass(frozen=True)
class MahalanobisArrays:
    """The arrays of ``ood.npz``: whitened class means ``[k, d]`` and the whitening matrix ``[d, d]``."""

    means: np.ndarray
    whitening: np.ndarray

    @classmethod
    def as_stored(cls, means: np.ndarray, whitening: np.ndarray) -> MahalanobisArrays:
        """The arrays rounded to float32 as ``ood.npz`` stores them, so that the scores computed at build time
        with them are the scores the runtime computes with the file."""
        return cls(*(np.asarray(a, np.float32).astype(np.float64) for a in (means, whitening)))

    @property
    def dim(self) -> int:
        """The embedding width the arrays expect."""
        return int(self.whitening.shape[0])

    def save(self, path: Path) -> None:
        """Write both arrays (float32) to ``path`` as an uncompressed ``.npz``."""
        with open(path, "wb") as handle:
            np.savez(handle, means=self.means.astype(np.float32), whitening=self.whitening.astype(np.float32))

    @classmethod
    def load(cls, path: Path) -> MahalanobisArrays:
        """Read ``ood.npz`` (never unpickling); ``ValueError`` names what is wrong with it."""
        try:
            with np.load(path, allow_pickle=False) as data:
                means, whitening = np.asarray(data["means"]), np.asarray(data["whitening"])
        except KeyError as exc:
            raise ValueError(f"it lacks the array {exc}") from None
        except (OSError, ValueError) as exc:  # not a zip, or an array that needs pickle
            raise ValueError(f"it is not a readable .npz of numeric arrays ({exc})") from None
        if means.ndim != 2 or whitening.ndim != 2 or whitening.shape[0] != whitening.shape[1]:
            raise ValueError(f"expected means [k, d] and whitening [d, d], got {means.shape} and {whitening.shape}")
        if means.shape[1] != whitening.shape[1] or not means.shape[0]:
            raise ValueError(f"means {means.shape} and whitening {whitening.shape} do not fit together")
        if not (np.isfinite(means).all() and np.isfinite(whitening).all()):
            raise ValueError("its arrays hold values that are not finite numbers")
        return cls(means.astype(np.float64), whitening.astype(np.float64))


def ood_scores(
    method: OodMethod,
    logits: np.ndarray,
    temperature: float,
    embeddings: np.ndarray | None = None,
    arrays: MahalanobisArrays | None = None,
) -> np.ndarray:
    """The ``method``'s score of every row; ``mahalanobis`` needs the embeddings and the fitted arrays."""
    if method == "energy":
        return energy_score(logits, temperature)
    if method == "max_softmax":
        return max_softmax_score(logits, temperature)
    if embeddings is None or arrays is None:
        raise ValueError("the mahalanobis score needs the model's embedding output and the fitted ood.npz arrays")
    return mahalanobis_score(embeddings, arrays.means, arrays.whitening)
