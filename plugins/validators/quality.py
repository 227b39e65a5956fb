"""Validation layer ``quality``: rows too short, parroted from the recipe, repetitive or near-duplicated."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from framework.data.rows import normalize_text, tokens
from framework.plugin_api import Rejection, ValidateContext
from framework.registry import PluginParams, validators

from ._common import Hit, clip, collect_rejections, row_text
from ._near_dup import NearDupIndex

PROMPT_MIN_WORDS = 4
REPEAT_MIN_TOKENS = 4


class NearDupParams(PluginParams):
    """Near-duplicate detection.

    Attributes:
        enabled: Run the check at all.
        threshold: Token-set Jaccard similarity at or above which a later row is rejected (0 < t <= 1).
        scope: ``intent`` compares rows of the same intent only; ``all`` compares across intents.
    """

    enabled: bool = True
    threshold: float = Field(default=0.9, gt=0, le=1)
    scope: Literal["intent", "all"] = "intent"


class Params(PluginParams):
    """Params of the ``quality`` layer.

    Attributes:
        min_words: Rows with fewer words are rejected; an intent's own ``min_words`` overrides it.
            ``None`` means no minimum unless the intent sets one.
        parroting: Reject synthetic rows that copy an example, a description or their prompt.
        max_token_repeat: Rows of at least 4 words where one word (of 2+ letters) makes more than this share
            are rejected.
        near_duplicates: Near-duplicate detection (see ``NearDupParams``).
    """

    min_words: int | None = Field(default=None, ge=1)
    parroting: bool = True
    max_token_repeat: float = Field(default=0.5, gt=0, le=1)
    near_duplicates: NearDupParams = Field(default_factory=NearDupParams)


@dataclass(frozen=True)
class _RecipeText:
    """Normalised recipe text that synthetic rows must not copy."""

    examples: frozenset[str]
    descriptions: frozenset[str]

    @classmethod
    def from_ctx(cls, ctx: ValidateContext) -> _RecipeText:
        examples = {normalize_text(example) for spec in ctx.intents.values() for example in spec.examples}
        descriptions = {normalize_text(spec.description) for spec in ctx.intents.values()}
        return cls(frozenset(examples - {""}), frozenset(descriptions - {""}))


def _min_words_hit(row: dict, words: list[str], params: Params, ctx: ValidateContext) -> Hit | None:
    intent = row.get("intent")
    spec = ctx.intents.get(intent) if isinstance(intent, str) else None
    minimum = spec.min_words if spec is not None and spec.min_words is not None else params.min_words
    if minimum is not None and len(words) < minimum:
        source = "intent" if spec is not None and spec.min_words is not None else "layer"
        return "min_words", f"{len(words)} words, fewer than min_words={minimum} ({source} setting)"
    return None


def _parroting_hit(row: dict, words: list[str], recipe: _RecipeText) -> Hit | None:
    provenance = row.get("provenance")
    if not isinstance(provenance, dict) or provenance.get("synthetic") is not True or not words:
        return None
    normalized = " ".join(words)
    if normalized in recipe.examples:
        return "parroting", f"synthetic row repeats a recipe example verbatim: {clip(normalized)}"
    if normalized in recipe.descriptions:
        return "parroting", f"synthetic row repeats an intent description: {clip(normalized)}"
    prompt = provenance.get("prompt")
    copied = isinstance(prompt, str) and len(words) >= PROMPT_MIN_WORDS
    if copied and f" {normalized} " in f" {normalize_text(prompt)} ":
        return "parroting", f"synthetic row copies {len(words)} words from its prompt: {clip(normalized)}"
    return None


def _repetitive_hit(words: list[str], limit: float) -> Hit | None:
    if len(words) < REPEAT_MIN_TOKENS:
        return None
    counted = Counter(w for w in words if len(w) > 1)  # one-letter tokens come from regexes and paths (\d, /a/b)
    if not counted:
        return None
    word, count = counted.most_common(1)[0]
    share = count / len(words)
    if share > limit:
        return (
            "repetitive",
            f"{word!r} is {count} of {len(words)} words ({share:.2f} > max_token_repeat={limit})",
        )
    return None


def _near_dup_hit(row: dict, words: list[str], index: NearDupIndex, scope: str) -> Hit | None:
    scope_key = str(row.get("intent")) if scope == "intent" else None
    match = index.offer(str(row.get("id", "")), words, scope_key)
    if match is None:
        return None
    where = "same intent" if scope == "intent" else "any intent"
    similarity = f"jaccard {match.jaccard:.2f} >= {index.threshold:.2f}"
    return "near_duplicate", f"near-duplicate of row {match.kept_id} ({similarity}, {where})"


def _checks(rows: Sequence[dict], params: Params, ctx: ValidateContext) -> Iterable[Hit | None]:
    """First broken rule per row, in input order (near-duplicates only among rows that pass the rest)."""
    words_per_row = [tokens(row_text(row)) for row in rows]
    recipe = _RecipeText.from_ctx(ctx)
    near = params.near_duplicates
    index = NearDupIndex(near.threshold, words_per_row) if near.enabled else None
    for row, words in zip(rows, words_per_row, strict=True):
        hit = _min_words_hit(row, words, params, ctx)
        if hit is None and params.parroting:
            hit = _parroting_hit(row, words, recipe)
        if hit is None:
            hit = _repetitive_hit(words, params.max_token_repeat)
        if hit is None and index is not None:
            hit = _near_dup_hit(row, words, index, near.scope)
        yield hit


@validators.register("quality", params=Params)
def quality(rows: Sequence[dict], params: Params, ctx: ValidateContext) -> Iterable[Rejection]:
    """Reject rows that are too short, parroted, repetitive or near-duplicates of an earlier row.

    Rules, first match wins: ``min_words``, ``parroting`` (synthetic rows only), ``repetitive`` and
    ``near_duplicate`` (the first row of each group is kept, in input order).

    Args:
        rows: Rows accepted by earlier layers.
        params: See ``Params``.
        ctx: The layer's context (intent specs for ``min_words``, examples and descriptions; progress).
    """
    return collect_rejections(rows, _checks(rows, params, ctx), ctx)
