"""LLM generation under kill -9 and under a fault storm, through the real CLI against the loopback server."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.assets.llm_server import Faults, LLMServer
from tests.conftest import ASSETS, llm_base_overrides, run_cli

RECIPE = ASSETS / "recipes" / "tiny_llm.yaml"
KEY = "sk-test-resilience-0000"
pytestmark = pytest.mark.slow


def cli_args(server: LLMServer, *overrides: str) -> list[str]:
    return ["run", "--until", "generate", f"recipe={RECIPE}", *overrides, *llm_base_overrides(server.url)]


def env_for(server: LLMServer) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "TEST_LLM_API_KEY": KEY}


def journal_lines(cwd: Path) -> list[str]:
    """Lines of the live journal (in the resume directory), or of the published one once complete."""
    found = list((cwd / "outputs" / "cache" / "generate").glob("*.resume/llm.jsonl"))
    found = found or list((cwd / "outputs" / "cache" / "generate").glob("*/journal/llm.jsonl"))
    return found[0].read_text().splitlines() if found else []


def answered_pairs(lines: list[str]) -> set[tuple[str, int]]:
    """(prompt hash, seed) of every request that finished records made.

    A kill -9 can land inside the write of the last line (Linux ends a write early at a page boundary when the
    process gets SIGKILL). That torn line is no finished record: the journal cuts it off on reopening and its
    record runs again. Only the last line may be torn.
    """
    pairs = set()
    for number, line in enumerate(lines, start=1):
        try:
            steps = json.loads(line)["steps"]
        except json.JSONDecodeError:
            assert number == len(lines), f"journal line {number} of {len(lines)} is not JSON"
            continue
        for step in steps:
            pairs.add((step["request"]["prompt_hash"], step["request"]["seed"]))
    return pairs


def published(cwd: Path, name: str) -> list[dict]:
    (path,) = (cwd / "outputs" / "cache" / "generate").glob(f"*/{name}")
    return [json.loads(line) for line in path.read_text().splitlines()]


def comparable(row: dict) -> dict:
    """A published row without what legitimately differs between two runs of the same records: the request's
    ``latency_ms`` (wall time). Everything else (id, text, intent, model, axes, record, seed, prompt hash,
    attempts) is decided by the recipe and the server's answer to the same prompt and seed."""
    return {**row, "provenance": {k: v for k, v in row["provenance"].items() if k != "latency_ms"}}


def _default_sigint() -> None:
    """In the child: Ctrl-C back to its default. A shell without job control starts background jobs with SIGINT
    ignored, and an ignored SIGINT is inherited, so a suite started with ``&`` would send a Ctrl-C nobody hears."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_once(cwd: Path, server: LLMServer, rng: random.Random, overrides: list[str], sig: int) -> bool:
    """Start a run and send ``sig`` once the journal has grown by a random 1-15 records (or the run ends).

    Returns whether the signal was sent. A run interrupted must have died of it (-SIGKILL) or reported it (130
    for Ctrl-C); a run that ended before the signal must have finished (exit 0, journal published). Any other
    ending (an early error exit) fails the test."""
    start = len(journal_lines(cwd))
    target = start + rng.randint(1, 15)
    process = subprocess.Popen(
        [sys.executable, "-m", "framework", *cli_args(server, *overrides)],
        cwd=cwd,
        env=env_for(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 120
    while process.poll() is None and len(journal_lines(cwd)) < target and time.monotonic() < deadline:
        time.sleep(0.01)
    sent = process.poll() is None
    if sent:
        process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    seen = (
        f"signal {sig} sent: {sent}; journal lines {start} -> {len(journal_lines(cwd))} (target {target}); "
        f"exit {process.returncode}\nstdout: {stdout[-2000:]}\nstderr: {stderr[-2000:]}"
    )
    finished = any((cwd / "outputs" / "cache" / "generate").glob("*/journal/llm.jsonl"))
    if sent and not (process.returncode == 0 and finished):  # exit 0: it ended between poll() and the signal
        assert process.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), seen
    else:
        assert process.returncode == 0 and finished, seen
    assert "Traceback" not in stderr, seen
    return sent


def test_kill_9_at_20_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """A 2,000-row run killed 20 times (and once Ctrl-C) resumes to exactly a clean run's rows."""
    overrides = ["generate.samples_per_intent=667", "generate.generators.llm.concurrency=16"]
    rng = random.Random(2026)
    with LLMServer(Faults(latency=0.01, latency_jitter=0.03, seed=1)) as server:
        clean = tmp_path / "clean"
        clean.mkdir()
        done = run_cli(*cli_args(server, *overrides), cwd=clean, env=env_for(server), timeout=300)
        assert done.returncode == 0, done.stderr
        clean_rows = published(clean, "rows.jsonl")
        assert len(clean_rows) == 2001

        resumed = tmp_path / "resumed"
        resumed.mkdir()
        interrupted = 0
        for attempt in range(21):
            before = answered_pairs(journal_lines(resumed))
            seen = len(server.stats.log)
            sig = signal.SIGINT if attempt == 10 else signal.SIGKILL
            interrupted += interrupt_once(resumed, server, rng, overrides, sig)
            asked_again = {(e.prompt_hash, e.seed) for e in server.stats.log[seen:]} & before
            assert not asked_again, f"interruption {attempt}: finished records were requested again"
        assert interrupted == 21, "every run should be interrupted before it finishes"
        assert 0 < len(journal_lines(resumed)) < 402, "the interruptions should land mid-run"
        before = answered_pairs(journal_lines(resumed))
        seen = len(server.stats.log)
        final = run_cli(*cli_args(server, *overrides), cwd=resumed, env=env_for(server), timeout=300)
        assert final.returncode == 0, final.stderr
        assert not {(e.prompt_hash, e.seed) for e in server.stats.log[seen:]} & before

    lines = (next((resumed / "outputs" / "cache" / "generate").glob("*/journal/llm.jsonl"))).read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses
    keys = [record["key"] for record in records]
    assert len(keys) == len(set(keys)) == 402
    rows = published(resumed, "rows.jsonl")
    assert [row["id"] for row in rows] == [row["id"] for row in clean_rows]  # none lost, none duplicated, in order
    for row, clean_row in zip(rows, clean_rows, strict=True):  # each row is the same answer to the same record
        assert comparable(row) == comparable(clean_row), row["id"]
    assert published(resumed, "llm.errors.jsonl") == published(clean, "llm.errors.jsonl") == []
    # The published rows are exactly the journal's answers, each once: none dropped, repeated or made up.
    journaled = Counter((record["key"], text) for record in records for text in record["rows"])
    assert Counter((row["provenance"]["record"], row["text"]) for row in rows) == journaled


def test_fault_storm_completes_within_deadlines_and_concurrency(tmp_path: Path) -> None:
    """30% 429, 10% 5xx, 2% empty, 1% never answer at concurrency 32: every record ends as rows or an error."""
    timeout = 1.0
    overrides = [
        "generate.samples_per_intent=500",
        "generate.generators.llm.concurrency=32",
        f"generate.generators.llm.timeout={timeout}",
        "generate.generators.llm.max_attempts=10",
        "generate.generators.llm.backoff_base=0.05",
    ]
    storm = Faults(rate_limit=0.30, retry_after=1, server_error=0.10, empty=0.02, hang=0.01, latency=0.01, seed=11)
    with LLMServer(storm) as server:
        started = time.monotonic()
        result = run_cli(*cli_args(server, *overrides), cwd=tmp_path, env=env_for(server), timeout=600)
        elapsed = time.monotonic() - started
        stats = server.stats
    assert result.returncode == 0, result.stderr
    for outcome in ("rate_limit", "server_error", "empty", "hang", "ok"):
        assert stats.by_outcome[outcome] > 0, f"the storm produced no {outcome}"
    assert stats.max_in_flight <= 32

    records = [json.loads(line) for line in journal_lines(tmp_path)]
    assert sorted(r["key"] for r in records) == sorted({r["key"] for r in records}) and len(records) == 300
    rows = published(tmp_path, "rows.jsonl")
    errors = published(tmp_path, "llm.errors.jsonl")
    assert len(rows) == 5 * sum(r["status"] == "ok" for r in records)
    assert len(errors) == sum(r["status"] == "error" for r in records)
    attempts = [
        attempt
        for record in records
        for step in record["steps"]
        for attempt in [*step.get("failed_attempts", []), *step.get("response", {}).get("failed_attempts", [])]
    ]
    latencies = [a["latency_ms"] for a in attempts] + [
        s["response"]["latency_ms"] for r in records for s in r["steps"] if "response" in s
    ]
    assert max(latencies) <= (timeout + 1) * 1000, "an attempt outlived its deadline by more than a second"
    assert any(a["kind"] == "timeout" for a in attempts)
    assert any(a["kind"] == "rate_limit" and a["retry_after"] == 1 for a in attempts)
    manifest = json.loads(next((tmp_path / "outputs" / "cache" / "generate").glob("*/manifest.json")).read_text())
    assert manifest["generators"]["llm"]["max_in_flight"] <= 32
    assert elapsed < 300
