"""Helpers shared by the model stages: reading splits, the label order and the runtime facts of a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.io import read_json, read_jsonl
from framework.pipeline import StageRun
from framework.progress import say as say  # re-exported: a line for the user and the run log

RUNTIME_FILE = "runtime.json"  # written by the train stage: {"labels": [...], "max_length": int}


def split_rows(run: StageRun, split: str) -> list[dict[str, Any]]:
    """Rows of one split from the split stage's output."""
    return read_jsonl(run.inputs["split"] / f"{split}.jsonl")


def runtime_facts(train_dir: Path) -> dict[str, Any]:
    """Labels (logit order) and max_length of the trained model."""
    return read_json(train_dir / RUNTIME_FILE)


def exported_model_path(export_dir: Path) -> Path:
    """The model file the export stage ships (named in its manifest)."""
    return export_dir / read_json(export_dir / "manifest.json")["model_file"]


def model_input_names(model_path: Path) -> list[str]:
    """Names of an ONNX model's graph inputs, in graph order (initializers are not inputs)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    return [node.name for node in graph.input if node.name not in weights]
