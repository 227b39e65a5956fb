"""Router: typed results, calibration, abstention, hostile inputs, batch independence, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from framework.runtime import BundleError, OnnxTextClassifier, Router, RouteResult, calibrated_probabilities
from framework.runtime.limits import MAX_THREADS
from framework.runtime.onnx_classifier import session_options
from framework.runtime.router import CHUNK, SELF_CHECK_TEXT
from tests.runtime.tiny_bundle import (
    FALLBACK,
    LABELS,
    MAX_LENGTH,
    TEXTS,
    BundleFactory,
    default_calibration,
    write_model,
)

REPO = Path(__file__).resolve().parents[2]
NO_THRESHOLDS = default_calibration(thresholds={}, global_threshold=0.0)


def test_predict_returns_typed_results(bundle: Path) -> None:
    router = Router.load(bundle)
    assert router.labels == LABELS and router.fallback_intent == FALLBACK
    results = router.predict(TEXTS, top_k=3)
    assert len(results) == len(TEXTS)
    for text, result in zip(TEXTS, results, strict=True):
        assert isinstance(result, RouteResult) and result.text == text
        assert result.predicted in LABELS and result.error is None
        assert isinstance(result.confidence, float) and 0.0 < result.confidence <= 1.0
        assert result.decision in ("accept", "abstain") and result.reason
        assert result.intent == (result.predicted if result.accepted else FALLBACK)
        assert len(result.runners_up) == 2
        probabilities = [result.confidence] + [p for _, p in result.runners_up]
        assert probabilities == sorted(probabilities, reverse=True)
        assert result.predicted not in [label for label, _ in result.runners_up]
    assert router.predict("who calls authenticate_user") == results[:1]
    assert len(router.predict(TEXTS[0], top_k=10)[0].runners_up) == len(LABELS) - 1
    assert router.predict(TEXTS[0], top_k=1)[0].runners_up == []
    with pytest.raises(ValueError, match="top_k"):
        router.predict(TEXTS[0], top_k=0)


def test_confidence_is_softmax_of_logits_over_temperature(make_bundle: BundleFactory) -> None:
    sharp = Router.load(make_bundle("sharp", calibration=default_calibration(temperature=0.5)))
    flat = Router.load(make_bundle("flat", calibration=default_calibration(temperature=4.0)))
    logits = sharp.classifier.logits(TEXTS)
    for index, text in enumerate(TEXTS):
        expected = calibrated_probabilities(logits[index], 0.5)
        result = sharp.predict(text)[0]
        assert result.confidence == pytest.approx(expected.max(), rel=1e-12)
        assert result.predicted == LABELS[int(np.argmax(logits[index]))]
        softer = flat.predict(text)[0]
        assert softer.predicted == result.predicted
        assert 1 / len(LABELS) < softer.confidence < result.confidence
    huge = calibrated_probabilities(np.array([1e4, -1e4, 0.0, 3.0]), 0.01)
    assert np.isfinite(huge).all() and huge.sum() == pytest.approx(1.0)


def test_thresholds_abstain_to_the_fallback(make_bundle: BundleFactory) -> None:
    strict = {label: 1.0 for label in LABELS if label != FALLBACK}
    router = Router.load(make_bundle("strict", calibration=default_calibration(thresholds=strict)))
    for result in router.predict(TEXTS):
        assert result.decision == "abstain" and result.intent == FALLBACK
        assert result.reason.startswith(("below the threshold of", "predicted the out-of-scope intent"))
    no_fallback = default_calibration(thresholds=dict.fromkeys(LABELS, 1.0), fallback_intent=None)
    for result in Router.load(make_bundle("none", calibration=no_fallback)).predict(TEXTS):
        assert result.decision == "abstain" and result.intent is None and result.predicted is not None
    global_only = default_calibration(thresholds={}, global_threshold=0.999)
    result = Router.load(make_bundle("global", calibration=global_only)).predict(TEXTS[0])[0]
    assert result.decision == "abstain" and result.reason.startswith("below the global threshold")


def test_confidence_equal_to_threshold_is_accepted(make_bundle: BundleFactory) -> None:
    first = Router.load(make_bundle("first", calibration=NO_THRESHOLDS)).predict(TEXTS[0])[0]
    exact = default_calibration(thresholds={first.predicted: first.confidence}, global_threshold=first.confidence)
    again = Router.load(make_bundle("again", calibration=exact)).predict(TEXTS[0])[0]
    assert again.confidence == first.confidence and again.decision == "accept"


def test_an_intents_own_threshold_replaces_the_global_one(make_bundle: BundleFactory) -> None:
    first = Router.load(make_bundle("first", calibration=NO_THRESHOLDS)).predict(TEXTS[0])[0]
    own_lower = default_calibration(thresholds={first.predicted: first.confidence * 0.5}, global_threshold=0.999)
    accepted = Router.load(make_bundle("own", calibration=own_lower)).predict(TEXTS[0])[0]
    assert accepted.decision == "accept" and accepted.intent == first.predicted
    others = default_calibration(thresholds={}, global_threshold=0.999)
    assert Router.load(make_bundle("others", calibration=others)).predict(TEXTS[0])[0].decision == "abstain"


def test_predicting_the_fallback_abstains(make_bundle: BundleFactory, tmp_path: Path) -> None:
    model = write_model(tmp_path / "biased.onnx", bias=[0.0, 0.0, 0.0, 50.0])
    router = Router.load(make_bundle("biased", model=model, calibration=NO_THRESHOLDS))
    for result in router.predict(TEXTS):
        assert result.predicted == FALLBACK and result.intent == FALLBACK
        assert result.decision == "abstain" and result.reason == f"predicted the out-of-scope intent {FALLBACK}"


def test_hostile_inputs_never_break_the_batch(bundle: Path) -> None:
    router = Router.load(bundle)
    megabyte = "who calls x " * 90_000
    items: list[object] = [
        "",
        "  \n\t ",
        megabyte,
        "\ud800abc",
        None,
        7,
        b"who calls x",
        b"\xff\xfe ok",
        "\ud83d\ude00 hi",
    ]
    started = time.perf_counter()
    results = router.predict(items)
    assert time.perf_counter() - started < 5, "a 1 MB text is cut before tokenizing"
    empty, blank, big, surrogate, none, number, raw, bad_bytes, pair = results
    for result in (empty, blank):
        assert (result.decision, result.reason, result.predicted) == ("abstain", "empty text", None)
        assert result.intent == FALLBACK and result.confidence == 0.0 and result.runners_up == []
    assert big.text == megabyte and big.predicted in LABELS
    assert big == replace(router.predict(megabyte[: MAX_LENGTH * 50])[0], text=megabyte)
    assert surrogate.text == "\ufffdabc" and surrogate.predicted in LABELS
    assert pair.text == "😀 hi" and pair.predicted in LABELS
    assert none.error == "expected a string, got NoneType" and number.error == "expected a string, got int"
    assert number.decision == "abstain" and number.intent == FALLBACK and number.reason.startswith("error")
    for result in (raw, bad_bytes):  # README: a non-string item gets a per-item error; bytes are not decoded
        assert result.error is not None and result.error.startswith("expected a string, got bytes")
        assert (result.text, result.predicted, result.decision, result.intent) == ("", None, "abstain", FALLBACK)
    assert router.predict(b"who calls x")[0].error == raw.error
    for result in results:
        json.dumps(result.to_dict(), ensure_ascii=False).encode("utf-8")
    assert len(repr(big)) < 600


def test_batched_equals_one_by_one_on_int8(bundle: Path) -> None:
    router = Router.load(bundle)
    texts = [*TEXTS, *(f"{text} in module_{i}" for i, text in enumerate(TEXTS)), "x", "who"]
    batched = router.predict(texts)
    assert batched == [router.predict(text)[0] for text in texts]
    assert batched == router.predict(list(reversed(texts)))[::-1]


def test_exact_mode_is_batch_independent_and_padded_batches_are_not(tiny_models: dict[str, Path]) -> None:
    from tests.runtime.tiny_bundle import tokenizer_path

    texts = [*TEXTS, "x"]
    for kind in ("float", "int8"):
        classifier = OnnxTextClassifier(tiny_models[kind], tokenizer_path(), MAX_LENGTH)
        exact = classifier.logits(texts)
        assert exact.dtype == np.float32 and exact.shape == (len(texts), len(LABELS))
        assert np.array_equal(exact, np.concatenate([classifier.logits([text]) for text in texts]))
        padded = classifier.logits(texts, batch_size=4, exact=False)
        np.testing.assert_allclose(padded, exact, atol=1e-5 if kind == "float" else 0.2)
        if kind == "int8":  # documented: per-tensor activation scales depend on the whole padded batch
            assert not np.array_equal(padded, exact)
    assert classifier.logits([]).shape == (0, len(LABELS))


def test_ten_thousand_items_are_routed_in_bounded_chunks(bundle: Path) -> None:
    router = Router.load(bundle)
    drawn = 0

    def items() -> Iterator[object]:
        nonlocal drawn
        for index in range(10_000):
            drawn += 1
            yield None if index % 1000 == 0 else "" if index % 1000 == 1 else f"who calls function_{index % 97}"

    stream = router.iter_predict(items())
    next(stream)
    assert drawn == CHUNK, "the input is read one chunk at a time"
    results = [*router.predict(items())]
    assert len(results) == 10_000
    assert sum(result.error is not None for result in results) == 10
    assert sum(result.reason == "empty text" for result in results) == 10
    assert results[2] == router.predict("who calls function_2")[0]


def test_model_and_labels_that_disagree_are_refused(make_bundle: BundleFactory, tmp_path: Path) -> None:
    labels = [*LABELS, "Extra"]
    with pytest.raises(BundleError, match=r"returns 4 scores per text but labels.json lists 5 labels"):
        Router.load(make_bundle("five", labels=labels))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(BundleError, match=r"model.onnx: onnxruntime cannot load the model"):
        Router.load(make_bundle("broken", model=broken))


def test_runtime_never_imports_torch(bundle: Path) -> None:
    script = (
        "import sys\n"
        "import framework.runtime as runtime\n"
        "assert 'onnxruntime' not in sys.modules, 'the package imports lazily'\n"
        f"results = runtime.Router.load({str(bundle)!r}).predict(['who calls authenticate_user', ''])\n"
        "assert results[0].predicted, results\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "assert not heavy, heavy\n"
        "assert 'onnxruntime' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("threads", [0, -1, 100_000, MAX_THREADS + 1, True, 2.5, "4"])
def test_threads_out_of_bounds_are_refused_before_loading(bundle: Path, threads: object) -> None:
    with pytest.raises(ValueError, match=rf"threads must be a whole number from 1 to {MAX_THREADS}"):
        Router.load(bundle, threads=threads)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads must be"):
        session_options(threads)  # type: ignore[arg-type]


def test_threads_within_bounds_are_used(bundle: Path) -> None:
    assert Router.load(bundle, threads=1).predict("who calls x")[0].error is None
    assert session_options(MAX_THREADS).intra_op_num_threads == MAX_THREADS


def test_self_check_routes_a_text_and_refuses_a_model_that_gives_no_numbers(
    make_bundle: BundleFactory, tmp_path: Path
) -> None:
    result = Router.load(make_bundle()).self_check()
    assert result.text == SELF_CHECK_TEXT and result.predicted in LABELS and result.error is None
    nan_model = write_model(tmp_path / "nan.onnx", bias=[float("nan")] * len(LABELS))
    router = Router.load(make_bundle("nan", model=nan_model))  # loads: the scores are only wrong
    with pytest.raises(BundleError, match=r"model.onnx cannot route a test text: .*not finite numbers"):
        router.self_check()
