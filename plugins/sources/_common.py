"""Helpers shared by the built-in sources (underscore: not loaded as a plugin).

A source reads records ``(position, text, label)`` from a file and hands them to ``emit_rows``,
which maps labels to intents, skips blank rows, applies ``limit``, reports progress and raises one
clear ``StageError`` per problem a user can fix in the recipe or the data.
"""

from __future__ import annotations

import difflib
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from framework.data.rows import row_id
from framework.errors import StageError
from framework.io import special_kind
from framework.plugin_api import SourceContext
from framework.registry import PluginParams

if TYPE_CHECKING:
    from framework.config.schema import RecipeConfig

PROGRESS_EVERY = 512
_SHOWN = 5
_SHOWN_LABELS = 20
_CLOSE = 0.85
"""How alike (difflib ratio) a label and an intent must be for a did-you-mean."""
_SHOWN_COLUMNS = 20
EXCERPT = 40
"""Most characters of one value (a column name, a label) quoted from a file that parsed as data."""
_KEY_DEPTH = 8
Record = tuple[int, object, object]
"""``(position, text, label)``: position is a 1-based line number or a 0-based row index."""


def resolve_path(path: str) -> Path:
    """``path`` made absolute against the current working directory (``~`` expanded)."""
    candidate = Path(path).expanduser()
    return (candidate if candidate.is_absolute() else Path.cwd() / candidate).resolve()


class FileSourceParams(PluginParams):
    """Params every file source shares.

    Attributes:
        path: The file to read; a relative path resolves against the working directory.
        text_column: Column (or key) holding the utterance.
        label_column: Column (or key) holding the label.
        label_map: Source label -> intent name; labels not in the map are used as they are.
        limit: Stop after this many rows (None: read everything).
    """

    directory_ok: ClassVar[bool] = False
    """Whether ``path`` may name a directory (a ``save_to_disk`` dataset)."""

    path: str = Field(min_length=1)
    text_column: str = Field(default="text", min_length=1)
    label_column: str = Field(default="label", min_length=1)
    label_map: dict[str, str] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=1)

    @field_validator("label_map", mode="before")
    @classmethod
    def _string_keys(cls, value: Any) -> Any:
        """YAML reads ``{3: card_arrival}`` with an int key; labels are compared as strings."""
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    def check_recipe(self, config: RecipeConfig) -> list[tuple[str, str]]:
        """Checks against the whole recipe, run before any work: every ``label_map`` target is an intent, and
        ``path``, when it exists, is something that can be read as data (not a directory, device or FIFO)."""
        issues = [
            (
                f"label_map.{label}",
                f"maps to {intent!r}, which is not an intent of the recipe{did_you_mean(intent, config.intents)}",
            )
            for label, intent in self.label_map.items()
            if intent not in config.intents
        ]
        problem = unreadable_reason(self)
        return issues + ([("path", problem)] if problem else [])

    def resolved(self) -> Path:
        """The absolute path this source reads."""
        return resolve_path(self.path)

    def files(self) -> list[Path]:
        """Resolved absolute paths of the files read (they feed the stage fingerprint)."""
        return [self.resolved()]


def key(ctx: SourceContext, name: str) -> str:
    """The recipe key path of one of this source's params, e.g. ``sources.train.path``."""
    return f"sources.{ctx.name}.{name}"


def closest(wanted: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice closest to ``wanted`` (first one spelled alike but for case, spaces and punctuation), or None."""
    choices = list(choices)
    folded = [c for c in choices if _fold(c) == _fold(wanted)]
    close = folded or difflib.get_close_matches(wanted, choices, n=1, cutoff=cutoff)
    return close[0] if close else None


def _fold(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def did_you_mean(wanted: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""``."""
    match = closest(wanted, choices)
    return f"; did you mean '{match}'?" if match else ""


def excerpt(value: object, limit: int = EXCERPT) -> str:
    """``repr`` of a value quoted from a data file, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def unreadable_reason(params: FileSourceParams) -> str | None:
    """Why an existing ``path`` cannot be read as data (a directory, device, FIFO, unreadable), or None.

    None as well when nothing is there: :func:`check_file` reports a missing file when the source runs.
    """
    path = params.resolved()
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    where = f"{params.path} (resolved to {path})" if str(path) != params.path else params.path
    kind = special_kind(mode)
    if kind == "a directory" and not params.directory_ok:
        return f"{where} is a directory, not a data file. Point it at the file that holds the rows."
    if kind is not None and kind != "a directory":
        return (
            f"{where} is not a regular file: it is {kind}, which a source never reads. Point it at a regular file "
            "that holds the rows."
        )
    if not os.access(path, os.R_OK):
        return f"{where} cannot be read (permission denied). Make it readable, or point it at a readable copy."
    return None


def check_file(params: FileSourceParams, ctx: SourceContext) -> Path:
    """The resolved path, or a ``StageError`` when nothing is there or it cannot be read as data."""
    path = params.resolved()
    if not path.exists():
        raise StageError(
            f"{key(ctx, 'path')}: no such file: {params.path} (resolved to {path} from the working directory "
            f"{Path.cwd()}). Relative paths resolve against the directory intentcraft is started from: run it from "
            f"there (for the shipped recipes, the repository root) or set {key(ctx, 'path')} to an absolute path."
        )
    problem = unreadable_reason(params)
    if problem:
        raise StageError(f"{key(ctx, 'path')}: {problem}")
    return path


def missing_column_error(
    ctx: SourceContext, param: str, column: str, found: list[str], file: str, where: str = ""
) -> StageError:
    """A column (or JSON key) named by ``param`` is not in the data."""
    place = f" {where}" if where else ""
    listing = ", ".join(excerpt(c) for c in found[:_SHOWN_COLUMNS]) or "none"
    listing += f" and {len(found) - _SHOWN_COLUMNS} more" if len(found) > _SHOWN_COLUMNS else ""
    return StageError(
        f"{key(ctx, param)}: column {column!r} is not in {file}{place}{did_you_mean(column, found)} "
        f"Columns found: {listing}. Set {key(ctx, param)} to the column that holds the "
        f"{'utterances' if param == 'text_column' else 'labels'}."
    )


def decode_error(ctx: SourceContext, params: Any, exc: UnicodeDecodeError) -> StageError:
    """The error for a file that is not in the encoding its source declares."""
    return StageError(
        f"{key(ctx, 'encoding')}: {params.path} is not valid {params.encoding} ({exc.reason} at byte "
        f"{exc.start}). Set {key(ctx, 'encoding')} to the file's encoding (e.g. latin-1 or cp1252)."
    )


def empty_file_error(ctx: SourceContext, file: str, detail: str = "has no data rows") -> StageError:
    """The file holds nothing to read."""
    return StageError(
        f"{key(ctx, 'path')}: {file} {detail}. Point {key(ctx, 'path')} at a file with labelled rows, "
        f"or remove sources.{ctx.name} from the recipe."
    )


def lookup(record: dict[str, Any], path: str) -> tuple[bool, Any]:
    """``(found, value)`` of a key, or of a dotted path such as ``meta.label`` into nested dicts."""
    if path in record:
        return True, record[path]
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def text_and_label(
    record: dict[str, Any], params: FileSourceParams, ctx: SourceContext, where: str
) -> tuple[object, object]:
    """The text and label of one record (keys or dotted paths); a missing key is an error naming ``where``."""
    values = []
    for param, column in (("text_column", params.text_column), ("label_column", params.label_column)):
        found, value = lookup(record, column)
        if not found:
            raise missing_column_error(ctx, param, column, key_paths(record), params.path, f"({where})")
        values.append(value)
    return values[0], values[1]


def key_paths(record: dict[str, Any], prefix: str = "", depth: int = _KEY_DEPTH) -> list[str]:
    """Every key of ``record``, nested ones as dotted paths (``meta``, ``meta.label``), ``depth`` levels deep."""
    paths = []
    for name, value in record.items():
        paths.append(prefix + str(name))
        if isinstance(value, dict) and depth > 1:
            paths += key_paths(value, f"{prefix}{name}.", depth - 1)
    return paths


def _as_text(value: object) -> str | None:
    """A cell as a string; None for missing values (None, NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)


@dataclass
class RowBuilder:
    """Turns records into rows and keeps what ``finish`` reports: blanks, unlabelled rows, unknown labels."""

    params: FileSourceParams
    ctx: SourceContext
    position_key: str = "line"
    made: int = 0
    blank: list[int] = field(default_factory=list)
    unlabelled: list[int] = field(default_factory=list)
    unknown: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_at: dict[tuple[str, str], int] = field(default_factory=dict)
    _pending: int = 0

    @property
    def full(self) -> bool:
        """Whether ``limit`` rows have been made."""
        return self.params.limit is not None and self.made >= self.params.limit

    def build(self, position: int, text: object, label: object) -> dict[str, Any] | None:
        """The row for one record, or None when it is skipped (blank, unlabelled or unknown label).

        An empty ``ctx.intents`` accepts every label (for use outside a recipe).
        """
        self._tick()
        text, label = _as_text(text), _as_text(label)
        if text is None or not text.strip():
            self.blank.append(position)
            return None
        if label is None or not label.strip():
            self.unlabelled.append(position)
            return None
        label = label.strip()
        intent = self.params.label_map.get(label, label)
        if self.ctx.intents and intent not in self.ctx.intents:
            self.unknown[(label, intent)] += 1
            self.first_at.setdefault((label, intent), position)
            return None
        self.made += 1
        return self._row(position, text, intent)

    def _row(self, position: int, text: str, intent: str) -> dict[str, Any]:
        ctx = self.ctx
        provenance = {
            "generator": ctx.name,
            "plugin": ctx.plugin_id,
            "synthetic": False,
            "file": self.params.path,
            self.position_key: position,
        }
        row: dict[str, Any] = {"id": row_id(ctx.name, position), "text": text, "intent": intent, "source": ctx.name}
        if ctx.split is not None:
            row["split"] = ctx.split
        row["provenance"] = provenance
        return row

    def _tick(self) -> None:
        self._pending += 1
        if self._pending >= PROGRESS_EVERY:
            self.ctx.advance(self._pending)
            self._pending = 0

    def finish(self) -> None:
        """Report progress left over, warn about skipped rows, raise on unknown labels or no rows at all."""
        if self._pending:
            self.ctx.advance(self._pending)
            self._pending = 0
        if self.unknown:
            raise self._unknown_label_error()
        skipped = self._skipped_message()
        if self.made == 0:
            raise empty_file_error(self.ctx, self.params.path, f"has no usable rows ({skipped or 'none found'})")
        if skipped:
            self.ctx.warn(f"sources.{self.ctx.name}: {self.params.path}: {skipped}")

    def _skipped_message(self) -> str:
        parts = []
        for positions, what in ((self.blank, "blank text"), (self.unlabelled, "no label")):
            if positions:
                shown = ", ".join(str(p) for p in positions[:_SHOWN]) + (", ..." if len(positions) > _SHOWN else "")
                noun = "row" if len(positions) == 1 else "rows"
                parts.append(f"skipped {len(positions)} {noun} with {what} ({self.position_key} {shown})")
        return "; ".join(parts)

    def _unknown_label_error(self) -> StageError:
        ctx, intents = self.ctx, list(self.ctx.intents)
        entries = []
        for (label, intent), count in self.unknown.most_common(_SHOWN_LABELS):
            mapped = f" (label_map gives {excerpt(intent)})" if intent != label else ""
            where = f"{self.position_key} {self.first_at[(label, intent)]}"
            rows = "1 row" if count == 1 else f"{count:,} rows"
            hint = closest(intent, intents, _CLOSE)
            hint = f"; did you mean {hint!r}?" if hint else ""
            entries.append(f"{excerpt(label)}{mapped} ({rows}, first at {where}{hint})")
        total = len(self.unknown)
        shown = f" (the {_SHOWN_LABELS} with most rows shown)" if total > _SHOWN_LABELS else ""
        (example_label, example_intent), _ = self.unknown.most_common(1)[0]
        target = closest(example_intent, intents, _CLOSE) or (intents[0] if intents else "SomeIntent")
        example_label = example_label[:EXCERPT]
        labels = "1 label names" if total == 1 else f"{total} labels name"
        return StageError(
            f"{key(ctx, 'label_column')}: {labels} no intent of the recipe in {self.params.path}{shown}: "
            f"{', '.join(entries)}. Take the recipe's intents from the data (intents_from: sources.{ctx.name}, "
            f"or a list of sources), add each label as an intent, or map it to an existing intent with "
            f"{key(ctx, 'label_map')} (e.g. label_map: {{{example_label!r}: {target}}})."
        )


def emit_rows(records: Iterable[Record], builder: RowBuilder) -> Iterator[dict[str, Any]]:
    """Rows built from ``records`` until ``limit``; then ``builder.finish()`` warns or raises."""
    if not builder.full:
        for position, text, label in records:
            row = builder.build(position, text, label)
            if row is not None:
                yield row
                if builder.full:
                    break
    builder.finish()
