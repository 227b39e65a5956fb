"""Deterministic seeds and RNGs that do not depend on PYTHONHASHSEED."""

from __future__ import annotations

import hashlib
import random


def derive_seed(*parts: object) -> int:
    """Mix any printable parts into a 63-bit seed, stable across processes and platforms."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def make_rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from ``derive_seed(*parts)``."""
    return random.Random(derive_seed(*parts))
