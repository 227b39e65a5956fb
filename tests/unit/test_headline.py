"""The headline rows come from the stages' typed facts (framework.evaluation.run_facts)."""

from __future__ import annotations

import copy

import pytest

from framework.evaluation.headline import headline
from framework.evaluation.run_facts import RunFacts
from tests.unit.test_calibration_warnings import manifests


def _rows(facts: dict[str, dict]) -> dict[str, str]:
    return {row.metric: row.value for row in headline(facts)}


def test_out_of_scope_rows_show_the_routed_recall_and_precision() -> None:
    facts = manifests()
    part = facts["evaluate"]["evaluation"]["all"]
    part["out_of_scope"] = {"recall": 0.5, "precision": 0.25, "support": 8}  # argmax, before the thresholds
    part["routed"] = {
        "coverage": 0.9,
        "selective_accuracy": 0.995,
        "accuracy": 0.98,
        "out_of_scope": {"recall": 0.875, "precision": 0.7, "support": 8},
    }
    rows = _rows(facts)
    assert rows["out-of-scope recall / precision"] == "87.50% / 70.00%"
    assert rows["accepted share / accuracy of accepted"] == "90.00% / 99.50%"

    del part["routed"]  # no routed metrics: the raw predictions' figures
    assert _rows(facts)["out-of-scope recall / precision"] == "50.00% / 25.00%"
    part["out_of_scope"] = None  # no fallback intent: no row
    assert "out-of-scope recall / precision" not in _rows(facts)


def test_a_stage_of_the_same_name_with_other_facts_is_left_out() -> None:
    facts = manifests()
    facts["train"] = {"counted": 3}  # e.g. another target's "train" stage
    parsed = RunFacts.from_manifests(facts)
    assert parsed.train is None and parsed.evaluate is not None
    rows = _rows(facts)
    assert "training" not in rows and "macro-F1" in rows


def test_every_figure_comes_through_typed() -> None:
    facts = manifests()
    rows = _rows(facts)
    assert rows["accuracy (test split, synthetic rows)"] == "99.00%"
    assert rows["eval accuracy fp32 -> shipped"] == "99.00% -> 99.00%"
    assert rows["training"] == "2 epochs (best 2)"  # the trainer reported no device
    assert rows["ECE on test, calibrated"] == "0.0052 (chance level 0.0007, 95th percentile 0.0031)"
    with_size = copy.deepcopy(facts)
    with_size["export"]["export"]["sizes_bytes"] = {"model.onnx": 22_991_415}
    assert _rows(with_size)["model file"] == "23.0 MB"


def test_metrics_of_the_wrong_type_name_the_plugin() -> None:
    from types import SimpleNamespace

    from framework.errors import StageError
    from framework.pipeline.facts import TrainMetrics
    from framework.stages.common import plugin_metrics

    bound = SimpleNamespace(spec=SimpleNamespace(id="acme.trainer.v1"))
    assert plugin_metrics(bound, TrainMetrics, {"epochs_run": 3, "extra": [1]}).epochs_run == 3  # type: ignore[arg-type]
    with pytest.raises(StageError, match=r"plugin acme.trainer.v1 reported metrics that are not TrainMetrics: "):
        plugin_metrics(bound, TrainMetrics, {"epochs_run": "many"})  # type: ignore[arg-type]
