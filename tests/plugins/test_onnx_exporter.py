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

from framework.plugins.exporters._onnx_export import _quantize, graph_inputs
from framework.plugins.exporters.onnx import OnnxParams


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


def quantized_weights(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(int8 weight, scale)`` of every MatMulInteger / DynamicQuantizeMatMul node in the ONNX file."""
    graph = onnx.load(path).graph
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    found = []
    for node in graph.node:
        if node.op_type == "DynamicQuantizeMatMul":  # inputs: A, B, b_scale, b_zero_point, bias
            found.append((initializers[node.input[1]], initializers[node.input[2]]))
        elif node.op_type == "MatMulInteger":  # the weight's scale multiplies the output: <w>_quantized, <w>_scale
            weight = node.input[1]
            found.append((initializers[weight], initializers[weight.removesuffix("_quantized") + "_scale"]))
    return found


def test_default_quantization_is_per_channel_with_7_bit_weights(tmp_path: Path) -> None:
    weight = _matmul_model(tmp_path / "fp32.onnx")
    params = OnnxParams()
    assert params.per_channel and params.reduce_range
    _quantize(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", params)
    [(quantized, scale)] = quantized_weights(tmp_path / "int8.onnx")
    assert quantized.dtype == np.int8 and quantized.shape == weight.shape
    # per channel: one scale per output column, each mapping that column's largest |w| to the 7-bit limit
    assert scale.shape == (weight.shape[1],)
    np.testing.assert_allclose(scale, np.abs(weight).max(axis=0) / 64, rtol=1e-6)
    # onnxruntime's reduced INT8 range is [-64, 64]: u8 x s8 pairs summed in 16 bits stay below 2**15 (255*64*2)
    assert quantized.min() >= -64 and quantized.max() <= 64
    assert (np.abs(quantized).max(axis=0) == 64).all(), "every column uses its own full 7-bit range"
    np.testing.assert_allclose(quantized * scale, weight, atol=float(scale.max()) / 2 + 1e-7)
