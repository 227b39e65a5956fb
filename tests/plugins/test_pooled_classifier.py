"""Mean pooling for sentence-transformers checkpoints: detection, the class-means head, training, saving, loading
and export (the ONNX graph computes the same logits as the PyTorch model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from framework.models import MINILM, resolve_model
from framework.pipeline.progress import Progress
from framework.plugin_api import ExportContext, TrainContext
from framework.plugins.exporters.onnx import OnnxParams, onnx_exporter
from framework.plugins.trainers._encoder_fit import pooling_of
from framework.plugins.trainers._pooled import (
    HEAD_CONFIG,
    HEAD_WEIGHTS,
    PooledClassifier,
    checkpoint_pooling,
    init_head_from_class_means,
    init_head_from_logistic,
    load_classifier,
)
from framework.plugins.trainers.encoder import EncoderParams, encoder
from framework.runtime.onnx_classifier import OnnxTextClassifier
from tests.plugins.test_encoder_trainer import ROWS


def _declare_pooling(directory: Path, mode: str) -> Path:
    """Give a Hugging Face checkpoint a sentence-transformers ``modules.json`` with ``mode`` pooling."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    config = {"pooling_mode_mean_tokens": mode == "mean", "pooling_mode_cls_token": mode == "cls"}
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(config))
    return directory


@pytest.fixture(scope="module")
def mean_encoder(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny encoder declared as a mean-pooling sentence-transformers checkpoint."""
    target = tmp_path_factory.mktemp("mean-encoder") / "model"
    shutil.copytree(tiny_encoder, target)
    return _declare_pooling(target, "mean")


def test_the_shipped_minilm_declares_mean_pooling() -> None:
    assert checkpoint_pooling(Path(resolve_model(MINILM).source)) == "mean"


def test_pooling_is_read_from_the_checkpoint(tiny_encoder: Path, tmp_path: Path) -> None:
    assert checkpoint_pooling(tiny_encoder) is None  # a plain Hugging Face checkpoint
    assert checkpoint_pooling(_declare_pooling(tmp_path, "cls")) == "cls"
    (tmp_path / "modules.json").write_text("not json")
    assert checkpoint_pooling(tmp_path) is None
    auto = EncoderParams(model=str(tiny_encoder))
    assert auto.pooling == "auto" and pooling_of(auto, str(tiny_encoder), is_local=True) == "cls_head"
    forced = EncoderParams(model=str(tiny_encoder), pooling="mean")
    assert pooling_of(forced, str(tiny_encoder), is_local=True) == "mean"


def test_the_class_means_head_is_the_shared_covariance_gaussian_classifier(tiny_encoder: Path) -> None:
    from transformers import AutoModel

    model = PooledClassifier(AutoModel.from_pretrained(tiny_encoder), ["A", "B", "C"])
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32)) * 0.3  # overlapping classes: the best scale is finite
    labels = np.repeat(np.arange(3), 50)
    points = torch.tensor(centres[labels] + rng.normal(size=(150, 32)), dtype=torch.float32)
    init_head_from_class_means(model, points, torch.tensor(labels))
    logits = model.classifier(points).detach().numpy()
    means = np.stack([points.numpy()[labels == c].mean(0) for c in range(3)])
    distances = ((points.numpy()[:, None, :] - means[None]) ** 2).sum(-1)
    assert (logits.argmax(1) == distances.argmin(1)).all()  # the nearest class mean wins
    # the logit gaps are the squared-distance gaps over 2 s2 (s2 the within-class variance per dimension),
    # times one scale: the same for every row and pair of classes
    s2 = ((points.numpy() - means[labels]) ** 2).mean()
    ratios = (logits[:, 1] - logits[:, 0]) / ((distances[:, 0] - distances[:, 1]) / (2 * s2))
    assert np.allclose(ratios, ratios[0], rtol=1e-3) and ratios[0] > 0
    # that scale is the one with the lowest cross-entropy on these rows: a little more or less is worse
    loss = torch.nn.functional.cross_entropy
    best = float(loss(torch.tensor(logits), torch.tensor(labels)))
    for factor in (0.7, 1.4):
        assert float(loss(torch.tensor(logits * factor), torch.tensor(labels))) > best


def test_training_with_mean_pooling_saves_a_head_that_loads_and_exports(mean_encoder: Path, tmp_path: Path) -> None:
    evals = [{"text": "who calls fn_99", "intent": "A"}, {"text": "where is fn_98 defined", "intent": "B"}]
    with Progress() as progress:
        context = TrainContext(labels=["A", "B"], work_dir=tmp_path, seed=0, task=progress.task)
        params = EncoderParams(model=str(mean_encoder), epochs=2, batch_size=8, lr=2e-3, head_lr=1e-2)
        result = encoder(ROWS, evals, params, context)
    assert result.metrics["pooling"] == "mean" and result.metrics["head_init"] == "class_means"
    model_dir = result.model_dir
    assert (model_dir / HEAD_CONFIG).is_file() and (model_dir / HEAD_WEIGHTS).is_file()
    loaded = load_classifier(model_dir).eval()
    assert isinstance(loaded, PooledClassifier) and loaded.labels == ["A", "B"]

    texts = [row["text"] for row in ROWS[:4]]
    with Progress() as progress:
        context = ExportContext(
            model_dir=model_dir,
            labels=["A", "B"],
            eval_rows=ROWS,
            max_length=32,
            work_dir=tmp_path / "export",
            task=progress.task,
            warn=lambda message: None,
        )
        context.work_dir.mkdir()
        exported = onnx_exporter(OnnxParams(quantize=False), context)
    assert exported.metrics["parity_max_abs_diff"] < 1e-3
    tokens = loaded_logits(loaded, model_dir, texts)
    onnx_logits = OnnxTextClassifier(exported.model_path, model_dir / "tokenizer.json", 32).logits(texts)
    assert np.allclose(onnx_logits, tokens, atol=1e-3)


def loaded_logits(model: PooledClassifier, model_dir: Path, texts: list[str]) -> np.ndarray:
    """The PyTorch model's logits, one text at a time (as the runtime runs them)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        rows = [
            model(**tokenizer([text], return_tensors="pt", truncation=True, max_length=32)).logits for text in texts
        ]
    return torch.cat(rows).numpy()


def test_a_head_lr_gets_its_own_groups(tiny_encoder: Path) -> None:
    from transformers import AutoModel

    from framework.plugins.trainers._encoder_fit import _optimizer

    model = PooledClassifier(AutoModel.from_pretrained(tiny_encoder), ["A", "B"])
    optimizer, _ = _optimizer(model, EncoderParams(model=str(tiny_encoder), lr=1e-4, head_lr=1e-2), steps=10)
    rates = [(group["initial_lr"], group["weight_decay"], len(group["params"])) for group in optimizer.param_groups]
    assert rates[2:] == [(1e-2, 0.01, 1), (1e-2, 0.0, 1)]  # the head's weight, then its bias
    assert {lr for lr, _, _ in rates[:2]} == {1e-4}


def test_a_class_without_train_rows_never_wins_after_the_init(tiny_encoder: Path) -> None:
    from transformers import AutoModel

    model = PooledClassifier(AutoModel.from_pretrained(tiny_encoder), ["A", "B", "C"])
    rng = np.random.default_rng(1)
    points = torch.tensor(rng.normal(size=(40, 32)), dtype=torch.float32)
    labels = torch.tensor([0] * 20 + [2] * 20)  # no row of B
    init_head_from_class_means(model, points, labels)
    probes = torch.tensor(rng.normal(size=(200, 32)) * 0.1, dtype=torch.float32)  # near the centre, where B sat
    logits = model.classifier(torch.cat([points, probes])).detach()
    assert (logits[:, 1] < logits[:, [0, 2]].min(1).values).all()


def as_torch(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def test_the_logistic_head_is_scikit_learns_probe_on_the_raw_embeddings(tiny_encoder: Path) -> None:
    """The head computes the fitted logistic regression's probabilities on the unscaled embeddings, its C is the
    one with the lowest eval cross-entropy, a class without train rows never wins, a near-constant dimension
    does not blow the weights up, and two classes and one class work."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from transformers import AutoModel

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(4, 32)) * 0.8
    train_y, eval_y = np.array([0, 1, 3] * 60), np.array([0, 1, 3] * 20)  # no row of class 2
    train_x = centres[train_y] + rng.normal(size=(180, 32)) + 3
    eval_x = centres[eval_y] + rng.normal(size=(60, 32)) + 3
    train_x[:, 0] = 2.0 + rng.normal(size=180) * 1e-9  # a dimension that barely moves, as MiniLM has
    model = PooledClassifier(AutoModel.from_pretrained(tiny_encoder), ["A", "B", "C", "D"])
    fits: list[int] = []
    c = init_head_from_logistic(model, as_torch(train_x, train_y), as_torch(eval_x, eval_y), on_fit=fits.append)
    scored = {k: LogisticRegression(C=k, max_iter=3000).fit(train_x, train_y) for k in (1.0, 10.0, 100.0, 1000.0)}
    loss = {k: log_loss(eval_y, m.predict_proba(eval_x), labels=[0, 1, 3]) for k, m in scored.items()}
    assert fits == [1, 1, 1, 1] and loss[c] == pytest.approx(min(loss.values()))
    assert min(loss.values()) < max(loss.values())  # the grid's Cs differ on eval, so the choice is a real one
    assert model.classifier.weight.abs().max() < 100  # a scaler fitted on train_x would divide by 1e-9 here
    probes = np.concatenate([eval_x, rng.normal(size=(100, 32)) * 0.1 + 3])  # the centre, where class 2 would sit
    logits = model.classifier(torch.tensor(probes, dtype=torch.float32)).detach()
    expected = scored[c].predict_proba(probes)
    np.testing.assert_allclose(torch.softmax(logits.double(), 1)[:, [0, 1, 3]].numpy(), expected, atol=1e-4)
    assert (logits.argmax(1) != 2).all()
    binary = PooledClassifier(AutoModel.from_pretrained(tiny_encoder), ["A", "B"])
    two = as_torch(train_x[train_y < 2], train_y[train_y < 2])
    init_head_from_logistic(binary, two, as_torch(eval_x[:0], eval_y[:0]), grid=(1.0,))
    features = two[0].double().numpy()  # the head's fit sees float64, as here
    want = LogisticRegression(C=1.0, max_iter=3000).fit(features, two[1].numpy()).predict_proba(features)
    got = torch.softmax(binary.classifier(two[0]).detach().double(), 1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    one = as_torch(train_x[train_y == 0], train_y[train_y == 0])  # one class: the class means set the head
    assert init_head_from_logistic(binary, one, as_torch(eval_x[:0], eval_y[:0])) is None
    assert (binary.classifier(one[0]).argmax(1) == 0).all()


def test_padding_does_not_change_a_texts_logits(mean_encoder: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    model = PooledClassifier(AutoModel.from_pretrained(mean_encoder), ["A", "B"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(mean_encoder)
    short, long = "who calls fn_1", "where is the function that parses the command line arguments defined"
    with torch.no_grad():
        alone = model(**tokenizer([short], return_tensors="pt")).logits
        batch = model(**tokenizer([short, long], padding=True, return_tensors="pt")).logits
    assert torch.allclose(alone[0], batch[0], atol=1e-5)


def test_the_class_means_and_logistic_inits_run_before_training(mean_encoder: Path) -> None:
    from framework.plugins.trainers._encoder_fit import _prepare

    heads = {}
    for init in ("class_means", "logistic", "random"):
        with Progress() as progress:
            context = TrainContext(labels=["A", "B"], work_dir=Path("."), seed=0, task=progress.task)
            params = EncoderParams(model=str(mean_encoder), head_init=init)
            session = _prepare(ROWS, [], params, context, seed=0)
        model = session.model.eval()
        tokens = session.tokenizer([r["text"] for r in ROWS], padding=True, return_tensors="pt")
        with torch.no_grad():
            predicted = model(**tokens).logits.argmax(1)
        truth = torch.tensor([0 if r["intent"] == "A" else 1 for r in ROWS])
        heads[init] = (model.classifier.weight.detach().clone(), float((predicted == truth).float().mean()))
    assert not torch.equal(heads["class_means"][0], heads["random"][0])
    assert heads["class_means"][1] == 1.0  # the two intents' texts differ: their class means route every row
    assert heads["logistic"][1] == 1.0 and not torch.equal(heads["logistic"][0], heads["class_means"][0])
