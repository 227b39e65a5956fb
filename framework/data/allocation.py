"""Splitting a number of rows between weighted parts, deterministically."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

Part = TypeVar("Part", bound=str)


def allocate(total: int, shares: Mapping[Part, float]) -> dict[Part, int]:
    """Split ``total`` rows between parts by share (largest remainder; ties by name)."""
    weight = sum(shares.values())
    exact = {name: total * share / weight for name, share in shares.items()}
    counts = {name: int(value) for name, value in exact.items()}
    leftovers = sorted(exact, key=lambda name: (counts[name] - exact[name], name))
    for name in leftovers[: total - sum(counts.values())]:
        counts[name] += 1
    return counts
