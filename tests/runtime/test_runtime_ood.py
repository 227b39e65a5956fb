"""Out-of-distribution scores: the numpy formulas, the fit, and the Router abstaining on them (or, for bundles
made before them, routing exactly as it did)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framework.evaluation.ood import detection, fit_mahalanobis, threshold_for_recall
from framework.runtime import BundleError, Router, write_checksums
from framework.runtime.ood import MahalanobisArrays, energy_score, mahalanobis_score, max_softmax_score, ood_scores
from tests.runtime.tiny_bundle import FALLBACK, HIDDEN, TEXTS, BundleFactory, default_calibration

REPO = Path(__file__).resolve().parents[2]
NO_THRESHOLDS = default_calibration(thresholds={}, global_threshold=0.0)


def test_logit_scores_match_their_definitions() -> None:
    logits = np.array([[2.0, 1.0, -1.0], [10.0, 10.0, 10.0], [300.0, 0.0, 0.0]])
    for temperature in (0.5, 1.0, 3.0):
        scaled = logits / temperature
        expected_energy = -temperature * np.log(np.exp(scaled - scaled.max(1, keepdims=True)).sum(1)) - logits.max(1)
        np.testing.assert_allclose(energy_score(logits, temperature), expected_energy, rtol=1e-12)
        probabilities = np.exp(scaled - scaled.max(1, keepdims=True))
        probabilities /= probabilities.sum(1, keepdims=True)
        np.testing.assert_allclose(max_softmax_score(logits, temperature), 1 - probabilities.max(1), atol=1e-12)
    assert np.isfinite(energy_score(logits * 1e3, 1.0)).all()  # no overflow on huge logits


def test_mahalanobis_matches_the_textbook_formula() -> None:
    rng = np.random.default_rng(0)
    d, classes = 6, 3
    centres = rng.normal(0, 5, (classes, d))
    mixing = rng.normal(0, 1, (d, d))
    labels = np.repeat(np.arange(classes), 400)
    x = centres[labels] + rng.normal(0, 1, (len(labels), d)) @ mixing
    arrays = fit_mahalanobis(x, labels, range(classes))
    from sklearn.covariance import LedoitWolf

    means = np.stack([x[labels == c].mean(0) for c in range(classes)])
    precision = np.linalg.inv(LedoitWolf(assume_centered=True).fit(x - means[labels]).covariance_)
    queries = rng.normal(0, 8, (20, d))
    expected = np.array([min((q - m) @ precision @ (q - m) for m in means) for q in queries])
    # the arrays are rounded to float32, as ood.npz stores them
    np.testing.assert_allclose(mahalanobis_score(queries, arrays.means, arrays.whitening), expected, rtol=1e-5)
    # a class mean is at distance zero from itself; far points score higher than near ones
    np.testing.assert_allclose(mahalanobis_score(means, arrays.means, arrays.whitening), 0.0, atol=1e-4)
    assert mahalanobis_score(means[:1] + 100, arrays.means, arrays.whitening)[0] > expected.max()


def test_one_row_per_class_still_fits_a_finite_score() -> None:
    # every row is its class's mean: the centred rows are all zero and Ledoit-Wolf returns a zero covariance
    x = np.random.default_rng(0).normal(0, 1, (3, 5))
    arrays = fit_mahalanobis(x, np.arange(3), range(3))
    scores = mahalanobis_score(np.vstack([x, x[:1] + 1.0]), arrays.means, arrays.whitening)
    assert np.isfinite(scores).all() and scores[-1] > scores[:3].max()


def test_threshold_keeps_the_recall_and_detection_measures_both_sides() -> None:
    inside = np.arange(100, dtype=float)
    assert 97.0 < threshold_for_recall(inside, 0.98) < 97.001  # 98 of the 100 scores lie at or below it
    assert 99.0 < threshold_for_recall(inside, 1.0) < 99.001
    # the runtime recomputes the last kept score a few ulps away: it stays kept
    assert threshold_for_recall(np.array([1.5, 81.1273688162619]), 1.0) >= 81.12736881629098
    scores = np.concatenate([inside, np.arange(50, 150, dtype=float)])
    oos = np.concatenate([np.zeros(100, bool), np.ones(100, bool)])
    measured = detection(scores, oos, threshold=97.0)
    assert measured.in_scope_kept == 0.98 and measured.out_of_scope_caught == 0.52
    assert measured.fpr_at_95 == 0.45  # 95th percentile of in-scope is 94: out-of-scope 50..94 pass, 45 of 100
    assert 0.5 < measured.auroc < 1.0
    assert detection(inside, np.zeros(100, bool)).auroc is None  # no out-of-scope rows: nothing to separate


def _embeddings(router: Router, texts: list[str]) -> np.ndarray:
    _, pooled = router.classifier.outputs(texts)
    assert pooled is not None
    return pooled


def _ood_bundle(make_bundle: BundleFactory, tiny_models: dict[str, Path], name: str, **ood: object) -> Path:
    """An INT8 bundle with the embedding output and a Mahalanobis score fitted on the TEXTS' own embeddings."""
    plain = Router.load(make_bundle(f"{name}-probe", model=tiny_models["int8+embedding"]))
    pooled = _embeddings(plain, TEXTS)
    arrays = fit_mahalanobis(
        np.tile(pooled, (4, 1)) + np.random.default_rng(1).normal(0, 0.05, (32, HIDDEN)),
        np.tile(np.arange(len(TEXTS)) % 3, 4),
        range(3),
    )
    section = {"method": "mahalanobis", "threshold": 1e9, "in_scope_recall": 0.98, "file": "ood.npz", **ood}
    calibration = {**NO_THRESHOLDS, "ood": section}
    return make_bundle(name, model=tiny_models["int8+embedding"], calibration=calibration, ood_arrays=arrays)


def test_router_scores_every_text_with_the_bundles_arrays(make_bundle: BundleFactory, tiny_models: dict) -> None:
    router = Router.load(_ood_bundle(make_bundle, tiny_models, "scored"))
    results = router.predict(TEXTS)
    arrays = MahalanobisArrays.load(router.info.path / "ood.npz")
    expected = mahalanobis_score(_embeddings(router, TEXTS), arrays.means, arrays.whitening)
    np.testing.assert_allclose([r.ood_score for r in results], expected, rtol=1e-9)
    routable = [r for r in results if r.predicted != FALLBACK]  # the fallback intent abstains before any score
    assert len(routable) >= 4 and all(r.accepted and r.abstained_by == () for r in routable)  # nothing is 1e9 away
    assert results[0].to_dict()["ood_score"] == results[0].ood_score


def test_router_abstains_on_the_ood_score_and_says_which_signal(make_bundle: BundleFactory, tiny_models: dict) -> None:
    probe = Router.load(_ood_bundle(make_bundle, tiny_models, "probe"))
    scores = sorted(r.ood_score for r in probe.predict(TEXTS))
    middle = (scores[3] + scores[4]) / 2
    router = Router.load(_ood_bundle(make_bundle, tiny_models, "cut", threshold=middle))
    seen = set()
    for result in router.predict(TEXTS):
        assert result.ood_score is not None
        if result.predicted == FALLBACK:
            assert result.abstained_by == ("fallback_intent",)
        elif result.ood_score > middle:
            assert result.decision == "abstain" and result.intent == FALLBACK
            assert result.abstained_by == ("out_of_distribution",)
            assert "out of distribution (mahalanobis score" in result.reason and "98% of in-scope" in result.reason
            seen.add("far")
        else:
            assert result.accepted and result.abstained_by == ()
            seen.add("near")
    assert seen == {"far", "near"}
    both = Router.load(_ood_bundle(make_bundle, tiny_models, "both", threshold=-1.0))
    both.global_threshold = 1.0  # every confidence is below it, and every score above -1
    result = both.predict(TEXTS[0])[0]
    assert (
        result.predicted != FALLBACK
        and result.abstained_by == ("confidence", "out_of_distribution")
        and "; out of distribution" in result.reason
    )


def test_route_logits_without_the_embedding_names_the_argument(make_bundle: BundleFactory, tiny_models: dict) -> None:
    router = Router.load(_ood_bundle(make_bundle, tiny_models, "logits"))
    logits, pooled = router.classifier.outputs(TEXTS[:1])
    assert pooled is not None
    with pytest.raises(ValueError, match=r"pass the text's pooled sentence embedding .* as embedding="):
        router.route_logits(TEXTS[0], logits[0])
    routed = router.route_logits(TEXTS[0], logits[0], embedding=pooled[0])
    assert routed.ood_score == router.predict(TEXTS[0])[0].ood_score


def test_energy_needs_no_arrays_and_no_embedding_output(make_bundle: BundleFactory) -> None:
    section = {"method": "energy", "threshold": -1e9, "in_scope_recall": 0.98}
    router = Router.load(make_bundle("energy", int8=True, calibration={**NO_THRESHOLDS, "ood": section}))
    results = router.predict(TEXTS)
    expected = energy_score(router.classifier.logits(TEXTS), router.temperature)
    np.testing.assert_allclose([r.ood_score for r in results], expected, rtol=1e-12)
    routable = [r for r in results if r.predicted != FALLBACK]
    assert routable and all(r.abstained_by == ("out_of_distribution",) for r in routable)


def test_a_bundle_from_before_the_ood_score_routes_as_it_did(make_bundle: BundleFactory, tiny_models: dict) -> None:
    """Format 1: no embedding output, no ood section. The same weights with the new output route identically."""
    old = Router.load(make_bundle("old", int8=True))
    assert old.info.manifest.format_version == 1 and old.ood is None and old.classifier.embedding_name is None
    new = Router.load(make_bundle("new", model=tiny_models["int8+embedding"]))
    assert new.classifier.embedding_dim == HIDDEN
    before, after = old.predict(TEXTS), new.predict(TEXTS)
    assert [r.to_dict() for r in before] == [r.to_dict() for r in after]
    assert all(r.ood_score is None for r in before)
    assert all(r.abstained_by in ((), ("confidence",), ("fallback_intent",)) for r in before)


def test_broken_ood_parts_are_refused_with_the_file_named(make_bundle: BundleFactory, tiny_models: dict) -> None:
    good = _ood_bundle(make_bundle, tiny_models, "good")
    section = json.loads((good / "calibration.json").read_text())["ood"]
    no_output = make_bundle(
        "no-output",
        int8=True,
        calibration={**NO_THRESHOLDS, "ood": section},
        ood_arrays=MahalanobisArrays.load(good / "ood.npz"),
    )
    with pytest.raises(BundleError, match=re.escape("model.onnx has no 'embedding' output")):
        Router.load(no_output)
    missing = make_bundle("missing", model=tiny_models["int8+embedding"], calibration={**NO_THRESHOLDS, "ood": section})
    with pytest.raises(BundleError, match=re.escape("ood.npz is missing")):
        Router.load(missing, verify=False)
    narrow = MahalanobisArrays(np.zeros((2, 3)), np.eye(3))
    wrong = make_bundle(
        "wrong", model=tiny_models["int8+embedding"], calibration={**NO_THRESHOLDS, "ood": section}, ood_arrays=narrow
    )
    with pytest.raises(BundleError, match=re.escape("expects 3-wide embeddings but model.onnx returns 32")):
        Router.load(wrong)
    pickled = _ood_bundle(make_bundle, tiny_models, "pickled")
    with open(pickled / "ood.npz", "wb") as handle:
        np.savez(handle, means=np.array([object()]), whitening=np.eye(HIDDEN))
    write_checksums(pickled)
    with pytest.raises(BundleError, match=re.escape("ood.npz cannot be used: it is not a readable .npz")):
        Router.load(pickled)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"method": "mahalanobis", "threshold": 1.0, "in_scope_recall": 0.98}, "file must be 'ood.npz'"),
        ({"method": "energy", "threshold": 1.0, "in_scope_recall": 0.98, "file": "ood.npz"}, "file must be"),
        ({"method": "knn", "threshold": 1.0, "in_scope_recall": 0.98}, "ood.method"),
        ({"method": "energy", "threshold": float("nan"), "in_scope_recall": 0.98}, "ood.threshold"),
    ],
)
def test_bad_ood_sections_name_the_key(make_bundle: BundleFactory, section: dict, expected: str) -> None:
    bundle = make_bundle("bad", int8=True, calibration={**NO_THRESHOLDS, "ood": section})
    with pytest.raises(BundleError, match=expected):
        Router.load(bundle)


def test_ood_scores_dispatches_and_names_what_mahalanobis_lacks() -> None:
    logits = np.array([[1.0, 2.0]])
    assert ood_scores("energy", logits, 1.0)[0] == energy_score(logits, 1.0)[0]
    with pytest.raises(ValueError, match="needs the model's embedding output"):
        ood_scores("mahalanobis", logits, 1.0)


def test_the_ood_score_needs_no_torch(make_bundle: BundleFactory, tiny_models: dict) -> None:
    bundle = _ood_bundle(make_bundle, tiny_models, "torchless")
    script = (
        "import sys\n"
        "from framework.runtime import Router\n"
        f"result = Router.load({str(bundle)!r}).predict('who calls authenticate_user')[0]\n"
        "assert result.ood_score is not None, result\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'sklearn', 'scipy'))\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
