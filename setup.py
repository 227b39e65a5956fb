"""The package list, from the directories: every Python package under ``framework/`` and, as
``framework.plugins.*``, under ``plugins/``; plus the data packages ``framework._conf`` and
``framework._recipes``. Everything else about the build is in pyproject.toml, whose ``package-dir`` maps
these names to the repository's directories; a new stage module, plugin kind or plugin ships without an edit.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
DATA_PACKAGES = ["framework._conf", "framework._recipes"]  # conf/ and recipes/: YAML only (package-data globs)


def python_packages(directory: str, name: str) -> list[str]:
    """``name`` and the dotted name of every package (a folder with ``__init__.py``) below ``directory``."""
    base = ROOT / directory
    found = (init.parent.relative_to(base).parts for init in base.rglob("__init__.py"))
    return sorted(".".join([name, *parts]) for parts in found)


def packages() -> list[str]:
    """Every package the distribution ships."""
    return [
        *python_packages("framework", "framework"),
        *python_packages("plugins", "framework.plugins"),
        *DATA_PACKAGES,
    ]


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import it for packages()
    setup(packages=packages())
