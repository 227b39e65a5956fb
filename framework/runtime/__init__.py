"""The light runtime: load a bundle, verify it, route text. Needs onnxruntime, tokenizers and numpy; never torch.

Names load lazily, so importing this package (e.g. for the CLI's argument parser) costs nothing until a
name is used: ``from framework.runtime import Router`` imports onnxruntime, ``verify_bundle`` does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framework.runtime.bundle import BundleError, BundleInfo, read_bundle, verify_bundle, write_checksums
    from framework.runtime.onnx_classifier import OnnxTextClassifier
    from framework.runtime.router import Router, RouteResult, calibrated_probabilities

_EXPORTS = {
    "BundleError": "bundle",
    "BundleInfo": "bundle",
    "read_bundle": "bundle",
    "verify_bundle": "bundle",
    "write_checksums": "bundle",
    "OnnxTextClassifier": "onnx_classifier",
    "RouteResult": "router",
    "Router": "router",
    "calibrated_probabilities": "router",
}
__all__ = [
    "BundleError",
    "BundleInfo",
    "OnnxTextClassifier",
    "RouteResult",
    "Router",
    "calibrated_probabilities",
    "read_bundle",
    "verify_bundle",
    "write_checksums",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
