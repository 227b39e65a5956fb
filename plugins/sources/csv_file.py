"""Built-in ``csv`` source: labelled rows from a CSV file with a header line, streamed with the stdlib."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import Any

from pydantic import Field

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
    missing_column_error,
)
from framework.registry import sources

_BOM = "\ufeff"
_COLUMN_NAME = re.compile(r"[\w .:()/#-]{0,64}")
"""What a column name in a header line looks like; a first line with anything else is not quoted back."""


class CsvParams(FileSourceParams):
    """Params of the ``csv`` source.

    Attributes:
        path: The CSV file; its first line names the columns. Relative paths resolve against the
            working directory.
        text_column: Column holding the utterance.
        label_column: Column holding the label.
        label_map: Source label -> intent name; labels not in the map are used as they are.
        delimiter: One-character field separator (``","``; ``"\\t"`` for TSV).
        encoding: Text encoding of the file (a UTF-8 byte-order mark is ignored).
        limit: Stop after this many rows (None: read everything).
    """

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"


def _check_header(header: list[str], params: CsvParams, ctx: SourceContext) -> None:
    """Refuse a first line that is not a header of column names, without quoting it (it may be a secret)."""
    odd = next((n for n, name in enumerate(header, start=1) if not _COLUMN_NAME.fullmatch(name)), None)
    if len(header) >= 2 and odd is None:
        return
    found = (
        f"it has {len(header)} field{'s' if len(header) != 1 else ''} separated by {params.delimiter!r}, and the "
        "text and label columns need two"
        if len(header) < 2
        else f"field {odd} is not a column name (over 64 characters, or characters such names do not use)"
    )
    raise StageError(
        f"{key(ctx, 'path')}: {params.path} does not look like a CSV file with a header line: {found}. Its content "
        f"is not shown. Point {key(ctx, 'path')} at a CSV file whose line 1 names the columns, and set "
        f"{key(ctx, 'delimiter')} if its fields are not separated by {params.delimiter!r}."
    )


def _column_index(header: list[str], param: str, column: str, params: CsvParams, ctx: SourceContext) -> int:
    if column not in header:
        raise missing_column_error(ctx, param, column, header, params.path, "(header line 1)")
    return header.index(column)


def _records(reader: Any, text_at: int, label_at: int) -> Iterator[Record]:
    """``(first line of the record, text, label)``; empty lines are not records."""
    start = reader.line_num + 1
    for fields in reader:
        if fields:
            text = fields[text_at] if text_at < len(fields) else None
            label = fields[label_at] if label_at < len(fields) else None
            yield start, text, label
        start = reader.line_num + 1


def _read(params: CsvParams, ctx: SourceContext) -> Iterator[dict[str, Any]]:
    path = check_file(params, ctx)
    with path.open(newline="", encoding=params.encoding) as handle:
        reader = csv.reader(handle, delimiter=params.delimiter)
        header = next(reader, None)
        if not header:
            raise empty_file_error(ctx, params.path, "is empty (not even a header line)")
        header[0] = header[0].removeprefix(_BOM)
        _check_header(header, params, ctx)
        text_at = _column_index(header, "text_column", params.text_column, params, ctx)
        label_at = _column_index(header, "label_column", params.label_column, params, ctx)
        yield from emit_rows(_records(reader, text_at, label_at), RowBuilder(params, ctx))


@sources.register("csv", params=CsvParams)
def csv_source(params: CsvParams, ctx: SourceContext) -> Iterator[dict[str, Any]]:
    """Labelled rows from a CSV file with a header line (one row per record, streamed)."""
    try:
        yield from _read(params, ctx)
    except UnicodeDecodeError as exc:
        raise decode_error(ctx, params, exc) from None
    except csv.Error as exc:
        raise StageError(
            f"{key(ctx, 'path')}: {params.path} is not a readable CSV file ({exc}). Check the file, and "
            f"{key(ctx, 'delimiter')} if its fields are not separated by {params.delimiter!r}."
        ) from None
