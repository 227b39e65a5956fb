"""Validation layer ``structural``: rows that are malformed, empty, mislabelled or unrendered."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pydantic import ValidationError

from framework.data.rows import Row
from framework.plugin_api import Rejection, ValidateContext
from framework.registry import validators

from ._common import Hit, TextBounds, clip, collect_rejections

_TEMPLATE = re.compile(r"\{\{|\}\}|\{%|%\}")
# Unicode category Cc (C0, DEL, C1) except TAB.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# Lone surrogates plus the 66 noncharacters (U+FDD0..U+FDEF and U+xFFFE/U+xFFFF in every plane).
_PLANE_ENDS = "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17))
_INVALID = re.compile(f"[\ud800-\udfff\ufdd0-\ufdef{_PLANE_ENDS}]")
_MAX_SCHEMA_ERRORS = 4


class Params(TextBounds):
    """Params of the ``structural`` layer.

    Attributes:
        min_chars: Rows whose stripped text is shorter are rejected (``too_short``).
        max_chars: Rows whose stripped text is longer are rejected (``too_long``).
    """


def _codepoint(match: re.Match[str]) -> str:
    return f"U+{ord(match.group()):04X} at index {match.start()}"


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(map(str, loc)) or "<row>"


def _schema_hit(row: dict) -> Hit | None:
    try:
        Row.model_validate(row)
    except ValidationError as exc:
        errors = exc.errors()
        shown = [f"{_loc(error['loc'])} ({error['type']})" for error in errors[:_MAX_SCHEMA_ERRORS]]
        more = f" and {len(errors) - _MAX_SCHEMA_ERRORS} more" if len(errors) > _MAX_SCHEMA_ERRORS else ""
        return "schema", f"does not match the row schema: {', '.join(shown)}{more}"
    return None


def _text_hit(text: str, params: Params) -> Hit | None:
    stripped = text.strip()
    if not stripped:
        return "empty", "text is empty or whitespace only"
    if len(stripped) < params.min_chars:
        return "too_short", f"{len(stripped)} chars, fewer than min_chars={params.min_chars}"
    if len(stripped) > params.max_chars:
        return "too_long", f"{len(stripped)} chars, more than max_chars={params.max_chars}"
    return None


def _content_hit(text: str) -> Hit | None:
    if match := _TEMPLATE.search(text):
        return "unrendered_template", f"contains template syntax {match.group()!r} in {clip(text)}"
    if match := _CONTROL.search(text):
        return "control_chars", f"contains control character {_codepoint(match)}"
    if match := _INVALID.search(text):
        return (
            "invalid_unicode",
            f"contains invalid code point {_codepoint(match)} (surrogate or noncharacter)",
        )
    return None


def _check(row: dict, params: Params, ctx: ValidateContext) -> Hit | None:
    if hit := _schema_hit(row):
        return hit
    text = row["text"]
    if hit := _text_hit(text, params):
        return hit
    if row["intent"] not in ctx.intents:
        known = ", ".join(sorted(ctx.intents)) or "none"
        return "unknown_intent", f"intent {row['intent']!r} is not in the recipe (known: {known})"
    return _content_hit(text)


@validators.register("structural", params=Params)
def structural(rows: Sequence[dict], params: Params, ctx: ValidateContext) -> Iterable[Rejection]:
    """Reject rows that break the row schema, are empty or out of length, or carry broken text.

    Rules, first match wins: ``schema``, ``empty``, ``too_short``, ``too_long``, ``unknown_intent``,
    ``unrendered_template`` (``{{``, ``}}``, ``{%``, ``%}``), ``control_chars`` (any C0/C1 control
    except TAB) and ``invalid_unicode`` (lone surrogates, noncharacters).

    Args:
        rows: Rows accepted by earlier layers.
        params: ``min_chars`` and ``max_chars`` (see ``Params``).
        ctx: The layer's context (known intents, progress).
    """
    return collect_rejections(rows, (_check(row, params, ctx) for row in rows), ctx)
