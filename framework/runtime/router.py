"""Route text with a verified bundle: calibrated probabilities, thresholds, abstention to the fallback intent.

Whatever a caller sends, one batch item never breaks another: an empty text abstains without inference,
a non-string item (``bytes`` included: decode them first) gets an ``error``, invalid Unicode is replaced by
U+FFFD, huge texts are cut before tokenizing, and long inputs are processed in chunks of :data:`CHUNK` texts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np

from framework.runtime.bundle import BundleError, BundleInfo, read_bundle, verify_bundle
from framework.runtime.limits import check_threads
from framework.runtime.onnx_classifier import ModelLoadError, OnnxTextClassifier

CHUNK = 256
"""Texts tokenized and run per step: bounds memory for any number of inputs."""
REPR_TEXT = 200
SELF_CHECK_TEXT = "where is the main function defined"
"""What :meth:`Router.self_check` routes: any short text exercises tokenizer, model and routing."""

Decision = Literal["accept", "abstain"]


@dataclass(frozen=True, slots=True, repr=False)
class RouteResult:
    """Where one text goes and why.

    Attributes:
        text: the text as received (invalid code points replaced by U+FFFD; empty for a non-string item).
        intent: the final route: ``predicted`` when accepted, else the fallback intent (may be None).
        predicted: the most probable label, None when nothing was predicted (empty text, error).
        confidence: the calibrated probability of ``predicted`` (0.0 when nothing was predicted).
        decision: ``"accept"`` or ``"abstain"``.
        reason: why it abstained (or that it met the thresholds).
        runners_up: the next ``top_k - 1`` labels with their calibrated probabilities.
        error: what was wrong with the item, if anything.
    """

    text: str
    intent: str | None
    predicted: str | None
    confidence: float
    decision: Decision
    reason: str
    runners_up: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None

    @property
    def accepted(self) -> bool:
        """Whether the predicted intent was accepted."""
        return self.decision == "accept"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (runners-up as ``[label, probability]`` pairs)."""
        return {
            "text": self.text,
            "intent": self.intent,
            "predicted": self.predicted,
            "confidence": self.confidence,
            "decision": self.decision,
            "reason": self.reason,
            "runners_up": [[label, probability] for label, probability in self.runners_up],
            "error": self.error,
        }

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= REPR_TEXT else self.text[:REPR_TEXT] + "…"
        return (
            f"RouteResult(text={text!r}, intent={self.intent!r}, predicted={self.predicted!r}, "
            f"confidence={self.confidence!r}, decision={self.decision!r}, reason={self.reason!r}, "
            f"runners_up={self.runners_up!r}, error={self.error!r})"
        )


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``logits / temperature`` along the last axis, in float64, numerically stable."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


class Router:
    """An intent router over one bundle: load it with :meth:`load`, route texts with :meth:`predict`."""

    def __init__(self, info: BundleInfo, classifier: OnnxTextClassifier) -> None:
        if classifier.num_labels != len(info.labels):
            problem = (
                f"model.onnx returns {classifier.num_labels} scores per text but labels.json lists "
                f"{len(info.labels)} labels: the files come from different builds"
            )
            raise BundleError(info.path, "model.onnx", problem)
        self.info = info
        self.classifier = classifier
        self.temperature = info.calibration.temperature
        self.thresholds = dict(info.calibration.thresholds)
        self.global_threshold = info.calibration.global_threshold

    @classmethod
    def load(
        cls, bundle_dir: Path | str, verify: bool = True, exact: bool = True, threads: int | None = None
    ) -> Router:
        """Verify the bundle's checksums (unless ``verify=False``) and load its model and tokenizer.

        Args:
            bundle_dir: the bundle directory.
            verify: check every file against ``checksums.json`` first.
            exact: run each text alone so results never depend on the batch (see ``onnx_classifier``).
            threads: onnxruntime intra-op threads, 1 to ``MAX_THREADS`` (default: available CPUs, at most 8).

        Raises:
            BundleError: the bundle is missing, tampered with, malformed, or its model cannot be loaded.
            ValueError: ``threads`` is not a whole number from 1 to ``MAX_THREADS``.
        """
        threads = check_threads(threads)
        info = verify_bundle(bundle_dir) if verify else read_bundle(bundle_dir)
        try:
            classifier = OnnxTextClassifier(
                info.model_path, info.tokenizer_path, info.manifest.max_length, threads, exact=exact
            )
        except ModelLoadError as exc:
            name = "tokenizer.json" if exc.part == "tokenizer" else "model.onnx"
            raise BundleError(info.path, name, f"{name}: {exc}") from None
        return cls(info, classifier)

    def self_check(self) -> RouteResult:
        """Route :data:`SELF_CHECK_TEXT` end to end: tokenizer, model, calibration and thresholds.

        Raises:
            BundleError: the model failed on the text or returned scores that are not finite numbers.
        """
        result = self.predict(SELF_CHECK_TEXT)[0]
        scores = [result.confidence, *(probability for _, probability in result.runners_up)]
        problem = result.error or ("" if np.isfinite(scores).all() else "the scores it returned are not finite numbers")
        if problem:
            raise BundleError(self.info.path, "model.onnx", f"model.onnx cannot route a test text: {problem}")
        return result

    @property
    def labels(self) -> list[str]:
        """The labels, in logit-column order."""
        return list(self.info.labels)

    @property
    def fallback_intent(self) -> str | None:
        """Where abstentions go (the out-of-scope intent), or None."""
        return self.info.calibration.fallback_intent

    def predict(self, texts: Iterable[object] | str | bytes, top_k: int = 3) -> list[RouteResult]:
        """Route one text or many; one result per input, in order, whatever the items hold."""
        return list(self.iter_predict(texts, top_k))

    def iter_predict(
        self, texts: Iterable[object] | str | bytes, top_k: int = 3, chunk_size: int = CHUNK
    ) -> Iterator[RouteResult]:
        """Like :meth:`predict` but lazy: reads and routes ``chunk_size`` inputs at a time."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        items = iter([texts]) if isinstance(texts, str | bytes) else iter(texts)
        while chunk := list(islice(items, max(1, chunk_size))):
            yield from self._route_chunk(chunk, top_k)

    def route_logits(self, text: str, logits: np.ndarray, top_k: int = 3) -> RouteResult:
        """Apply temperature, thresholds and the fallback rule to one text's logits."""
        probabilities = calibrated_probabilities(logits, self.temperature)
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        predicted = self.info.labels[order[0]]
        confidence = float(probabilities[order[0]])
        reason = self._abstain_reason(predicted, confidence)
        runners_up = [(self.info.labels[j], float(probabilities[j])) for j in order[1:]]
        if reason is None:
            return RouteResult(text, predicted, predicted, confidence, "accept", "meets the thresholds", runners_up)
        return RouteResult(text, self.fallback_intent, predicted, confidence, "abstain", reason, runners_up)

    def _abstain_reason(self, predicted: str, confidence: float) -> str | None:
        if predicted == self.fallback_intent:
            return f"predicted the out-of-scope intent {predicted}"
        if predicted in self.thresholds:  # an intent's own threshold replaces the global one
            threshold = self.thresholds[predicted]
            if confidence < threshold:
                return f"below the threshold of {predicted} ({confidence:.4f} < {threshold:.4f})"
        elif confidence < self.global_threshold:
            return f"below the global threshold ({confidence:.4f} < {self.global_threshold:.4f})"
        return None

    def _route_chunk(self, chunk: list[object], top_k: int) -> list[RouteResult]:
        prepared = [_as_text(item) for item in chunk]
        runnable = [i for i, (text, error) in enumerate(prepared) if error is None and text.strip()]
        scores = dict(zip(runnable, self._safe_logits([prepared[i][0] for i in runnable]), strict=True))
        results = []
        for index, (text, error) in enumerate(prepared):
            score = scores.get(index)
            if error is not None or isinstance(score, str):
                message = error or str(score)
                results.append(self._nothing_predicted(text, f"error: {message}", message))
            elif score is None:
                results.append(self._nothing_predicted(text, "empty text"))
            else:
                results.append(self.route_logits(text, score, top_k))
        return results

    def _nothing_predicted(self, text: str, reason: str, error: str | None = None) -> RouteResult:
        return RouteResult(text, self.fallback_intent, None, 0.0, "abstain", reason, [], error)

    def _safe_logits(self, texts: list[str]) -> list[np.ndarray | str]:
        """Logits per text; when the batch fails, retry one by one and report each failure as a string."""
        if not texts:
            return []
        try:
            return list(self.classifier.logits(texts))
        except Exception:  # onnxruntime errors have several types; never let one text sink the batch
            return [self._one_logits(text) for text in texts]

    def _one_logits(self, text: str) -> np.ndarray | str:
        try:
            return self.classifier.logits([text])[0]
        except Exception as exc:
            detail = str(exc).strip().splitlines()
            return f"inference failed: {detail[0][:200] if detail else type(exc).__name__}"


def _as_text(item: object) -> tuple[str, str | None]:
    """The item as valid Unicode text, or an empty text and what was wrong with it."""
    if isinstance(item, str):
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: join valid pairs, replace the rest with U+FFFD
            return item.encode("utf-16", "surrogatepass").decode("utf-16", "replace"), None
        return item, None
    if isinstance(item, bytes | bytearray | memoryview):
        return "", f"expected a string, got {type(item).__name__} (decode it first, e.g. data.decode('utf-8'))"
    return "", f"expected a string, got {type(item).__name__}"
