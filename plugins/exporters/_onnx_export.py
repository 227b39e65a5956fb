"""The ``onnx`` exporter's work (torch, onnxruntime): ONNX graph, fusions, INT8 quantization, parity and accuracy.
Imported when the exporter runs, not when the plugin registers (:mod:`.onnx`)."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from framework.errors import StageError
from framework.models import quiet_transformers
from framework.plugin_api import ExportContext, ExportResult
from framework.plugins.trainers._pooled import load_classifier
from framework.runtime.bundle import MODEL_INPUTS, OPTIONAL_INPUTS
from framework.runtime.onnx_classifier import EMBEDDING_OUTPUT, OnnxTextClassifier

if TYPE_CHECKING:  # the plugin module imports this one when the plugin runs
    from framework.plugins.exporters.onnx import OnnxParams


def _load_reference(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # Eager attention exports the pattern onnxruntime fuses into its Attention kernel.
    model = load_classifier(model_dir, attn_implementation="eager").eval()
    return tokenizer, model


def graph_inputs(tokenizer: Any) -> list[str]:
    """The graph's inputs: ids and mask, plus ``token_type_ids`` where the tokenizer makes them (BERT family).

    As an input (the runtime feeds zeros), the segment ids reach onnxruntime's embedding fusion directly;
    left out, the graph rebuilds them from a buffer with a dozen shape ops on every run.
    """
    return [*MODEL_INPUTS, *(name for name in OPTIONAL_INPUTS if name in tokenizer.model_input_names)]


class WithEmbedding(torch.nn.Module):
    """The classifier answering ``(logits, embedding)``: the embedding is what its linear ``classifier`` head
    reads, captured by a forward pre-hook for the length of each call, so any model with such a head exports it
    without knowing its pooling."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)  # a new module trains; restoring its mode after export must not wake dropout

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        seen: list[torch.Tensor] = []
        handle = self.model.classifier.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
        try:
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits
        finally:
            handle.remove()
        return logits, seen[-1]


def embedding_head(model: Any) -> str | None:
    """None when the model's head is one linear layer on a pooled ``[batch, width]`` embedding (so the graph can
    output it), else why not."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        return f"its head ({type(head).__name__}) is not one linear layer named `classifier`"
    ones = torch.ones((2, 3), dtype=torch.long)
    with torch.no_grad():
        _, embedding = WithEmbedding(model)(ones, ones)
    if tuple(embedding.shape) != (2, head.in_features):
        return "its head reads token states, not one pooled embedding per text"
    return None


def _export_graph(model: Any, tokenizer: Any, path: Path, opset: int, with_embedding: bool) -> None:
    sample = tokenizer(["an example query", "a second, longer example query"], padding=True, return_tensors="pt")
    names = graph_inputs(tokenizer)
    outputs = ["logits", EMBEDDING_OUTPUT] if with_embedding else ["logits"]
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in names}
    axes.update({name: {0: "batch"} for name in outputs})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            WithEmbedding(model) if with_embedding else model,
            (),
            str(path),
            kwargs={name: sample[name] for name in names},
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )


def _optimize(source: Path, target: Path, config: Any, warn: Any) -> Path:
    from onnxruntime.transformers import optimizer

    model_type = getattr(config, "model_type", "bert")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            optimized = optimizer.optimize_model(
                str(source),
                model_type=model_type if model_type in optimizer.MODEL_TYPES else "bert",
                num_heads=getattr(config, "num_attention_heads", 0),
                hidden_size=getattr(config, "hidden_size", 0),
            )
        optimized.save_model_to_file(str(target))
    except Exception as exc:  # unknown architectures: ship the unfused graph rather than fail
        warn(f"onnxruntime fusions failed for model_type={model_type} ({exc}); exporting the unfused graph")
        return source
    return target


class _DropPreprocessAdvice(logging.Filter):
    """Drops onnxruntime's advice to run its quantization pre-processing, whose shape inference and graph
    optimisation the transformer optimizer has already done to the graph it quantizes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing before quantization")


def _quantize(source: Path, target: Path, params: OnnxParams) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    advice = _DropPreprocessAdvice()
    logging.getLogger().addFilter(advice)  # quantize_dynamic logs it on the root logger
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=params.per_channel,
            reduce_range=params.reduce_range,
            op_types_to_quantize=params.op_types,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().removeFilter(advice)


@torch.no_grad()
def torch_logits(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Logits of the PyTorch model (fp32, eager), in input order."""
    return torch_outputs(model, tokenizer, texts, max_length, batch_size)[0]


@torch.no_grad()
def torch_outputs(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and the embeddings the head reads (None when the head does not read one per text), fp32 eager."""
    wrapped = WithEmbedding(model) if embedding_head(model) is None else None
    logits, pooled = [], []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        )
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if wrapped is None:
            logits.append(model(**inputs).logits.numpy())
            continue
        out, embedding = wrapped(**inputs)
        logits.append(out.numpy())
        pooled.append(embedding.numpy())
    if not logits:
        return np.zeros((0, num_labels(model)), dtype=np.float32), None
    return np.concatenate(logits), np.concatenate(pooled) if pooled else None


def num_labels(model: Any) -> int:
    """Classes of a trained classifier: its head's outputs (a pooled classifier's config is its encoder's)."""
    head = getattr(model, "classifier", None)
    if isinstance(head, torch.nn.Linear):
        return head.out_features
    return int(model.config.num_labels)


PHASES = 6  # steps of the export's progress bar: load, graph, fusions, parity, quantization, accuracy


@contextlib.contextmanager
def _phase(bar: Any, name: str) -> Iterator[None]:
    """One step of the export's progress bar, named in its note while it runs and as done when it advances."""
    bar.note(name)
    yield
    bar.note(f"{name} done")
    bar(1)


def _embedding_parity(reference: np.ndarray | None, exported: np.ndarray | None) -> float | None:
    """Largest absolute difference of the two embeddings; None when either side has none."""
    if reference is None or exported is None:
        return None
    return float(np.abs(reference - exported).max())


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean()) if len(labels) else float("nan")


def export_onnx(params: OnnxParams, ctx: ExportContext) -> ExportResult:
    """Export to ONNX, fuse, quantize to INT8, and check parity and accuracy against PyTorch."""
    started = time.perf_counter()
    bar = ctx.task("export", PHASES, unit="steps")
    with _phase(bar, "loading the model"):
        tokenizer, model = _load_reference(ctx.model_dir)
    raw, fused, int8 = (ctx.work_dir / name for name in ("model.raw.onnx", "model.fp32.onnx", "model.int8.onnx"))
    unpooled = embedding_head(model)
    if unpooled:
        ctx.warn(
            f"export: the graph has no {EMBEDDING_OUTPUT!r} output because {unpooled}, so the Mahalanobis "
            "out-of-distribution score cannot be fitted (set calibrate.ood.method to energy or max_softmax)"
        )
    with _phase(bar, "ONNX graph"):
        _export_graph(model, tokenizer, raw, params.opset, with_embedding=unpooled is None)
    with _phase(bar, "onnxruntime fusions"):
        fp32 = _optimize(raw, fused, model.config, ctx.warn) if params.optimize else raw
    tokenizer_json = ctx.model_dir / "tokenizer.json"
    texts = [row["text"] for row in ctx.eval_rows]
    labels = np.array([ctx.labels.index(row["intent"]) for row in ctx.eval_rows], dtype=np.int64)
    parity_texts = texts[: params.parity_rows] or ["an example query"]
    with _phase(bar, "parity with PyTorch"):
        reference = torch_outputs(model, tokenizer, parity_texts, ctx.max_length)
        exported = OnnxTextClassifier(fp32, tokenizer_json, ctx.max_length).outputs(parity_texts)
    parity = float(np.abs(reference[0] - exported[0]).max())
    embedding_parity = _embedding_parity(reference[1], exported[1])
    for what, gap in (("logits", parity), ("embeddings", embedding_parity)):
        if gap is not None and gap > params.parity_tolerance:
            raise StageError(
                f"export: the fp32 ONNX graph disagrees with PyTorch by {gap:.2e} on the {what} (tolerance "
                f"export.parity_tolerance={params.parity_tolerance}); the export is wrong, not the model. Try "
                "export.optimize=false, and report the model architecture if that does not fix it."
            )
    with _phase(bar, "INT8 quantization" if params.quantize else "no quantization (export.quantize=false)"):
        if params.quantize:
            _quantize(fp32, int8, params)
    shipped = int8 if params.quantize else fp32
    with _phase(bar, f"accuracy on {len(texts)} eval rows"):
        reference_accuracy = _accuracy(torch_logits(model, tokenizer, texts, ctx.max_length), labels)
        exported = OnnxTextClassifier(shipped, tokenizer_json, ctx.max_length).logits(texts)
        exported_accuracy = _accuracy(exported, labels)
    if fp32 != raw:
        raw.unlink(missing_ok=True)
    sizes = {p.name: p.stat().st_size for p in (fp32, shipped) if p.exists()}
    return ExportResult(
        model_path=shipped,
        reference_accuracy=reference_accuracy,
        exported_accuracy=exported_accuracy,
        metrics={
            "parity_max_abs_diff": parity,
            "embedding_output": unpooled is None,
            **({"embedding_parity_max_abs_diff": embedding_parity} if embedding_parity is not None else {}),
            "parity_rows": len(parity_texts),
            "quantized": params.quantize,
            "op_types": params.op_types,
            "per_channel": params.per_channel,
            "sizes_bytes": sizes,
            "eval_rows": len(texts),
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
