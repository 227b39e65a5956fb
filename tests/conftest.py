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


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT built locally from a config (random weights, MiniLM's tokenizer)."""
    from tests.assets.tiny_encoder import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


def tiny_model_overrides(model: Path) -> tuple[str, ...]:
    """Overrides that make the tiny recipe train the tiny encoder quickly (seconds, not minutes)."""
    return (
        f"trainer.model={model}",
        "trainer.epochs=3",
        "trainer.lr=2e-3",
        "trainer.batch_size=16",
        "generate.samples_per_intent=60",
    )


def assert_route_row(row: dict, result: object) -> None:
    """A JSON line of ``intentcraft predict`` says what ``Router.predict`` gives for the same text."""
    want = result.to_dict()  # type: ignore[attr-defined]
    assert set(row) == set(want)
    exact = ("text", "intent", "predicted", "decision", "reason", "error")
    assert {k: row[k] for k in exact} == {k: want[k] for k in exact}
    assert row["confidence"] == pytest.approx(want["confidence"], abs=1e-6)
    assert [label for label, _ in row["runners_up"]] == [label for label, _ in want["runners_up"]]
    assert [p for _, p in row["runners_up"]] == pytest.approx([p for _, p in want["runners_up"]], abs=1e-6)


def llm_base_overrides(url: str) -> tuple[str, ...]:
    """Point both models of ``tests/assets/recipes/tiny_llm.yaml`` at the loopback server at ``url``."""
    return tuple(f"generate.generators.llm.models.{index}.api_base={url}" for index in range(2))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory; relative ``outputs/`` lands here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m framework ARGS`` in ``cwd`` and capture its output."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        check=False,
    )


def make_distribution(
    site: Path, name: str, package: str, source: str, group: str, entry: str, more: dict[str, str] | None = None
) -> None:
    """An installed-looking distribution ``name`` in ``site`` (put it on PYTHONPATH): one package whose
    ``__init__.py`` is ``source``, and one entry point ``entry = package`` in ``group``; ``more`` adds an entry
    point per group, ``{group: "entry = module"}``, for modules of the package the test writes itself."""
    import textwrap

    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(textwrap.dedent(source))
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    groups = {group: f"{entry} = {package}", **(more or {})}
    (info / "entry_points.txt").write_text("".join(f"[{g}]\n{line}\n" for g, line in groups.items()))
