"""Two runs at once on one ``outputs/`` directory, through the real CLI: both finish, nothing is computed twice.

The LLM tests talk to ``tests/assets/llm_server.py`` on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from framework.pipeline.runner import Pipeline
from framework.pipeline.targets import target_stages
from tests.assets.llm_server import Faults, LLMServer, default_answer
from tests.conftest import ASSETS, REPO, TINY, llm_base_overrides, load_recipe, run_cli, tiny_model_overrides

STAGES = target_stages("classifier")

LLM_RECIPE = ASSETS / "recipes" / "tiny_llm.yaml"
LLM_RECORDS = 24  # 3 intents x 40 rows / 5 rows per request
DATA = ("run", "--until", "split")
IN_FLIGHT = 8  # tiny_llm.yaml's concurrency: the most requests run a has waiting at the gate
WAITING = "generate: waiting for another run (pid {pid}) computing this stage..."


class Run:
    """``python -m framework ARGS`` started in the background, its stderr in a file that can be read meanwhile."""

    started: ClassVar[list[Run]] = []

    def __init__(self, cwd: Path, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.stderr_path = cwd / f"{name}.stderr"
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "framework", *args],
                cwd=cwd,
                env={**os.environ, "COLUMNS": "200", **(env or {})},
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                preexec_fn=_default_sigint,
            )
        Run.started.append(self)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def finish(self, timeout: float = 240) -> str:
        """Wait for the exit; asserts exit 0 and no traceback; returns stdout."""
        stdout, _ = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, f"exit {self.process.returncode}\n{stdout[-3000:]}\n{self.stderr[-3000:]}"
        assert "Traceback" not in self.stderr
        return stdout


def _default_sigint() -> None:
    """In the child: Ctrl-C back to its default (a suite started in the background would have it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test() -> Iterator[None]:
    yield
    while Run.started:
        run = Run.started.pop()
        if run.process.poll() is None:
            run.process.kill()
            run.process.communicate(timeout=30)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def assert_published_stages_are_complete(cwd: Path, expected: dict[str, int]) -> None:
    """``expected``: stage -> how many fingerprints were published; each manifest is complete and names its dir;
    no staging dir, failed output, resume dir or lock file is left behind."""
    cache = cwd / "outputs" / "cache"
    for stage, count in expected.items():
        manifests = sorted((cache / stage).glob("*/manifest.json"))
        assert len(manifests) == count, f"{stage}: {[m.parent.name for m in manifests]}"
        for path in manifests:
            manifest = json.loads(path.read_text())
            assert manifest["status"] == "complete" and manifest["stage"] == stage
            assert manifest["fingerprint"] == path.parent.name
        leftovers = [p.name for p in (cache / stage).iterdir() if not p.name.isalnum()]  # only <fingerprint>/ dirs
        assert not leftovers, f"{stage}: {leftovers}"


def actions(stdout: str, stage: str) -> list[str]:
    return [line.split(": ")[1].split()[0] for line in stdout.splitlines() if line.startswith(f"{stage}: ")]


def test_two_identical_data_runs_at_once_compute_each_stage_once(tmp_path: Path) -> None:
    runs = [Run(tmp_path, name, *DATA, f"recipe={TINY}") for name in ("a", "b")]
    outputs = [run.finish() for run in runs]
    for stage in ("generate", "validate", "split"):
        assert sorted(actions(outputs[0], stage) + actions(outputs[1], stage)) == ["cached", "ran"], stage
    assert_published_stages_are_complete(tmp_path, {"generate": 1, "validate": 1, "split": 1})


def test_two_data_runs_differing_in_one_key_share_upstream_and_both_publish_their_own(tmp_path: Path) -> None:
    a = Run(tmp_path, "a", *DATA, f"recipe={TINY}", "split.group_by=none")
    b = Run(tmp_path, "b", *DATA, f"recipe={TINY}", "split.group_by=template")
    out_a, out_b = a.finish(), b.finish()
    for stage in ("generate", "validate"):
        assert sorted(actions(out_a, stage) + actions(out_b, stage)) == ["cached", "ran"], stage
    assert actions(out_a, "split") == actions(out_b, "split") == ["ran"]
    assert_published_stages_are_complete(tmp_path, {"generate": 1, "validate": 1, "split": 2})


class Gate:
    """A responder that holds every answer until ``open()``: the first run is kept inside its generate stage."""

    def __init__(self) -> None:
        self.opened = threading.Event()

    def __call__(self, model: str, messages: list[dict], seed: int | None = None) -> str:
        self.opened.wait(timeout=120)
        return default_answer(model, messages, seed)

    def open(self) -> None:
        self.opened.set()


def llm_args(*extra: str, url: str) -> tuple[str, ...]:
    return (*DATA, f"recipe={LLM_RECIPE}", *llm_base_overrides(url), "generate.generators.llm.timeout=120", *extra)


def test_a_second_llm_run_waits_for_the_first_and_no_record_is_requested_twice(tmp_path: Path) -> None:
    """Run b starts while run a is mid-generation (its answers held back); b says it waits, then reuses a's
    rows. A third run differing in a split key, started at the same time, waits too and requests nothing."""
    gate = Gate()
    with LLMServer(Faults(seed=3), responder=gate) as server, contextlib.ExitStack() as opens:
        opens.callback(gate.open)  # never leave the server's handlers held, even when an assert fails
        env = {"TEST_LLM_API_KEY": "sk-test-concurrent-0000"}
        a = Run(tmp_path, "a", *llm_args(url=server.url), env=env)
        wait_for(lambda: server.stats.requests > 0 or a.process.poll() is not None, "run a asks its first record")
        b = Run(tmp_path, "b", *llm_args(url=server.url), env=env)
        c = Run(tmp_path, "c", *llm_args("split.ratios={train: 0.7, eval: 0.15, test: 0.15}", url=server.url), env=env)
        for run in (b, c):  # until it says it waits (or, if it does not wait, it asks records itself, or exits)
            wait_for(
                lambda run=run: (
                    "waiting for another run" in run.stderr
                    or server.stats.requests > IN_FLIGHT
                    or run.process.poll() is not None
                ),
                "b and c wait",
            )
        gate.open()
        out_a, out_b, out_c = a.finish(), b.finish(), c.finish()
        log = server.stats.log
    assert len(log) == LLM_RECORDS, "every record was requested exactly once, by run a"
    assert len({(entry.prompt_hash, entry.seed) for entry in log}) == LLM_RECORDS
    assert actions(out_a, "generate") == ["ran"]
    assert actions(out_b, "generate") == actions(out_c, "generate") == ["cached"]
    for run in (b, c):
        assert run.stderr.count(WAITING.format(pid=a.process.pid)) == 1, run.stderr
    assert_published_stages_are_complete(tmp_path, {"generate": 1, "validate": 1, "split": 2})
    (journal,) = (tmp_path / "outputs" / "cache" / "generate").glob("*/journal/llm.jsonl")
    assert len(journal.read_text().splitlines()) == LLM_RECORDS
    assert not list((tmp_path / "outputs" / "cache" / "generate").glob("*.resume"))


def assert_exports_match_their_manifests(cwd: Path) -> None:
    for manifest in (cwd / "outputs" / "cache" / "export").glob("*/manifest.json"):
        sizes = json.loads(manifest.read_text())["export"]["sizes_bytes"]
        for name, size in sizes.items():
            assert size in {path.stat().st_size for path in manifest.parent.rglob(name)}, name


def test_two_identical_runs_through_train_and_export_at_once_train_once(tmp_path: Path, tiny_encoder: Path) -> None:
    """Where main crashed (2 of 2 tries: one run deleted the other's staging dir, FileNotFoundError on
    model.raw.onnx): one run computes each stage, the other waits and reuses it."""
    args = ("run", "--until", "export", f"recipe={TINY}", *tiny_model_overrides(tiny_encoder))
    runs = [Run(tmp_path, name, *args) for name in ("a", "b")]
    outputs = [run.finish(timeout=300) for run in runs]
    for stage in ("generate", "validate", "split", "train", "export"):
        assert sorted(actions(outputs[0], stage) + actions(outputs[1], stage)) == ["cached", "ran"], stage
    assert_published_stages_are_complete(tmp_path, {"generate": 1, "validate": 1, "split": 1, "train": 1, "export": 1})
    assert_exports_match_their_manifests(tmp_path)


def test_two_runs_differing_in_an_export_key_build_both_exports_side_by_side(
    tmp_path: Path, tiny_encoder: Path
) -> None:
    """One trains while the other waits; then both export into one cache directory at the same time."""
    model = tiny_model_overrides(tiny_encoder)
    a = Run(tmp_path, "a", "run", "--until", "export", f"recipe={TINY}", *model)
    b = Run(tmp_path, "b", "run", "--until", "export", f"recipe={TINY}", *model, "export.parity_rows=16")
    out_a, out_b = a.finish(timeout=300), b.finish(timeout=300)
    assert sorted(actions(out_a, "train") + actions(out_b, "train")) == ["cached", "ran"]
    assert actions(out_a, "export") == actions(out_b, "export") == ["ran"]
    assert_published_stages_are_complete(tmp_path, {"generate": 1, "validate": 1, "split": 1, "train": 1, "export": 2})
    assert_exports_match_their_manifests(tmp_path)


def test_a_waiting_run_shows_in_status_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """While another process holds generate's lock: ``status`` answers at once (PARTIAL, running in pid N) and
    a waiting run ends on Ctrl-C with exit 130 and no traceback."""
    generate = Pipeline(STAGES, load_recipe(TINY), tmp_path / "outputs").plan()[0].directory
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from framework.pipeline.stage_lock import stage_lock\nfrom pathlib import Path\n"
            f"with stage_lock(Path({str(generate)!r})):\n    print('held', flush=True)\n    input()\n",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        run = Run(tmp_path, "a", *DATA, f"recipe={TINY}")
        wait_for(lambda: "waiting for another run" in run.stderr or run.process.poll() is not None, "run a waits")
        status = run_cli("status", f"recipe={TINY}", cwd=tmp_path, timeout=60)
        assert status.returncode == 0 and f"running in pid {holder.pid}" in status.stdout, status.stdout
        run.process.send_signal(signal.SIGINT)
        run.process.communicate(timeout=60)
        assert run.process.returncode == 130
        assert "Traceback" not in run.stderr and run.stderr.count(WAITING.format(pid=holder.pid)) == 1
        assert not generate.exists()
    finally:
        holder.kill()
        holder.communicate(timeout=30)
