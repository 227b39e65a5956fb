"""Every benchmark script still imports and parses its arguments against today's framework (they run by hand,
so nothing else would notice an import they lost)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = sorted(path.name for path in (REPO / "bench").glob("*.py") if not path.name.startswith("_"))


def test_the_benchmarks_are_all_here() -> None:
    assert {"bench_router.py", "bench_export.py", "bench_latency.py", "bench_llm.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_script_imports_and_shows_its_help(script: str) -> None:
    done = subprocess.run(
        [sys.executable, f"bench/{script}", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
