"""The per-stage lock and the staging clean-up that make several processes safe on one ``outputs/``.

Other processes are real subprocesses here: ``flock`` and pid liveness are what is under test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from framework.errors import UserInputError
from framework.llm.journal import Journal
from framework.pipeline.runner import Pipeline, StagePlan, State
from framework.pipeline.stage_lock import lock_holder, lock_path, make_staging_dir, remove_stale_staging, stage_lock
from framework.pipeline.targets import target_stages
from tests.conftest import REPO, TINY, load_recipe

ALL_STAGES = target_stages("classifier")
STAGES = ALL_STAGES[:3]  # generate, validate, split

# A helper process: does one thing with a directory, prints "ready", then waits for a line on stdin.
HOLD_LOCK = "with stage_lock(target):\n    print('ready', flush=True)\n    sys.stdin.readline()\n"
HOLD_STAGING = (
    "staging = make_staging_dir(target)\n(staging / 'part.bin').write_bytes(b'x' * 1000)\n"
    "print(staging, flush=True)\nsys.stdin.readline()\n(staging / 'late.bin').write_bytes(b'y')\n"
    "publish_dir(staging, target)\n"
)
MAKE_STAGING_AND_EXIT = "print(make_staging_dir(target), flush=True)\n"


class Helper:
    """A subprocess running one of the snippets above on ``target``; ``said`` is its first line."""

    def __init__(self, snippet: str, target: Path) -> None:
        prelude = (
            "import sys\nfrom pathlib import Path\n"
            "from framework.io import publish_dir\n"
            "from framework.pipeline.stage_lock import make_staging_dir, stage_lock\n"
            f"target = Path({str(target)!r})\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", prelude + snippet],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.said = self.process.stdout.readline().strip()
        assert self.said, "the helper process died before it was ready"

    @property
    def pid(self) -> int:
        return self.process.pid

    def go_on(self) -> int:
        """Let it finish; returns its exit code."""
        self.process.communicate("\n", timeout=30)
        return self.process.returncode

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def helpers() -> Iterator[list[Helper]]:
    started: list[Helper] = []
    yield started
    for helper in started:
        if helper.process.poll() is None:
            helper.kill()


def start(helpers: list[Helper], snippet: str, target: Path) -> Helper:
    helper = Helper(snippet, target)
    helpers.append(helper)
    return helper


def run_pipeline(outputs: Path, waits: list[int | None] | None = None) -> dict[str, str]:
    """Run the data stages; returns {stage: action} and appends each wait's holder pid to ``waits``."""
    actions: dict[str, str] = {}
    seen = waits if waits is not None else []
    Pipeline(STAGES, load_recipe(TINY), outputs).run(
        lambda plan, action: actions.__setitem__(plan.stage.name, action),
        on_wait=lambda plan, pid: seen.append(pid),
    )
    return actions


def generate_plan(outputs: Path) -> StagePlan:
    return Pipeline(STAGES, load_recipe(TINY), outputs).plan()[0]


def test_the_lock_file_names_its_holder_while_held_and_is_removed_on_release(tmp_path: Path) -> None:
    final = tmp_path / "cache" / "generate" / "abc"
    with stage_lock(final):
        assert lock_path(final).read_text() == f"{os.getpid()}\n"
        assert lock_holder(final) is None, "this process is not 'another run'"
    assert sorted(final.parent.iterdir()) == [], "no lock file is left in the cache"


def test_a_second_process_waits_once_and_gets_the_lock_when_it_is_released(
    tmp_path: Path, helpers: list[Helper]
) -> None:
    final = tmp_path / "abc"
    holder = start(helpers, HOLD_LOCK, final)
    assert lock_holder(final) == holder.pid
    waits: list[int | None] = []

    def on_wait(pid: int | None) -> None:
        waits.append(pid)
        threading.Timer(0.3, holder.go_on).start()  # released a moment after we started waiting

    with stage_lock(final, on_wait):
        assert holder.process.wait(timeout=30) == 0, "the lock is only ours once the holder let go"
        # the holder removed the file it held; the lock we hold is on the file now at that name
        assert lock_path(final).read_text() == f"{os.getpid()}\n"
    assert waits == [holder.pid]


def test_a_killed_holder_never_blocks_the_next_run(tmp_path: Path, helpers: list[Helper]) -> None:
    final = tmp_path / "abc"
    holder = start(helpers, HOLD_LOCK, final)
    holder.kill()
    assert lock_path(final).read_text().strip() == str(holder.pid), "a killed holder leaves its pid behind"
    assert lock_holder(final) is None, "but it is no holder"
    waits: list[int | None] = []
    with stage_lock(final, waits.append):
        assert lock_path(final).read_text() == f"{os.getpid()}\n"
    assert waits == []


def test_status_shows_a_stage_another_process_computes_without_taking_its_lock(
    tmp_path: Path, helpers: list[Helper]
) -> None:
    plan = generate_plan(tmp_path)
    holder = start(helpers, HOLD_LOCK, plan.directory)
    plans = Pipeline(STAGES, load_recipe(TINY), tmp_path).plan()  # would hang here if it took the lock
    assert plans[0].state is State.PARTIAL
    assert plans[0].reason.startswith(f"running in pid {holder.pid}")
    assert [p.state for p in plans[1:]] == [State.MISSING, State.MISSING]


def test_a_run_waits_for_a_stage_another_process_computes_and_reuses_what_it_published(
    tmp_path: Path, helpers: list[Helper]
) -> None:
    run_pipeline(tmp_path / "elsewhere")  # the output the other process will publish, computed beforehand
    outputs = tmp_path / "shared"
    plan = generate_plan(outputs)
    holder = start(helpers, HOLD_LOCK, plan.directory)
    waits: list[int | None] = []
    results: list[dict[str, str]] = []
    worker = threading.Thread(target=lambda: results.append(run_pipeline(outputs, waits)))
    worker.start()
    while not waits and worker.is_alive():
        worker.join(0.05)
    assert waits == [holder.pid]
    shutil.copytree(tmp_path / "elsewhere" / "cache" / "generate" / plan.fingerprint, plan.directory)
    assert holder.go_on() == 0
    worker.join(60)
    assert results == [{"generate": "cached", "validate": "ran", "split": "ran"}]


def test_a_run_computes_the_stage_when_the_process_it_waited_for_published_nothing(
    tmp_path: Path, helpers: list[Helper]
) -> None:
    holder = start(helpers, HOLD_LOCK, generate_plan(tmp_path).directory)
    threading.Timer(0.5, holder.kill).start()
    waits: list[int | None] = []
    assert run_pipeline(tmp_path, waits) == {"generate": "ran", "validate": "ran", "split": "ran"}
    assert waits == [holder.pid]


def test_a_live_process_staging_dir_survives_another_process_stage_run(tmp_path: Path, helpers: list[Helper]) -> None:
    """A process building another fingerprint of the same stage keeps its staging dir and publishes it."""
    other = tmp_path / "cache" / "generate" / "0123456789abcdef0123"
    writer = start(helpers, HOLD_STAGING, other)
    staging = Path(writer.said)
    assert staging.parent == other.parent and f"staging-{writer.pid}@" in staging.name
    assert run_pipeline(tmp_path)["generate"] == "ran"  # its clean-up runs in cache/generate
    assert (staging / "part.bin").stat().st_size == 1000
    assert writer.go_on() == 0
    assert sorted(p.name for p in other.iterdir()) == ["late.bin", "part.bin"]


def test_staging_dirs_of_dead_processes_are_removed_and_other_hosts_are_left_alone(
    tmp_path: Path, helpers: list[Helper]
) -> None:
    parent = tmp_path / "cache" / "generate"
    dead = start(helpers, MAKE_STAGING_AND_EXIT, parent / "0123456789abcdef0123")
    assert dead.go_on() == 0
    remote = parent / f".0123456789abcdef0123.staging-{dead.pid}@some_other_host-x1"
    remote.mkdir()
    assert run_pipeline(tmp_path)["generate"] == "ran"
    assert not Path(dead.said).exists()
    assert remote.is_dir(), "a pid from another host says nothing about liveness here"


def test_remove_stale_staging_takes_the_held_name_and_keeps_live_ones(tmp_path: Path) -> None:
    mine = make_staging_dir(tmp_path / "fp1")
    legacy = tmp_path / ".fp1.staging-abc123"  # the naming before pids, or one found while holding fp1's lock
    legacy.mkdir()
    other = tmp_path / ".fp2.staging-k9"
    other.mkdir()
    assert remove_stale_staging(tmp_path) == 0, "a live pid (ours) and names without one are kept"
    assert remove_stale_staging(tmp_path, held="fp1") == 2
    assert not mine.exists() and not legacy.exists() and other.exists()


def test_a_journal_has_one_owner_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "gen.jsonl"
    with Journal(path) as owner:
        owner.append({"key": "a", "rows": ["x"]})
        with pytest.raises(UserInputError, match="being written by another process"):
            Journal(path)
    with Journal(path) as next_owner:
        assert set(next_owner.records) == {"a"}
