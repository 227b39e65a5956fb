"""Route text with a verified bundle: calibrated probabilities, thresholds, abstention to the fallback intent.

A text is routed to its most probable intent only when two signals agree: its calibrated confidence meets the
intent's threshold, and (for bundles whose ``calibration.json`` has an ``ood`` section) its out-of-distribution
score stays within the fitted threshold (see ``framework.runtime.ood``). ``RouteResult.abstained_by`` says which
signal abstained; bundles made before the score existed route on confidence alone, as they always did.

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

from framework.runtime.bundle import BundleError, BundleInfo, OodCalibration, read_bundle, verify_bundle
from framework.runtime.limits import check_threads
from framework.runtime.onnx_classifier import EMBEDDING_OUTPUT, ModelLoadError, OnnxTextClassifier
from framework.runtime.ood import MahalanobisArrays, ood_scores

CHUNK = 256
"""Texts tokenized and run per step: bounds memory for any number of inputs."""
REPR_TEXT = 200
SELF_CHECK_TEXT = "where is the main function defined"
"""What :meth:`Router.self_check` routes: any short text exercises tokenizer, model and routing."""

Decision = Literal["accept", "abstain"]
Signal = Literal["fallback_intent", "confidence", "out_of_distribution", "empty", "error"]
"""What made a router abstain: the model predicted the out-of-scope intent, the calibrated confidence fell below
the threshold, the out-of-distribution score rose above its threshold, the text was empty, or the item failed."""


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
        ood_score: the out-of-distribution score (higher: less like the training data), None when the bundle
            has no ``ood`` calibration or nothing was predicted.
        abstained_by: every signal that abstained (empty when accepted); both ``confidence`` and
            ``out_of_distribution`` when both did.
    """

    text: str
    intent: str | None
    predicted: str | None
    confidence: float
    decision: Decision
    reason: str
    runners_up: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    ood_score: float | None = None
    abstained_by: tuple[Signal, ...] = ()

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
            "ood_score": self.ood_score,
            "abstained_by": list(self.abstained_by),
        }

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= REPR_TEXT else self.text[:REPR_TEXT] + "…"
        return (
            f"RouteResult(text={text!r}, intent={self.intent!r}, predicted={self.predicted!r}, "
            f"confidence={self.confidence!r}, decision={self.decision!r}, reason={self.reason!r}, "
            f"runners_up={self.runners_up!r}, error={self.error!r}, ood_score={self.ood_score!r}, "
            f"abstained_by={self.abstained_by!r})"
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
        self.ood: OodCalibration | None = info.calibration.ood
        self.ood_arrays = _ood_arrays(info, classifier)

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

    def ood_score(self, logits: np.ndarray, embedding: np.ndarray | None = None) -> float | None:
        """One text's out-of-distribution score (``runtime.ood``), or None when the bundle has no ``ood`` section."""
        if self.ood is None:
            return None
        if embedding is None and self.ood.method == "mahalanobis":
            raise ValueError(
                "this bundle's out-of-distribution score is mahalanobis: pass the text's pooled sentence embedding "
                "(the model's second output) as embedding="
            )
        rows = None if embedding is None else np.asarray(embedding)[None, :]
        return float(
            ood_scores(self.ood.method, np.asarray(logits)[None, :], self.temperature, rows, self.ood_arrays)[0]
        )

    def route_logits(
        self, text: str, logits: np.ndarray, top_k: int = 3, embedding: np.ndarray | None = None
    ) -> RouteResult:
        """Apply temperature, thresholds, the out-of-distribution score and the fallback rule to one text's
        logits (and its pooled ``embedding``, which the Mahalanobis score needs)."""
        probabilities = calibrated_probabilities(logits, self.temperature)
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        predicted = self.info.labels[order[0]]
        confidence = float(probabilities[order[0]])
        score = self.ood_score(logits, embedding)
        signals = self._abstain_signals(predicted, confidence, score)
        runners_up = [(self.info.labels[j], float(probabilities[j])) for j in order[1:]]
        if not signals:
            accepted = "meets the thresholds"
            return RouteResult(text, predicted, predicted, confidence, "accept", accepted, runners_up, ood_score=score)
        reason = "; ".join(signals.values())
        fallback = self.fallback_intent
        return RouteResult(
            text,
            fallback,
            predicted,
            confidence,
            "abstain",
            reason,
            runners_up,
            ood_score=score,
            abstained_by=tuple(signals),
        )

    def _abstain_signals(self, predicted: str, confidence: float, score: float | None) -> dict[Signal, str]:
        """Each signal that abstains, with its reason in words."""
        if predicted == self.fallback_intent:
            return {"fallback_intent": f"predicted the out-of-scope intent {predicted}"}
        signals: dict[Signal, str] = {}
        if predicted in self.thresholds:  # an intent's own threshold replaces the global one
            threshold = self.thresholds[predicted]
            if confidence < threshold:
                signals["confidence"] = f"below the threshold of {predicted} ({confidence:.4f} < {threshold:.4f})"
        elif confidence < self.global_threshold:
            signals["confidence"] = f"below the global threshold ({confidence:.4f} < {self.global_threshold:.4f})"
        if self.ood is not None and score is not None and score > self.ood.threshold:
            signals["out_of_distribution"] = (
                f"out of distribution ({self.ood.method} score {score:.4g} > {self.ood.threshold:.4g}, the threshold "
                f"that kept {self.ood.in_scope_recall:.0%} of in-scope eval rows)"
            )
        return signals

    def _route_chunk(self, chunk: list[object], top_k: int) -> list[RouteResult]:
        prepared = [_as_text(item) for item in chunk]
        runnable = [i for i, (text, error) in enumerate(prepared) if error is None and text.strip()]
        scores = dict(zip(runnable, self._safe_outputs([prepared[i][0] for i in runnable]), strict=True))
        results = []
        for index, (text, error) in enumerate(prepared):
            score = scores.get(index)
            if error is not None or isinstance(score, str):
                message = error or str(score)
                results.append(self._nothing_predicted(text, f"error: {message}", "error", message))
            elif score is None:
                results.append(self._nothing_predicted(text, "empty text", "empty"))
            else:
                results.append(self.route_logits(text, score[0], top_k, score[1]))
        return results

    def _nothing_predicted(self, text: str, reason: str, signal: Signal, error: str | None = None) -> RouteResult:
        return RouteResult(text, self.fallback_intent, None, 0.0, "abstain", reason, [], error, abstained_by=(signal,))

    @property
    def _wants_embeddings(self) -> bool:
        return self.ood_arrays is not None

    def _safe_outputs(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray | None] | str]:
        """Logits (and embedding, when the OOD score needs it) per text; when the batch fails, retry one by one
        and report each failure as a string."""
        if not texts:
            return []
        try:
            logits, pooled = self.classifier.outputs(texts, embeddings=self._wants_embeddings)
        except Exception:  # onnxruntime errors have several types; never let one text sink the batch
            return [self._one_output(text) for text in texts]
        return [(logits[i], None if pooled is None else pooled[i]) for i in range(len(texts))]

    def _one_output(self, text: str) -> tuple[np.ndarray, np.ndarray | None] | str:
        try:
            logits, pooled = self.classifier.outputs([text], embeddings=self._wants_embeddings)
        except Exception as exc:
            detail = str(exc).strip().splitlines()
            return f"inference failed: {detail[0][:200] if detail else type(exc).__name__}"
        return logits[0], None if pooled is None else pooled[0]


def _ood_arrays(info: BundleInfo, classifier: OnnxTextClassifier) -> MahalanobisArrays | None:
    """The Mahalanobis arrays the bundle's ``ood`` section names, checked against the model's embedding output."""
    ood = info.calibration.ood
    if ood is None or ood.file is None:
        return None
    if classifier.embedding_name is None:
        problem = f"calibration.json asks for the {ood.method} score, but model.onnx has no {EMBEDDING_OUTPUT!r} output"
        raise BundleError(info.path, "model.onnx", problem)
    try:
        arrays = MahalanobisArrays.load(info.path / ood.file)
    except ValueError as exc:
        raise BundleError(info.path, ood.file, f"{ood.file} cannot be used: {exc}") from None
    if arrays.dim != classifier.embedding_dim:
        problem = (
            f"{ood.file} expects {arrays.dim}-wide embeddings but model.onnx returns {classifier.embedding_dim}: "
            "the files come from different builds"
        )
        raise BundleError(info.path, ood.file, problem)
    return arrays


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
