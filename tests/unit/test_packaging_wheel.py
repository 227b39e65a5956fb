"""A built wheel and sdist carry everything the installed CLI reads, and paths.py finds the installed copy.

The wheel and sdist are built offline from a copy of the project (setuptools' PEP 517 hooks, no build
isolation), so nothing is written into the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from framework.errors import UserInputError
from framework.paths import conf_dir, recipe_dirs, shipped_recipes_dir
from tests.conftest import REPO

# Where each top-level source folder lands inside the installed package.
PACKAGE_LAYOUT = {
    "framework": "framework",
    "plugins": "framework/plugins",
    "conf": "framework/_conf",
    "recipes": "framework/_recipes",
}
PROJECT_FILES = ("pyproject.toml", "README.md", "MANIFEST.in")


def _source_files(folder: str) -> list[Path]:
    """Every file under ``REPO/folder`` (relative to it), bytecode caches left out."""
    root = REPO / folder
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def _build(hook: str, project: Path, out: Path) -> Path:
    """Run setuptools' PEP 517 ``hook`` (build_wheel or build_sdist) in ``project``; the file it wrote."""
    code = f"import sys; from setuptools import build_meta; print(build_meta.{hook}(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=project, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{hook} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return out / done.stdout.strip().splitlines()[-1]


def _wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if ".dist-info/" not in name}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A wheel built straight from a copy of the project, its sdist, and a wheel built from that sdist."""
    tmp = tmp_path_factory.mktemp("packaging")
    project = tmp / "project"
    for folder in PACKAGE_LAYOUT:
        shutil.copytree(REPO / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in PROJECT_FILES:
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, project / name)
    wheel = _build("build_wheel", project, tmp / "wheel")
    sdist = _build("build_sdist", project, tmp / "sdist")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "unpacked", filter="data")
    (unpacked,) = (tmp / "unpacked").iterdir()
    from_sdist = _build("build_wheel", unpacked, tmp / "wheel-from-sdist")
    return {"wheel": wheel, "sdist": sdist, "from_sdist": from_sdist}


def test_wheel_holds_every_source_conf_and_recipe_file(built: dict[str, Path]) -> None:
    names = _wheel_names(built["wheel"])
    expected = {
        f"{target}/{path.as_posix()}" for folder, target in PACKAGE_LAYOUT.items() for path in _source_files(folder)
    }
    assert {n for n in expected if n.startswith("framework/_conf/")}, "conf/ has no files to check"
    assert {n for n in expected if n.startswith("framework/_recipes/intents/")}, "recipes/intents/ has no files"
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}: add them to [tool.setuptools.package-data] in pyproject.toml"
    extra = sorted(names - expected)
    assert not extra, f"the wheel holds files that are not in the source tree: {extra}"


def test_wheel_built_from_the_sdist_equals_the_direct_wheel(built: dict[str, Path]) -> None:
    assert _wheel_names(built["from_sdist"]) == _wheel_names(built["wheel"])


def test_unpacked_wheel_runs_from_outside_the_checkout(built: dict[str, Path], tmp_path: Path) -> None:
    """The installed layout alone (no checkout, no ./recipes) lists and validates the shipped recipes."""
    site = tmp_path / "site"
    with zipfile.ZipFile(built["wheel"]) as archive:
        archive.extractall(site)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("INTENTCRAFT_CONF", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)  # ahead of the editable install's finder, so this copy is imported
    env["COLUMNS"] = "1000"  # one line per message: paths are not wrapped

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "framework", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"intentcraft {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import framework.paths as p; print(p.conf_dir()); print(p.shipped_recipes_dir())"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where == [str(site / "framework" / "_conf"), str(site / "framework" / "_recipes")]
    assert set(cli("recipes").split()) >= {"code_search", "banking77", "support_desk", "code_search_llm"}
    assert f"OK {site / 'framework' / '_recipes' / 'code_search.yaml'}:" in cli("validate", "recipe=code_search")


def test_paths_prefer_the_installed_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTENTCRAFT_CONF", raising=False)
    package = tmp_path / "framework"
    for folder in ("_conf", "_recipes"):
        (package / folder).mkdir(parents=True)
    (package / "_conf" / "intentcraft.yaml").write_text("{}\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "intentcraft.yaml").write_text("{}\n")
    (tmp_path / "recipes").mkdir()
    assert conf_dir(package) == package / "_conf"
    assert shipped_recipes_dir(package) == package / "_recipes"


def test_paths_fall_back_to_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTENTCRAFT_CONF", raising=False)
    package = tmp_path / "framework"
    package.mkdir()
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "intentcraft.yaml").write_text("{}\n")
    assert conf_dir(package) == tmp_path / "conf"
    assert shipped_recipes_dir(package) == tmp_path / "recipes"
    assert conf_dir() == REPO / "conf"  # this checkout (an editable install) has no framework/_conf


def test_intentcraft_conf_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTENTCRAFT_CONF", str(tmp_path))
    assert conf_dir() == tmp_path


def test_missing_defaults_are_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTENTCRAFT_CONF", raising=False)
    (tmp_path / "framework").mkdir()
    with pytest.raises(UserInputError, match="INTENTCRAFT_CONF") as caught:
        conf_dir(tmp_path / "framework")
    assert "\n" not in str(caught.value)


def test_local_recipes_come_before_the_shipped_ones(tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    assert recipe_dirs(tmp_path) == [tmp_path / "recipes", shipped_recipes_dir()]
