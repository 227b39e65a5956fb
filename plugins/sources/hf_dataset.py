"""Built-in ``hf_dataset`` source: a Hugging Face ``datasets`` dataset read from local files only.

``path`` is either a directory written by ``save_to_disk`` (loaded with ``datasets.load_from_disk``)
or a local csv/json/jsonl/parquet file (streamed with ``datasets.load_dataset(<builder>, data_files=...)``).
Nothing is ever fetched from a hub: ``HF_DATASETS_OFFLINE`` and ``HF_HUB_OFFLINE`` default to 1.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from framework.errors import StageError
from framework.plugin_api import SourceContext
from framework.plugins.sources._common import (
    FileSourceParams,
    Record,
    RowBuilder,
    check_file,
    did_you_mean,
    emit_rows,
    empty_file_error,
    key,
    text_and_label,
)
from framework.registry import sources

BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_OFFLINE_VARIABLES = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


class HfDatasetParams(FileSourceParams):
    """Params of the ``hf_dataset`` source.

    Attributes:
        path: A ``save_to_disk`` directory, or a local ``.csv``/``.json``/``.jsonl``/``.parquet`` file.
            Relative paths resolve against the working directory.
        dataset_split: The split to read when the directory holds a ``DatasetDict`` (a single data
            file is one split and ignores it). Not the core ``split`` key, which pins rows.
        text_column: Column holding the utterance (dotted paths reach into struct columns).
        label_column: Column holding the label; ``ClassLabel`` ids are mapped to their names.
        label_map: Source label (after ``ClassLabel`` naming) -> intent name; others are used as they are.
        limit: Stop after this many rows (None: read everything).
    """

    directory_ok: ClassVar[bool] = True

    dataset_split: str = "train"

    def files(self) -> list[Path]:
        """The data file, or every file under a ``save_to_disk`` directory (sorted)."""
        path = self.resolved()
        if path.is_dir():
            return sorted(p for p in path.rglob("*") if p.is_file())
        return [path]


def _import_datasets(ctx: SourceContext) -> ModuleType:
    """``datasets``, imported with the hub switched off unless the user chose otherwise."""
    for variable in _OFFLINE_VARIABLES:
        os.environ.setdefault(variable, "1")
    try:
        import datasets
    except ImportError:
        raise StageError(
            f"{key(ctx, 'plugin')}: the hf_dataset source needs the 'datasets' package, which is not installed. "
            "Install it (pip install datasets) or read the file with the csv or jsonl source instead."
        ) from None
    return datasets


def _from_disk(datasets: ModuleType, path: Path, params: HfDatasetParams, ctx: SourceContext) -> Any:
    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise StageError(
            f"{key(ctx, 'path')}: {params.path} is a directory but not a dataset written by save_to_disk (no "
            "dataset_info.json / dataset_dict.json). Point it at such a directory, or at a csv, json, jsonl or "
            "parquet file."
        ) from None
    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    if params.dataset_split not in loaded:
        splits = list(loaded)
        raise StageError(
            f"{key(ctx, 'dataset_split')}: {params.path} has no split {params.dataset_split!r}"
            f"{did_you_mean(params.dataset_split, splits)} Splits found: {', '.join(splits)}. "
            f"Set {key(ctx, 'dataset_split')} to one of them."
        )
    return loaded[params.dataset_split]


def _load(path: Path, params: HfDatasetParams, ctx: SourceContext) -> Any:
    """A ``Dataset`` (from disk) or a streaming ``IterableDataset`` (from a data file)."""
    datasets = _import_datasets(ctx)
    if path.is_dir():
        return _from_disk(datasets, path, params, ctx)
    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise StageError(
            f"{key(ctx, 'path')}: {params.path} has the suffix {path.suffix or '(none)'!r}; the hf_dataset source "
            f"reads {', '.join(BUILDERS)} files or a save_to_disk directory. Convert the file or use another source."
        )
    return datasets.load_dataset(builder, data_files={"train": str(path)}, split="train", streaming=True)


def _class_names(dataset: Any, column: str) -> list[str] | None:
    """The names of a ``ClassLabel`` label column, or None for any other column type."""
    features = getattr(dataset, "features", None) or {}
    feature = features.get(column) if hasattr(features, "get") else None
    return list(feature.names) if type(feature).__name__ == "ClassLabel" else None


def _records(
    rows: Iterable[dict[str, Any]], names: list[str] | None, params: HfDatasetParams, ctx: SourceContext
) -> Iterator[Record]:
    """``(row index, text, label)``; ``ClassLabel`` ids become names (-1, no label, becomes None)."""
    for index, record in enumerate(rows):
        text, label = text_and_label(record, params, ctx, f"row {index}")
        if names is not None and isinstance(label, int):
            label = names[label] if 0 <= label < len(names) else None
        yield index, text, label


def _open(params: HfDatasetParams, ctx: SourceContext) -> tuple[Any, Iterator[dict[str, Any]]]:
    """The loaded dataset and an iterator over its rows; unreadable data is one clear error."""
    path = check_file(params, ctx)
    try:
        dataset = _load(path, params, ctx)
        rows = iter(dataset)
        first = next(rows, None)
    except StageError:
        raise
    except Exception as exc:  # datasets and pyarrow raise many types for a broken file
        raise StageError(
            f"{key(ctx, 'path')}: datasets could not read {params.path} ({type(exc).__name__}: {_first_line(exc)}). "
            "Check that the file is intact and of the type its suffix says."
        ) from None
    if first is None:
        raise empty_file_error(ctx, params.path, "holds no rows")
    return dataset, itertools.chain([first], rows)


def _first_line(exc: Exception, limit: int = 160) -> str:
    """The start of an exception's message: enough to diagnose, too short to copy a file's content."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@sources.register("hf_dataset", params=HfDatasetParams)
def hf_dataset_source(params: HfDatasetParams, ctx: SourceContext) -> Iterator[dict[str, Any]]:
    """Labelled rows from a local Hugging Face dataset (save_to_disk directory or data file); never online."""
    dataset, rows = _open(params, ctx)
    names = _class_names(dataset, params.label_column)
    builder = RowBuilder(params, ctx, position_key="index")
    yield from emit_rows(_records(rows, names, params, ctx), builder)
