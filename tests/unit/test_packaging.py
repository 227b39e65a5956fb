"""The package list, the CLI's stage names and the light runtime stay in step with the code."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from framework.cli import STAGE_NAMES
from framework.stages import STAGES
from tests.conftest import REPO


def test_every_python_package_directory_is_packaged() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for root, prefix in (("framework", "framework"), ("plugins", "framework.plugins")):
        for init in (REPO / root).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / root).parts
            found.add(".".join((prefix, *parts)))
    assert found == listed


def test_cli_stage_names_match_the_stage_graph() -> None:
    assert list(STAGE_NAMES) == [stage.name for stage in STAGES]


def test_cli_help_does_not_import_torch() -> None:
    code = "import sys, framework.cli; framework.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"
