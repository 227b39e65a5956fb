"""Where the library defaults (``conf/``) and the shipped recipes (``recipes/``) live."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent


def conf_dir() -> Path:
    """The library defaults: ``$INTENTCRAFT_CONF`` or ``conf/`` beside the package."""
    return Path(os.environ.get("INTENTCRAFT_CONF", PROJECT_ROOT / "conf")).resolve()


def shipped_recipes_dir() -> Path:
    """The recipes that ship with intentcraft (``recipes/`` beside the package)."""
    return (PROJECT_ROOT / "recipes").resolve()


def recipe_dirs(cwd: Path | None = None) -> list[Path]:
    """Directories searched for ``recipe=NAME``: ``./recipes`` first, then the shipped ones."""
    cwd = Path.cwd() if cwd is None else cwd
    found: list[Path] = []
    for candidate in (cwd / "recipes", shipped_recipes_dir()):
        resolved = candidate.resolve()
        if resolved.is_dir() and resolved not in found:
            found.append(resolved)
    return found
