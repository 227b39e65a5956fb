"""Built-in ``onnx`` exporter: ONNX graph, onnxruntime fusions, INT8 dynamic quantization, parity and accuracy.

The graph has two outputs: ``logits`` and ``embedding``, the pooled sentence embedding the linear head reads
(the mean-pooled encoder state of a pooled classifier, the ``[CLS]`` pooler output of a Hugging Face one), which
the calibrate stage fits its out-of-distribution score on. A model whose head is not one linear layer on a
``[batch, width]`` embedding exports logits only, with a warning.

optimum's ONNX exporter (optimum-onnx) pins transformers < 4.58 while intentcraft needs transformers >= 5, so
this uses ``torch.onnx`` and onnxruntime's own transformer optimizer and quantization tools.
"""

from __future__ import annotations

from pydantic import Field

from framework.plugin_api import ExportContext, ExportResult
from framework.registry import PluginParams, exporters


class OnnxParams(PluginParams):
    """ONNX export settings.

    Attributes:
        opset: ONNX opset of the exported graph.
        optimize: Apply onnxruntime's transformer fusions (attention, layer norm, GELU) before quantizing.
        quantize: Quantize weights to INT8 (dynamic quantization); off ships the fp32 graph.
        op_types: Operator types to quantize.
        per_channel: A weight scale per output channel rather than per tensor (more accurate, 0.5% larger).
        reduce_range: 7-bit weights. x86 CPUs without VNNI (AVX2 only) multiply INT8 in pairs summed into
            16 bits, which 8-bit weights can overflow (worst with per-channel scales, which use each channel's
            full range); 7-bit weights never overflow, so the bundle is accurate on any CPU.
        parity_rows: Eval texts on which the fp32 graph must match PyTorch.
        parity_tolerance: Largest allowed absolute logit difference between the fp32 graph and PyTorch.
    """

    opset: int = Field(default=17, ge=14, le=21)
    optimize: bool = True
    quantize: bool = True
    op_types: list[str] = Field(default_factory=lambda: ["MatMul", "Attention", "EmbedLayerNormalization", "Gather"])
    per_channel: bool = True
    reduce_range: bool = True
    parity_rows: int = Field(default=32, ge=1, le=10_000)
    parity_tolerance: float = Field(default=1e-3, gt=0)


@exporters.register("onnx", params=OnnxParams)
def onnx_exporter(params: OnnxParams, ctx: ExportContext) -> ExportResult:
    """Export to ONNX, fuse, quantize to INT8, and check parity and accuracy against PyTorch (the work is in
    :mod:`._onnx_export`, imported here so that registering the plugin needs no torch)."""
    from framework.plugins.exporters._onnx_export import export_onnx

    return export_onnx(params, ctx)
