"""Text in, logits out: a Hugging Face ``tokenizers`` tokenizer in front of an onnxruntime session.

A graph exported by intentcraft since bundle format 2 has a second output, ``embedding``: the pooled sentence
embedding its linear head reads, which the out-of-distribution score needs. :meth:`OnnxTextClassifier.outputs`
returns both; graphs without it (older bundles, other exporters) give logits only.

Exact versus batched inference. A model quantized with onnxruntime's *dynamic* INT8 quantization
computes the scale of each activation tensor at run time from that tensor's range, per tensor, over the
whole batch. Texts run together in one padded batch therefore change each other's results slightly (and
padding positions take part in the range as well). ``exact=True`` (the default) runs every text as its own
batch of one, unpadded, so a text's logits never depend on its neighbours or on the batch size: the
property a router and an evaluation need. ``exact=False`` pads batches of texts sorted by length (to keep
padding small) for throughput, at the cost of that independence; for a float model the two modes agree
to rounding.

Only onnxruntime, tokenizers and numpy are imported: never torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from framework.runtime.limits import check_threads

EMBEDDING_OUTPUT = "embedding"
"""The graph output holding the pooled sentence embedding, ``[batch, width]``."""
CHARS_PER_TOKEN = 50
"""Texts are cut to ``max_length * CHARS_PER_TOKEN`` characters before tokenizing, so a huge input stays fast."""
MAX_DEFAULT_THREADS = 8


class ModelLoadError(ValueError):
    """The tokenizer or the model could not be loaded; ``part`` is ``"tokenizer"`` or ``"model"``."""

    def __init__(self, part: str, message: str) -> None:
        self.part = part
        super().__init__(message)


def default_threads() -> int:
    """The CPUs this process may use, capped at :data:`MAX_DEFAULT_THREADS`."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(available, MAX_DEFAULT_THREADS))


def load_tokenizer(path: Path | str, max_length: int) -> tuple[Tokenizer, int]:
    """The tokenizer with truncation to ``max_length`` and padding off, and its pad token id."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        raise ModelLoadError("tokenizer", f"cannot read the tokenizer: {_first_line(exc)}") from None
    padding = tokenizer.padding or {}
    pad_id = padding.get("pad_id")
    if pad_id is None:
        ids = (tokenizer.token_to_id(t) for t in ("[PAD]", "<pad>"))
        pad_id = next((i for i in ids if i is not None), 0)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer, int(pad_id)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """The runtime's session options: ``threads`` intra-op threads (default: :func:`default_threads`), all
    graph optimisations, sequential execution."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = check_threads(threads) or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def load_session(model: Path | str | bytes, threads: int | None = None, use_cuda: bool = False) -> ort.InferenceSession:
    """An onnxruntime session: CPU, or CUDA first when asked for and available."""
    options = session_options(threads)
    providers = ["CPUExecutionProvider"]
    if use_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises several pybind exception types
        raise ModelLoadError("model", f"onnxruntime cannot load the model: {_first_line(exc)}") from None


class OnnxTextClassifier:
    """Tokenize texts and run a sequence-classification ONNX model to get logits.

    Args:
        model_path: ``model.onnx`` (a path, or the model's bytes).
        tokenizer_path: a Hugging Face ``tokenizer.json``.
        max_length: tokens per text, special tokens included; longer texts are truncated.
        threads: intra-op threads; default: the CPUs available, at most 8.
        exact: default mode of :meth:`logits` (see the module docstring).
        use_cuda: use onnxruntime's CUDA provider when it is installed.
    """

    def __init__(
        self,
        model_path: Path | str | bytes,
        tokenizer_path: Path | str,
        max_length: int,
        threads: int | None = None,
        *,
        exact: bool = True,
        use_cuda: bool = False,
    ) -> None:
        self.max_length = max_length
        self.max_chars = max_length * CHARS_PER_TOKEN
        self.exact = exact
        self.tokenizer, self.pad_id = load_tokenizer(tokenizer_path, max_length)
        self.session = load_session(model_path, threads, use_cuda)
        names = [node.name for node in self.session.get_inputs()]
        missing = [name for name in ("input_ids", "attention_mask") if name not in names]
        if missing:
            raise ModelLoadError("model", f"the model lacks the input(s) {', '.join(missing)} (it has {names})")
        self._with_token_types = "token_type_ids" in names
        outputs = [node.name for node in self.session.get_outputs()]
        self.output_name = "logits" if "logits" in outputs else outputs[0]
        self.embedding_name = EMBEDDING_OUTPUT if EMBEDDING_OUTPUT in outputs[1:] else None
        self.num_labels, self.embedding_dim = self._probe()

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        """Tokenize (in parallel, in Rust), after cutting each text to ``max_chars`` characters."""
        return self.tokenizer.encode_batch([text[: self.max_chars] for text in texts])

    def logits(self, texts: Sequence[str], batch_size: int = 64, exact: bool | None = None) -> np.ndarray:
        """Logits of every text, float32 of shape ``[len(texts), num_labels]``, in input order.

        Args:
            texts: the texts (str) to classify.
            batch_size: texts per padded batch when not exact.
            exact: run each text alone (``True``) or in padded batches (``False``); default: ``self.exact``.
        """
        return self.outputs(texts, batch_size, exact, embeddings=False)[0]

    def outputs(
        self, texts: Sequence[str], batch_size: int = 64, exact: bool | None = None, *, embeddings: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and, when the graph has the ``embedding`` output and ``embeddings`` is true, the pooled
        embeddings (float32 ``[len(texts), embedding_dim]``), in input order; else ``(logits, None)``."""
        wanted = embeddings and self.embedding_name is not None
        logits = np.empty((len(texts), self.num_labels), dtype=np.float32)
        pooled = np.empty((len(texts), self.embedding_dim), dtype=np.float32) if wanted else None
        if not len(texts):
            return logits, pooled
        encodings = self.encode(texts)
        if self.exact if exact is None else exact:
            batches = [np.array([index]) for index in range(len(encodings))]
        else:
            order = np.argsort([len(encoding.ids) for encoding in encodings], kind="stable")
            batches = [order[start : start + batch_size] for start in range(0, len(order), max(1, batch_size))]
        for chosen in batches:
            results = self._run(self._pack([encodings[i] for i in chosen]), wanted)
            logits[chosen] = results[0]
            if pooled is not None:
                pooled[chosen] = results[1]
        return logits, pooled

    def _pack(self, encodings: list[Encoding]) -> dict[str, np.ndarray]:
        """Model inputs for these encodings, right-padded to the longest."""
        if len(encodings) == 1 and encodings[0].ids:  # the exact-mode hot path: nothing to pad
            ids = np.array([encodings[0].ids], dtype=np.int64)
            mask = np.ones_like(ids)
        else:
            width = max(1, *(len(encoding.ids) for encoding in encodings))
            ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(encodings), width), dtype=np.int64)
            for row, encoding in enumerate(encodings):
                ids[row, : len(encoding.ids)] = encoding.ids
                mask[row, : len(encoding.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._with_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return feeds

    def _probe(self) -> tuple[int, int]:
        """Run one tiny text through tokenizer and model: the number of labels and the embedding width (0 without
        the embedding output), or a ``ModelLoadError``."""
        try:
            results = self._run(self._pack([self.encode(["a"])[0]]), self.embedding_name is not None)
        except Exception as exc:  # onnxruntime raises several pybind exception types
            raise ModelLoadError("model", f"the model fails on a one-word text: {_first_line(exc)}") from None
        if len(results) > 1 and (results[1].ndim != 2 or results[1].shape[0] != 1):
            raise ModelLoadError("model", f"the embedding output has shape {results[1].shape}, not [batch, width]")
        return int(results[0].shape[-1]), int(results[1].shape[-1]) if len(results) > 1 else 0

    def _run(self, feeds: dict[str, np.ndarray], embeddings: bool = False) -> list[np.ndarray]:
        names = [self.output_name, *([self.embedding_name] if embeddings and self.embedding_name else [])]
        return [np.asarray(out, dtype=np.float32) for out in self.session.run(names, feeds)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
