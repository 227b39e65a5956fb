"""Intents taken from the labels of a recipe's sources: ``intents_from: sources.train``.

The named sources are read once while the recipe is checked (cached by their params and files' size and
modification time, so a sweep reads each file once). Every label becomes an intent; intents the recipe
declares by hand keep their descriptions, templates and flags. A label that is not a valid intent name
(``reverted card payment?``, ``3``) gets one made from it (``reverted_card_payment``, ``intent_3``): the
mapping is added to every source's ``label_map`` and kept as the intent's ``label``, which the bundle's
router returns.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.config.schema import NAME_PATTERN
from framework.errors import ConfigIssue, IntentcraftError
from framework.plugin_api import SourceContext

MAX_INTENTS = 1000
"""More distinct labels than this almost always means ``label_column`` names the wrong column."""
NAME_LENGTH = 64
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class DerivedIntents:
    """What ``intents_from`` added to a recipe.

    Attributes:
        sources: The sources whose labels became intents.
        rows: Rows per label (after the recipe's own ``label_map``), over those sources.
        added: Intents added from labels (declared ones are not repeated here).
        renamed: Label -> intent name, for labels that are not valid names.
    """

    sources: tuple[str, ...]
    rows: dict[str, int]
    added: tuple[str, ...]
    renamed: dict[str, str]

    def describe(self, shown: int = 20) -> list[str]:
        """Lines for the user: where the intents came from and every renamed label (the first ``shown``)."""
        where = ", ".join(f"sources.{name}" for name in self.sources)
        lines = [f"intents from {where}: {len(self.rows)} labels, {len(self.added)} intents added"]
        if self.renamed:
            pairs = list(self.renamed.items())
            noun = "label is not a valid intent name" if len(pairs) == 1 else "labels are not valid intent names"
            lines.append(f"{len(pairs)} {noun}: the recipe names them as below; predict returns the label")
            lines += [f"  {label!r} -> {name}" for label, name in pairs[:shown]]
            if len(pairs) > shown:
                lines.append(f"  ... and {len(pairs) - shown} more (intentcraft validate --show lists them)")
        return lines


def intent_name(label: str, taken: set[str]) -> str:
    """A valid intent name made from ``label``, not in ``taken`` (a ``_2``, ``_3`` suffix when needed)."""
    ascii_text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode("ascii")
    base = _NOT_NAME.sub("_", ascii_text).strip("_-")[:NAME_LENGTH].rstrip("_-")
    if not base or not base[0].isalpha():
        base = f"intent_{base}" if base else "intent"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def derive_intents(
    raw: dict[str, Any], bind: Callable[[str], Any]
) -> tuple[dict[str, Any], DerivedIntents | None, list[ConfigIssue]]:
    """``raw`` with the intents its ``intents_from`` sources' labels give, or the issues that prevent it.

    Args:
        raw: The composed recipe.
        bind: Source name -> its bound plugin (``BoundPlugin``) or a list of ``ConfigIssue``.
    """
    wanted = raw.get("intents_from")
    if wanted is None:
        return raw, None, []
    names, issues = _source_names(wanted, raw.get("sources"))
    if issues:
        return raw, None, issues
    rows: Counter[str] = Counter()
    for name in names:
        bound = bind(name)
        if isinstance(bound, list):
            return raw, None, bound
        try:
            rows.update(_labels(name, bound))
        except IntentcraftError as exc:
            return raw, None, [_read_issue(name, str(exc))]
    if len(rows) > MAX_INTENTS:
        where = ", ".join(f"sources.{n}.label_column" for n in names)
        message = (
            f"the labels of {', '.join(names)} give {len(rows):,} distinct values, over the {MAX_INTENTS} intents "
            f"intents_from accepts: {where} probably names a column of free text, not labels. Check it"
        )
        return raw, None, [ConfigIssue("intents_from", message)]
    declared = _declared_intents(raw)
    if len(set(rows) | {str(name) for name in declared}) < 2:
        return raw, None, [_too_few(tuple(names), rows)]
    mappable = {name for name in raw.get("sources") or {} if _has_label_map(bind(name))}
    return _expand(raw, tuple(names), rows, mappable)


def _declared_intents(raw: dict[str, Any]) -> dict[Any, Any]:
    """The recipe's own ``intents:`` mapping; empty when it has none (or not a mapping)."""
    intents = raw.get("intents")
    return intents if isinstance(intents, dict) else {}


def _has_label_map(bound: Any) -> bool:
    """Whether a source's plugin takes a ``label_map`` (every built-in file source does)."""
    return not isinstance(bound, list) and "label_map" in type(bound.params).model_fields


def _source_names(wanted: Any, sources: Any) -> tuple[list[str], list[ConfigIssue]]:
    items = [wanted] if isinstance(wanted, str) else wanted
    known = list(sources) if isinstance(sources, dict) else []
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        message = "must name a source, e.g. intents_from: sources.train, or a list of them"
        return [], [ConfigIssue("intents_from", message, wanted, has_value=True)]
    names = [item.removeprefix("sources.") for item in items]
    missing = [n for n in names if n not in known]
    if missing:
        listing = ", ".join(f"sources.{k}" for k in known) or "none (add one under sources:)"
        message = f"names {', '.join(f'sources.{n}' for n in missing)}, which the recipe does not have; its sources: "
        return [], [ConfigIssue("intents_from", message + listing)]
    return list(dict.fromkeys(names)), []


def _read_issue(name: str, message: str) -> ConfigIssue:
    """A source's read error as an issue at the key it names (``sources.train.path: ...``)."""
    prefix = f"sources.{name}."
    if message.startswith(prefix) and ": " in message:
        path, _, rest = message.partition(": ")
        return ConfigIssue(path, f"reading its labels for intents_from: {rest}")
    return ConfigIssue(f"sources.{name}", f"reading its labels for intents_from: {message}")


def _labels(name: str, bound: Any) -> Counter[str]:
    """Rows per label of one source (after its ``label_map``), read through the source plugin."""
    params = bound.params
    files = params.files() if callable(getattr(params, "files", None)) else []
    stats = tuple((str(f), *_stat(f)) for f in files)
    key = (name, bound.spec.id, bound.section.split, params.model_dump_json(), stats)
    return Counter(_cached_labels(key, bound))


def _stat(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except OSError:
        return (-1, -1)
    return (info.st_size, info.st_mtime_ns)


_CACHE: dict[tuple[Any, ...], dict[str, int]] = {}
_CACHE_SIZE = 32


def _cached_labels(key: tuple[Any, ...], bound: Any) -> dict[str, int]:
    """``{label: rows}``, read once per distinct ``key`` in this process (callers copy it)."""
    if key not in _CACHE:
        context = SourceContext(name=key[0], plugin_id=bound.spec.id, intents={}, split=bound.section.split, seed=0)
        counts = Counter(str(row["intent"]) for row in bound.spec.func(bound.params, context))
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = dict(counts)
    return _CACHE[key]


def _expand(
    raw: dict[str, Any], names: tuple[str, ...], rows: Counter[str], mappable: set[str]
) -> tuple[dict[str, Any], DerivedIntents, list[ConfigIssue]]:
    declared = _declared_intents(raw)
    intents: dict[Any, Any] = dict(declared)
    by_label = {spec["label"]: name for name, spec in declared.items() if isinstance(spec, dict) and spec.get("label")}
    taken = {str(k) for k in intents} | set(rows)
    claimed: set[str] = set()  # declared intents a label has joined: a second label never joins the same one
    added, renamed = [], {}
    for label in sorted(rows):
        if label in by_label:  # a declared intent says it is this label (e.g. to mark it out_of_scope)
            name = by_label[label]
        elif label in declared or re.match(NAME_PATTERN, label):
            claimed.add(label)
            if label not in declared:
                intents[label] = {}
                added.append(label)
            continue
        else:
            name = intent_name(label, set())
            spec = declared.get(name)
            if not isinstance(spec, dict) or name in claimed or name in rows or spec.get("label"):
                name = intent_name(label, taken)
                intents[name] = {"label": label}
                added.append(name)
                taken.add(name)
            else:  # declared by hand under the name the label gets (e.g. to give it a description): it joins
                intents[name] = {**spec, "label": label}
        claimed.add(name)
        renamed[label] = name
    expanded = {**raw, "intents": intents}
    if renamed and isinstance(raw.get("sources"), dict):
        expanded["sources"] = {
            key: _with_renames(section, renamed) if key in mappable else section
            for key, section in raw["sources"].items()
        }
    derived = DerivedIntents(names, dict(sorted(rows.items())), tuple(added), renamed)
    return expanded, derived, []


def _too_few(names: tuple[str, ...], rows: Counter[str]) -> ConfigIssue:
    """A router needs two intents; the sources gave fewer labels."""
    found = ", ".join(repr(label) for label in rows) or "none"
    columns = ", ".join(f"sources.{n}.label_column" for n in names)
    return ConfigIssue(
        "intents_from",
        f"the labels of {', '.join(f'sources.{n}' for n in names)} give {len(rows)} distinct value(s) ({found}), and "
        f"a router needs at least 2 intents: check {columns} (it may name the wrong column), or declare the other "
        "intents under intents:",
    )


def _with_renames(section: Any, renamed: dict[str, str]) -> Any:
    """A source section whose ``label_map`` also maps each renamed label; the recipe's own entries win, and
    those whose target was renamed point at the new name."""
    if not isinstance(section, dict):
        return section
    own = section.get("label_map")
    own = {k: renamed.get(v, v) if isinstance(v, str) else v for k, v in own.items()} if isinstance(own, dict) else {}
    given = {str(k) for k in own}
    return {**section, "label_map": {**own, **{k: v for k, v in renamed.items() if k not in given}}}
