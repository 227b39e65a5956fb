"""Helpers shared by the built-in validation layers (underscore: not loaded as a plugin)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import Field, model_validator

from framework.plugin_api import Rejection, ValidateContext
from framework.registry import PluginParams


class TextBounds(PluginParams):
    """``min_chars`` / ``max_chars``: the bounds of a row's stripped text (``too_short``, ``too_long``)."""

    min_chars: int = Field(default=2, ge=1)
    max_chars: int = Field(default=512, ge=1)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> TextBounds:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must not exceed max_chars ({self.max_chars})")
        return self


Hit = tuple[str, str]
"""``(rule, reason)`` of the first rule a row breaks."""

PROGRESS_EVERY = 512


def row_text(row: dict) -> str:
    """The row's text, or ``""`` when it is missing or not a string."""
    text = row.get("text")
    return text if isinstance(text, str) else ""


def clip(text: str, limit: int = 40) -> str:
    """A short quoted excerpt of ``text`` for a rejection reason."""
    short = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(short)


def collect_rejections(rows: Sequence[dict], hits: Iterable[Hit | None], ctx: ValidateContext) -> list[Rejection]:
    """Pair each row with its first broken rule (``None``: accepted) and report progress.

    Args:
        rows: The rows the layer sees, in input order.
        hits: One entry per row, in the same order (usually a generator, so work stays lazy).
        ctx: The layer's context; ``ctx.advance`` is called in chunks.

    Returns:
        One ``Rejection`` per rejected row.
    """
    rejections: list[Rejection] = []
    pending = 0
    for row, hit in zip(rows, hits, strict=True):
        if hit is not None:
            rejections.append(Rejection(str(row.get("id", "")), hit[0], hit[1]))
        pending += 1
        if pending == PROGRESS_EVERY:
            ctx.advance(pending)
            pending = 0
    if pending:
        ctx.advance(pending)
    return rejections
