"""Timing helper shared by the benchmarks (imported as ``_timing`` when a bench script runs from ``bench/``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def time_each(fn: Callable[[Any], Any], items: list[Any], warmup: int = 20) -> list[float]:
    """Seconds of ``fn(item)`` for every item, after ``warmup`` untimed calls on the first items."""
    for item in items[:warmup]:
        fn(item)
    times = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - started)
    return times
