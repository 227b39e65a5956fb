"""Package lists (data packages included), the CLI's stage names and the light runtime stay in step with the code."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.conftest import REPO

# Packages that hold only data (no __init__.py), mapped onto a top-level folder of the repository.
DATA_PACKAGES = {"framework._conf": "conf", "framework._recipes": "recipes"}


def test_every_python_package_directory_is_packaged() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"]) - set(DATA_PACKAGES)
    found = set()
    for root, prefix in (("framework", "framework"), ("plugins", "framework.plugins")):
        for init in (REPO / root).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / root).parts
            found.add(".".join((prefix, *parts)))
    assert found == listed


def test_conf_and_recipes_are_data_packages() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in DATA_PACKAGES.items():
        assert package in config["packages"]
        assert config["package-dir"][package] == folder
        assert config["package-data"][package], f"{package} ships no files"


def test_cli_help_does_not_import_torch() -> None:
    code = "import sys, framework.cli.commands; framework.cli.commands.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"
