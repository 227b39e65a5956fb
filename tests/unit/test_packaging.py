"""Package lists (data packages included), the CLI's stage names and the light runtime stay in step with the code."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from types import ModuleType

from tests.conftest import REPO

# Packages that hold only data (no __init__.py), mapped onto a top-level folder of the repository.
DATA_PACKAGES = {"framework._conf": "conf", "framework._recipes": "recipes"}


def _setup_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("intentcraft_setup", REPO / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not as __main__: defines packages() without building
    return module


def test_the_package_list_is_every_package_directory_and_no_hand_kept_list() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "packages" not in config, "setup.py derives the package list from the directories"
    found = set()
    for root, prefix in (("framework", "framework"), ("plugins", "framework.plugins")):
        for init in (REPO / root).rglob("__init__.py"):
            found.add(".".join((prefix, *init.parent.relative_to(REPO / root).parts)))
    listed = _setup_module().packages()
    assert len(listed) == len(set(listed))
    assert set(listed) == found | set(DATA_PACKAGES)
    assert {"framework.stages", "framework.pipeline", "framework.plugins.trainers"} <= found


def test_conf_and_recipes_are_data_packages() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(_setup_module().DATA_PACKAGES) == set(DATA_PACKAGES)
    for package, folder in DATA_PACKAGES.items():
        assert config["package-dir"][package] == folder
        assert config["package-data"][package], f"{package} ships no files"


def test_cli_help_does_not_import_torch() -> None:
    code = "import sys, framework.cli.commands; framework.cli.commands.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"
