"""Pieces of the ``onnx`` exporter: graph inputs per tokenizer, quantization without onnxruntime's advice."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from framework.plugins.exporters.onnx import OnnxParams, _quantize, graph_inputs


def test_graph_inputs_follow_the_tokenizer() -> None:
    bert = SimpleNamespace(model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    roberta = SimpleNamespace(model_input_names=["input_ids", "attention_mask"])
    assert graph_inputs(bert) == ["input_ids", "attention_mask", "token_type_ids"]
    assert graph_inputs(roberta) == ["input_ids", "attention_mask"]


def _matmul_model(path: Path) -> np.ndarray:
    weight = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "one_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, path)
    return weight


def test_quantize_drops_only_the_preprocessing_advice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    weight = _matmul_model(tmp_path / "fp32.onnx")
    with caplog.at_level(logging.WARNING):
        _quantize(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", OnnxParams())
        logging.warning("an unrelated warning still shows")
    assert "pre-processing" not in caplog.text and "an unrelated warning still shows" in caplog.text
    assert not logging.getLogger().filters
    x = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    y = ort.InferenceSession(str(tmp_path / "int8.onnx")).run(None, {"x": x})[0]
    # quantized with the defaults (per-channel 7-bit weights, which no CPU's INT8 kernels overflow): the same product
    assert np.abs(y - x @ weight).max() < 0.05
