"""Built-in ``jsonl`` source: labelled rows from a JSON Lines file (one object per line), streamed."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from framework.errors import StageError
from framework.plugin_api import SourceContext
from framework.plugins.sources._common import (
    FileSourceParams,
    Record,
    RowBuilder,
    check_file,
    decode_error,
    emit_rows,
    empty_file_error,
    key,
    text_and_label,
)
from framework.registry import sources


class JsonlParams(FileSourceParams):
    """Params of the ``jsonl`` source.

    Attributes:
        path: The JSON Lines file. Relative paths resolve against the working directory.
        text_column: Key holding the utterance; a dotted path (``data.text``) reaches into nested objects.
        label_column: Key holding the label, e.g. ``label`` or ``meta.label``.
        label_map: Source label -> intent name; labels not in the map are used as they are.
        encoding: Text encoding of the file.
        limit: Stop after this many rows (None: read everything).
    """

    encoding: str = "utf-8"


def _objects(path: Path, params: JsonlParams, ctx: SourceContext) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` per non-empty line."""
    with path.open(encoding=params.encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StageError(
                    f"{key(ctx, 'path')}: line {number} of {params.path} is not valid JSON ({exc.msg} at column "
                    f"{exc.colno}). Each line must hold one JSON object; fix or remove that line."
                ) from None
            except RecursionError:
                raise too_deep_error(ctx, params, f"line {number}") from None
            if not isinstance(record, dict):
                raise StageError(
                    f"{key(ctx, 'path')}: line {number} of {params.path} holds a JSON {type(record).__name__}, "
                    "not an object. Each line must hold one object with the text and label keys."
                )
            yield number, record


def _records(
    objects: Iterable[tuple[int, dict[str, Any]]], params: JsonlParams, ctx: SourceContext
) -> Iterator[Record]:
    """``(line, text, label)``; a line without one of the keys is an error that names it."""
    for number, record in objects:
        text, label = text_and_label(record, params, ctx, f"line {number}")
        yield number, text, label


def _read(params: JsonlParams, ctx: SourceContext) -> Iterator[dict[str, Any]]:
    path = check_file(params, ctx)
    objects = _objects(path, params, ctx)
    first = next(objects, None)
    if first is None:
        raise empty_file_error(ctx, params.path, "has no JSON lines")
    records = _records(itertools.chain([first], objects), params, ctx)
    yield from emit_rows(records, RowBuilder(params, ctx))


@sources.register("jsonl", params=JsonlParams)
def jsonl_source(params: JsonlParams, ctx: SourceContext) -> Iterator[dict[str, Any]]:
    """Labelled rows from a JSON Lines file; keys may be dotted paths into nested objects."""
    try:
        yield from _read(params, ctx)
    except UnicodeDecodeError as exc:
        raise decode_error(ctx, params, exc) from None
    except RecursionError:  # a text or label value nested too deeply to turn into a string
        raise too_deep_error(ctx, params, "a value") from None


def too_deep_error(ctx: SourceContext, params: JsonlParams, where: str) -> StageError:
    """The error for JSON nested deeper than Python's parser and converters can follow."""
    return StageError(
        f"{key(ctx, 'path')}: {where} of {params.path} nests JSON arrays or objects too deeply to read. Each line "
        "must hold one flat JSON object with the text and label keys; fix or remove that line."
    )
