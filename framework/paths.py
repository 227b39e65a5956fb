"""Where the library defaults (``conf/``) and the shipped recipes (``recipes/``) live."""

from __future__ import annotations

import os
from pathlib import Path

from framework.errors import UserInputError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
# An installed package (wheel or sdist) carries conf/ and recipes/ inside it as framework/_conf and
# framework/_recipes (see pyproject.toml); a source checkout or editable install has them beside the package.
INSTALLED_CONF = "_conf"
INSTALLED_RECIPES = "_recipes"


def _data_dir(installed: str, checkout: str, package_dir: Path) -> Path:
    """``framework/<installed>`` when it exists (an installed package), else ``<checkout>`` beside the package."""
    inside = package_dir / installed
    return (inside if inside.is_dir() else package_dir.parent / checkout).resolve()


def conf_dir(package_dir: Path | None = None) -> Path:
    """The library defaults: ``$INTENTCRAFT_CONF``, else the installed copy, else ``conf/`` of the checkout.

    Raises:
        UserInputError: ``$INTENTCRAFT_CONF`` is unset and neither location holds ``intentcraft.yaml``.
    """
    if os.environ.get("INTENTCRAFT_CONF"):
        return Path(os.environ["INTENTCRAFT_CONF"]).resolve()
    package_dir = PACKAGE_DIR if package_dir is None else package_dir
    found = _data_dir(INSTALLED_CONF, "conf", package_dir)
    if not (found / "intentcraft.yaml").is_file():
        raise UserInputError(
            f"intentcraft's library defaults (intentcraft.yaml) are neither in {package_dir / INSTALLED_CONF} "
            f"(an installed package) nor in {package_dir.parent / 'conf'} (a source checkout): this installation "
            "is missing its data files. Reinstall it (pip install --force-reinstall intentcraft, or make install "
            "in a checkout), or set INTENTCRAFT_CONF to a directory that holds intentcraft.yaml."
        )
    return found


def shipped_recipes_dir(package_dir: Path | None = None) -> Path:
    """The recipes that ship with intentcraft: the installed copy, else ``recipes/`` of the checkout."""
    return _data_dir(INSTALLED_RECIPES, "recipes", PACKAGE_DIR if package_dir is None else package_dir)


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
