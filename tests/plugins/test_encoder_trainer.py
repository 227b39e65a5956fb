"""The encoder trainer on a tiny local model: empty eval split, params checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from framework.pipeline.progress import Progress
from framework.plugin_api import TrainContext
from framework.plugins.trainers._batching import encode
from framework.plugins.trainers.encoder import EncoderParams, encoder

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


@pytest.mark.parametrize(
    ("params", "loc", "words"),
    [
        ({"epochs": 0}, ("epochs",), "greater than or equal to 1"),
        ({"precision": "fp8"}, ("precision",), "'auto', 'fp32', 'fp16' or 'bf16'"),
    ],
)
def test_params_reject_bad_values(params: dict[str, object], loc: tuple[str, ...], words: str) -> None:
    """Each bad value fails on its own field, for the stated reason (and on nothing else)."""
    with pytest.raises(ValidationError) as caught:
        EncoderParams(**params)
    [error] = caught.value.errors()
    assert error["loc"] == loc and words in error["msg"]


def test_the_optimizer_is_torchs_fused_adamw_on_the_cpu(tiny_encoder: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from framework.plugins.trainers._encoder_fit import _optimizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_encoder, num_labels=2)
    optimizer, _ = _optimizer(model, EncoderParams(model=str(tiny_encoder)), steps=10)
    assert optimizer.defaults["fused"] is True
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.01, 0.0]


@pytest.mark.parametrize(("norm", "calls"), [(0.5, 3 * 3), (None, 0)])  # 24 rows in batches of 8, 3 epochs
def test_gradient_clipping_runs_every_step_and_can_be_turned_off(
    tiny_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, norm: float | None, calls: int
) -> None:
    import torch

    seen: list[float] = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(
        torch.nn.utils, "clip_grad_norm_", lambda p, max_norm: seen.append(max_norm) or clip(p, max_norm)
    )
    with Progress() as progress:
        context = TrainContext(labels=["A", "B"], work_dir=tmp_path, seed=0, task=progress.task)
        encoder(ROWS, [], EncoderParams(model=str(tiny_encoder), epochs=3, batch_size=8, max_grad_norm=norm), context)
    assert seen == [norm] * calls
