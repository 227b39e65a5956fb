"""The encoder trainer on a tiny local model: empty eval split, params checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from framework.plugin_api import TrainContext
from framework.plugins.trainers._batching import encode
from framework.plugins.trainers.encoder import EncoderParams, encoder
from framework.progress import Progress

ROWS = [{"text": f"who calls fn_{i}", "intent": "A"} for i in range(12)] + [
    {"text": f"where is fn_{i} defined", "intent": "B"} for i in range(12)
]


def test_encode_accepts_no_texts() -> None:
    assert len(encode(object(), [], [], 16)) == 0


def test_training_without_an_eval_split_keeps_the_last_epoch(tiny_encoder: Path, tmp_path: Path) -> None:
    warnings: list[str] = []
    with Progress() as progress:
        context = TrainContext(labels=["A", "B"], work_dir=tmp_path, seed=0, task=progress.task, warn=warnings.append)
        params = EncoderParams(model=str(tiny_encoder), epochs=2, batch_size=8)
        result = encoder(ROWS, [], params, context)
    assert result.metrics["epochs_run"] == 2 and result.metrics["best_epoch"] == 2
    assert result.metrics["best_eval_accuracy"] is None
    assert any("eval split is empty" in w for w in warnings)
    assert (result.model_dir / "config.json").is_file() and (result.model_dir / "tokenizer.json").is_file()


def test_params_reject_bad_values() -> None:
    with pytest.raises(ValidationError):
        EncoderParams(epochs=0)
    with pytest.raises(ValidationError):
        EncoderParams(precision="fp8")
