"""Bounds on what a caller may ask of the runtime; importing this module is cheap (no onnxruntime)."""

from __future__ import annotations

MAX_THREADS = 64
"""The most onnxruntime intra-op threads a caller may ask for: more only costs memory and contention."""


def check_threads(threads: object) -> int | None:
    """``threads`` when it is None or a whole number from 1 to :data:`MAX_THREADS`; a ``ValueError`` otherwise."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be a whole number from 1 to {MAX_THREADS} (or None), got {threads!r}")
    return threads
