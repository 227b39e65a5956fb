"""Helpers shared by the model stages: the split rows, the trained model's facts and the exported model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from framework.errors import StageError
from framework.io import read_json, read_jsonl
from framework.models import model_files
from framework.pipeline.facts import ExportFacts, SplitFacts, TrainFacts
from framework.pipeline.progress import say as say  # re-exported: a line for the user and the run log
from framework.pipeline.runner import MANIFEST, StageRun, facts_from_manifest, labelled_files

if TYPE_CHECKING:  # framework.config.check imports the targets, which import the stages
    from framework.config.check import BoundPlugin, ValidatedRecipe
    from framework.runtime.onnx_classifier import OnnxTextClassifier

R = TypeVar("R")
OUTPUT_CHUNK = 256
"""Texts per progress step when a stage runs the exported model over a split."""
LEGACY_RUNTIME_FILE = "runtime.json"
"""Where train stages before the labels were published kept them; read only for such cached outputs."""


def split_rows(run: StageRun, split: str) -> list[dict[str, Any]]:
    """Rows of one split, from the file the split stage names for it."""
    return read_jsonl(run.path("split", run.facts("split", SplitFacts).files[split]))


def trained(run: StageRun) -> TrainFacts:
    """The train stage's facts, with its labels (logit order) even when its cached output predates them."""
    return _with_labels(run.facts("train", TrainFacts), run.inputs["train"])


def read_train_facts(train_dir: Path) -> TrainFacts:
    """A train stage output's facts, from its manifest (for tools that read a finished run, e.g. ``bench/``)."""
    return _with_labels(facts_from_manifest(read_json(train_dir / MANIFEST), TrainFacts), train_dir)


def _with_labels(facts: TrainFacts, train_dir: Path) -> TrainFacts:
    if facts.labels is not None:
        return facts
    legacy = read_json(train_dir / LEGACY_RUNTIME_FILE)
    return facts.model_copy(update={"labels": list(legacy["labels"])})


def trained_labels(run: StageRun) -> list[str]:
    """The trained model's labels, in logit order."""
    labels = trained(run).labels
    assert labels is not None  # trained() fills them in
    return labels


def exported_model_path(run: StageRun) -> Path:
    """The model file the export stage ships."""
    return run.path("export", run.facts("export", ExportFacts).model_file)


def tokenizer_path(run: StageRun) -> Path:
    """The trained model's tokenizer."""
    return run.path("train", trained(run).tokenizer_path())


def model_input_names(model_path: Path) -> list[str]:
    """Names of an ONNX model's graph inputs, in graph order (initializers are not inputs)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return [node.name for node in graph.input if node.name not in weights]


def plugin_result(bound: BoundPlugin, result: object, kind: type[R]) -> R:
    """What a plugin returned, checked to be what its kind returns (anything else is a bug in the plugin)."""
    if not isinstance(result, kind):
        raise StageError(
            f"plugin {bound.spec.id} returned a {type(result).__name__}, not a {kind.__name__} (plugin bug)"
        )
    return result


M = TypeVar("M", bound=BaseModel)


def plugin_metrics(bound: BoundPlugin, model: type[M], data: dict[str, Any]) -> M:
    """A plugin's metrics as the stage publishes them (``model``), or a ``StageError`` naming the plugin and the
    first bad figure (a figure of the wrong type is a bug in the plugin)."""
    return _validated(
        model, data, f"plugin {bound.spec.id} reported metrics that are not {model.__name__}", " (plugin bug)"
    )


def bundle_file(model: type[M], data: dict[str, Any], source: str) -> M:
    """``data`` as one of the bundle's file models, or a ``StageError`` naming ``source`` and the bad field."""
    problem = f"{source} gave a {model.__name__} the bundle cannot ship"
    return _validated(model, data, problem, "; the bundle would not load, so the run stops here")


def _validated(model: type[M], data: dict[str, Any], problem: str, consequence: str) -> M:
    """``data`` as ``model``, or a ``StageError``: the problem, the first bad field and its value, then
    ``consequence`` (with its own leading separator)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<document>"
        got = str(first.get("input"))[:80]
        raise StageError(f"{problem}: {where}: {first['msg']} (got {got!r}){consequence}") from None


def model_outputs(
    run: StageRun, model: OnnxTextClassifier, rows: list[dict[str, Any]], task: str, embeddings: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The exported model's logits (and pooled embeddings, when asked) of ``rows``, run as the runtime runs
    them, in chunks so that long splits show progress (``task`` names the progress bar, e.g. ``calibrate: eval``)."""
    what = "logits and embeddings" if embeddings else "logits"
    bar = run.progress.task(f"{task} {what}", len(rows))
    logits, pooled = [], []
    for start in range(0, len(rows), OUTPUT_CHUNK):
        out = model.outputs([row["text"] for row in rows[start : start + OUTPUT_CHUNK]], embeddings=embeddings)
        logits.append(out[0])
        if out[1] is not None:
            pooled.append(out[1])
        bar(len(out[0]))
    return np.concatenate(logits), np.concatenate(pooled) if pooled else None


def section_model_files(section: str) -> Callable[[ValidatedRecipe], dict[str, Path]]:
    """A ``StageDef.files`` for a plugin section with a ``model`` key: the files of the model it names (a local
    directory or file, or the offline package a hub id resolves to), labelled ``<section>.model``."""

    def files(recipe: ValidatedRecipe) -> dict[str, Path]:
        bound = recipe.single.get(section)
        model = getattr(bound.params, "model", None) if bound is not None else None
        return labelled_files(f"{section}.model", model_files(model)) if isinstance(model, str) else {}

    return files
