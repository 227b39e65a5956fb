"""Shared fixtures: recipes composed for real, outputs under tmp_path, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from framework.config.check import ValidatedRecipe, check_recipe
from framework.config.compose import RecipeRef, compose_recipe

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "tests" / "assets"
TINY = ASSETS / "recipes" / "tiny.yaml"


def load_recipe(path: Path = TINY, *overrides: str) -> ValidatedRecipe:
    """Compose a recipe with Hydra and validate it, as the CLI does."""
    ref = RecipeRef(path, tuple(overrides))
    return check_recipe(compose_recipe(ref), str(path))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory; relative ``outputs/`` lands here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run ``python -m framework ARGS`` in ``cwd`` and capture its output."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
