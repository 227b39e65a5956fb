"""Where the library defaults (``conf/``) and the shipped recipes (``recipes/``) live."""

from __future__ import annotations

import os
from pathlib import Path

from framework.errors import UserInputError

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


def check_outputs_dir(outputs: str | Path, key: str = "paths.outputs") -> Path:
    """``outputs`` as a path that is, or can be made, a writable directory; checked before any work.

    Walks up to the first part of the path that exists: it must be a directory this process can write
    (everything below it is created by the run).

    Raises:
        UserInputError: a part of the path is a file or device, or the directory cannot be written.
    """
    path = Path(outputs).expanduser()
    absolute = path if path.is_absolute() else Path.cwd() / path
    existing = next((p for p in (absolute, *absolute.parents) if os.path.lexists(p)), Path("/"))
    if not existing.is_dir():
        problem = f"{existing} is not a directory, so nothing can be created inside it"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is a directory this user cannot write"
    else:
        return path
    raise UserInputError(
        f"{key}={outputs} cannot be used as the output directory: {problem}. Set {key} to a directory you can "
        f"write (it is created when missing), e.g. {key}=outputs."
    )
