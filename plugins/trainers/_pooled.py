"""A sentence-transformers checkpoint as a classifier: the checkpoint's own pooling (the mean of the token states
under the attention mask, as all-MiniLM-L6-v2 was trained), then a linear head.

Hugging Face's ``AutoModelForSequenceClassification`` puts its head on the ``[CLS]`` pooler instead, a layer left
over from the base model's pre-training that sentence-embedding training never used. A trained model is saved as
the encoder in Hugging Face layout plus ``head.json`` and ``head.safetensors``; :func:`load_classifier` reads
either layout, so the exporter and the benchmarks load what the trainer saved.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from framework.io import atomic_write_json

HEAD_CONFIG = "head.json"
HEAD_WEIGHTS = "head.safetensors"


def checkpoint_pooling(directory: Path) -> str | None:
    """``"mean"`` or ``"cls"`` as a sentence-transformers checkpoint declares its pooling (``modules.json`` and the
    Pooling module's ``config.json``); None for a plain Hugging Face checkpoint or another pooling mode."""
    modules = directory / "modules.json"
    if not modules.is_file():
        return None
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
        pooling = next(e for e in entries if str(e.get("type", "")).endswith(".Pooling"))
        config = json.loads((directory / str(pooling.get("path", "")) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, StopIteration, AttributeError, TypeError):
        return None
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    return None


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token states under the attention mask, one row per text."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class PooledClassifier(torch.nn.Module):
    """Encoder -> mean pooling -> dropout -> linear head; ``forward`` answers like a Hugging Face classifier."""

    def __init__(self, encoder: Any, labels: list[str], dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config  # the exporter's graph fusions read the encoder's heads and hidden size
        self.labels = list(labels)
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, len(labels))

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: Any = None) -> torch.Tensor:
        """The sentence embeddings the head reads."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: Any = None, labels: Any = None
    ) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        logits = self.classifier(self.dropout(self.pooled(input_ids, attention_mask, token_type_ids)))
        loss = torch.nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, directory: Path, safe_serialization: bool = True) -> None:
        """The encoder in Hugging Face layout, then the head's weights and config beside it."""
        from safetensors.torch import save_file

        directory = Path(directory)
        self.encoder.save_pretrained(directory, safe_serialization=safe_serialization)
        weights = {"weight": self.classifier.weight.detach().contiguous(), "bias": self.classifier.bias.detach()}
        save_file(weights, str(directory / HEAD_WEIGHTS))
        atomic_write_json(directory / HEAD_CONFIG, {"pooling": "mean", "labels": self.labels})

    @classmethod
    def load(cls, directory: Path, **kwargs: Any) -> PooledClassifier:
        """A classifier saved by :meth:`save_pretrained` (``kwargs`` go to ``AutoModel.from_pretrained``)."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        config = json.loads((Path(directory) / HEAD_CONFIG).read_text(encoding="utf-8"))
        model = cls(AutoModel.from_pretrained(directory, **kwargs), config["labels"])
        weights = load_file(str(Path(directory) / HEAD_WEIGHTS))
        model.classifier.load_state_dict({"weight": weights["weight"], "bias": weights["bias"]})
        return model


def load_classifier(directory: Path, **kwargs: Any) -> Any:
    """A trained classifier from its directory: a :class:`PooledClassifier` where ``head.json`` is, else the
    Hugging Face sequence classifier (``kwargs`` go to ``from_pretrained``)."""
    if (Path(directory) / HEAD_CONFIG).is_file():
        return PooledClassifier.load(directory, **kwargs)
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(directory, **kwargs)


@torch.no_grad()
def init_head_from_class_means(model: PooledClassifier, embeddings: torch.Tensor, label_ids: torch.Tensor) -> None:
    """Set the head to the Gaussian classifier of the frozen embeddings with one shared, isotropic covariance:
    ``logit_c = t (mu_c . x - |mu_c|^2 / 2) / s2``, ``mu_c`` the class means (centred on the mean of the class
    means), ``s2`` the within-class variance per dimension and ``t`` the scale with the lowest cross-entropy on
    these rows. Fine-tuning starts from a head that already routes about as well as the nearest class mean,
    rather than from noise whose gradients first drag the encoder off."""
    classes = model.classifier.out_features
    present = [bool((label_ids == c).any()) for c in range(classes)]
    centre = torch.stack([embeddings[label_ids == c].mean(0) for c in range(classes) if present[c]]).mean(0)
    means = torch.stack(
        [
            embeddings[label_ids == c].mean(0) - centre if present[c] else torch.zeros_like(centre)
            for c in range(classes)
        ]
    )
    s2 = float(((embeddings - centre - means[label_ids]) ** 2).mean().clamp(min=1e-6))
    weight, bias = means / s2, -(means**2).sum(1) / (2 * s2)
    # dimensions are correlated, so the isotropic model is overconfident: scale the logits to the train rows' best
    # cross-entropy (a temperature, from a log grid), so that fine-tuning starts from calibrated confidences
    logits = (embeddings - centre) @ weight.T + bias
    scales = torch.logspace(-3, 1, 41)
    losses = [float(torch.nn.functional.cross_entropy(logits * scale, label_ids)) for scale in scales]
    scale = float(scales[losses.index(min(losses))])
    model.classifier.weight.copy_(weight * scale)
    # on the raw embedding x: w . (x - centre) + b = w . x + (b - w . centre)
    model.classifier.bias.copy_(bias * scale - model.classifier.weight @ centre)
    _sink_absent_classes(model, present)


def _sink_absent_classes(model: PooledClassifier, present: list[bool]) -> None:
    """Give each class without train rows a zero weight and a bias 10 below the lowest of the rest: at the centre
    it would otherwise win, and with no rows nothing in training would ever push it down."""
    if all(present):
        return
    absent = torch.tensor([not p for p in present], device=model.classifier.bias.device)
    model.classifier.weight[absent] = 0.0
    model.classifier.bias[absent] = model.classifier.bias[~absent].min() - 10.0


LOGISTIC_C_GRID = (1.0, 10.0, 100.0, 1000.0)
"""Inverse L2 strengths tried by :func:`init_head_from_logistic` (picked on eval)."""


@torch.no_grad()
def init_head_from_logistic(
    model: PooledClassifier,
    train: tuple[torch.Tensor, torch.Tensor],
    evals: tuple[torch.Tensor, torch.Tensor],
    grid: tuple[float, ...] = LOGISTIC_C_GRID,
    on_fit: Callable[[int], Any] | None = None,
) -> float | None:
    """Set the head to a multinomial logistic regression on the frozen embeddings (a linear probe; fine-tuning
    from it is LP-FT, Kumar et al., ICLR 2022): fitted on the train rows for each C of ``grid``, keeping the one
    with the lowest cross-entropy on the eval rows, so that fine-tuning starts from calibrated logits rather
    than saturated ones (ties and an empty eval split keep the smaller C). Returns that C (None: the train rows
    hold one class, and the class means set the head).

    The regression sees the embeddings as the head does, unscaled: standardising them first would divide by
    the spread of near-constant dimensions (mean-pooled MiniLM has some) and fold weights of 1e31 into the head.

    Args:
        model: The classifier whose ``classifier`` layer is set.
        train: (embeddings, label ids) of the train split.
        evals: (embeddings, label ids) of the eval split; may be empty.
        grid: The C values tried.
        on_fit: Called with 1 after each fit (progress).
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x, y = train[0].double().cpu().numpy(), train[1].cpu().numpy()
    if len(np.unique(y)) < 2:  # nothing for a regression to separate
        init_head_from_class_means(model, *train)
        return None
    eval_x, eval_y = evals[0].double().cpu().numpy(), evals[1].cpu().numpy()
    best: tuple[float, float, Any] | None = None
    for c in sorted(grid):
        fitted = LogisticRegression(C=c, max_iter=3000).fit(x, y)
        loss = _eval_cross_entropy(fitted, eval_x, eval_y)
        if best is None or loss < best[0]:
            best = (loss, c, fitted)
        if on_fit is not None:
            on_fit(1)
    assert best is not None
    _, c, fitted = best
    coef, intercept = fitted.coef_, fitted.intercept_
    if len(fitted.classes_) == 2:  # scikit-learn keeps one row (class 1 against class 0): the softmax form halves it
        coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    weight, bias = model.classifier.weight, model.classifier.bias
    rows = torch.as_tensor(fitted.classes_, dtype=torch.long, device=weight.device)
    weight[rows] = torch.as_tensor(coef, dtype=weight.dtype, device=weight.device)
    bias[rows] = torch.as_tensor(intercept, dtype=bias.dtype, device=bias.device)
    present = set(fitted.classes_.tolist())
    _sink_absent_classes(model, [c in present for c in range(model.classifier.out_features)])
    return c


def _eval_cross_entropy(fitted: Any, x: Any, y: Any) -> float:
    """Mean cross-entropy of a fitted scikit-learn classifier on the eval rows of classes it was fitted on; 0
    when there are none."""
    import numpy as np
    from sklearn.metrics import log_loss

    known = np.isin(y, fitted.classes_)
    if not known.any():
        return 0.0
    return float(log_loss(y[known], fitted.predict_proba(x[known]), labels=fitted.classes_))
