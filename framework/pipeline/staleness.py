"""Explain why a stage is stale by comparing its recorded fingerprint inputs with the current ones."""

from __future__ import annotations

from typing import Any


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists as ``{"a.b[0].c": leaf}``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, list):
        return {prefix: value}
    return {prefix: value}


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted recipe keys whose values differ (added, removed or changed)."""
    flat_old, flat_new = flatten(old), flatten(new)
    return sorted(k for k in flat_old.keys() | flat_new.keys() if flat_old.get(k, ...) != flat_new.get(k, ...))


def _listing(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def explain(old: dict[str, Any], new: dict[str, Any]) -> str:
    """One line naming what changed since the stage last ran."""
    reasons = []
    keys = changed_keys(old.get("config", {}), new.get("config", {}))
    if keys:
        noun = "key" if len(keys) == 1 else "keys"
        reasons.append(f"recipe {noun} {_listing(keys)} changed")
    upstream = sorted(k for k in new.get("upstream", {}) if old.get("upstream", {}).get(k) != new["upstream"][k])
    if upstream:
        reasons.append(f"upstream {_listing(upstream)} changed")
    old_plugins, new_plugins = old.get("plugins", {}), new.get("plugins", {})
    swapped = sorted(set(old_plugins) ^ set(new_plugins))
    if swapped:
        reasons.append(f"plugins changed ({_listing(swapped)})")
    edited = sorted(p for p in set(old_plugins) & set(new_plugins) if old_plugins[p] != new_plugins[p])
    if edited:
        reasons.append(f"plugin code of {_listing(edited)} changed")
    old_files, new_files = old.get("files", {}), new.get("files", {})
    files = sorted(f for f in new_files.keys() | old_files.keys() if old_files.get(f) != new_files.get(f))
    if files and sorted(old_files.values()) == sorted(new_files.values()):
        reasons.append(f"the same input files are now recorded under other names ({_listing(sorted(new_files))})")
    elif files:
        reasons.append(f"input file {_listing(files)} changed")
    if old.get("stage_version") != new.get("stage_version"):
        reasons.append("the stage's implementation version changed")
    return "; ".join(reasons) or "inputs changed"
