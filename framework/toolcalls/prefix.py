"""The tokens every conversation of a recipe starts with (its system prompt), run once and reused."""

from __future__ import annotations

from collections.abc import Sequence


def shared_prefix_length(ids: Sequence[Sequence[int]], prompt_lengths: Sequence[int]) -> int:
    """Tokens that every example starts with, cut to end before each example's last prompt token (so each
    example keeps at least one token of its own, the one whose logits predict its first completion token)."""
    if not ids:
        return 0
    first = ids[0]
    limit = min(min(prompt_lengths) - 1, *(len(row) for row in ids))
    length = 0
    while length < limit and all(row[length] == first[length] for row in ids):
        length += 1
    return length
