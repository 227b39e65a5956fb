"""Fixtures: tiny float and INT8 models built once per session, bundles written to ``tmp_path``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.runtime.tiny_bundle import BundleFactory, write_bundle, write_model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model as float and INT8 ONNX files, built once per session."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "float": write_model(root / "float.onnx"),
        "int8": write_model(root / "int8.onnx", int8=True),
        "int8+embedding": write_model(root / "int8_embedding.onnx", int8=True, embedding_output=True),
    }


@pytest.fixture
def make_bundle(tmp_path: Path, tiny_models: dict[str, Path]) -> BundleFactory:
    """``make_bundle(name="bundle", int8=False, calibration=None, labels=None, model=None, ood_arrays=None)`` ->
    bundle dir."""

    def factory(
        name: str = "bundle",
        int8: bool = False,
        calibration: dict[str, Any] | None = None,
        labels: list[str] | None = None,
        model: Path | None = None,
        ood_arrays: Any = None,
    ) -> Path:
        source = model or tiny_models["int8" if int8 else "float"]
        return write_bundle(tmp_path / name, source, calibration, labels, ood_arrays)

    return factory


@pytest.fixture
def bundle(make_bundle: BundleFactory) -> Path:
    """A tiny INT8 bundle (what the bundle stage ships) with a fallback intent."""
    return make_bundle(int8=True)
