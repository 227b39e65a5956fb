"""The LLM core: journal, model roulette, one attempt through litellm, and the dispatcher against a loopback server."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import itertools
import json
import os
import random
import time
from collections.abc import Generator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from framework.data.seeding import derive_seed
from framework.errors import UserInputError
from framework.llm.client import AttemptError, attempt, classify, litellm_module, parse_answer, retry_after_seconds
from framework.llm.dispatcher import Dispatcher, DispatchSettings, TaskOutcome, TaskRecord
from framework.llm.journal import Journal
from framework.llm.records import Queries
from framework.llm.requests import LLMRequest, LLMResponse, RequestFailed, TaskError, request
from framework.llm.roulette import ModelRoulette, ModelSpec, RateLimiter
from tests.assets.llm_server import Faults, LLMServer

KEY_ENV = "INTENTCRAFT_TEST_LLM_KEY"
A, B = "openai/fake-a", "openai/fake-b"
FAST = DispatchSettings(concurrency=4, timeout=2.0, max_attempts=3, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture(scope="module", autouse=True)
def _warm_litellm() -> None:
    """Import litellm and make one real call first, so its one-time lazy setup (seconds) never counts in a timing."""
    litellm = litellm_module()
    with LLMServer() as server:
        asyncio.run(
            litellm.acompletion(
                model=A,
                api_base=server.url,
                api_key="sk-warm-up",
                max_retries=0,
                messages=[{"role": "user", "content": "hi"}],
            )
        )


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fake key in the test's own env var; litellm's default variable is unset so nothing else leaks in."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv(KEY_ENV, "sk-test-0123456789abcdef")
    return "sk-test-0123456789abcdef"


def spec(server: LLMServer, name: str = A, weight: float = 1.0) -> ModelSpec:
    return ModelSpec(name, weight=weight, api_key_env=KEY_ENV, api_base=server.url)


def run_dispatch(
    roulette: ModelRoulette,
    settings: DispatchSettings,
    records: list[TaskRecord],
    task: Any,
    secrets: list[str] | None = None,
) -> tuple[dict[str, TaskOutcome], Dispatcher, float]:
    """Run the dispatcher to its end; outcomes by key, the dispatcher (for stats) and the wall time."""
    dispatcher = Dispatcher(roulette, settings, secrets)
    outcomes: list[TaskOutcome] = []
    started = time.monotonic()
    asyncio.run(dispatcher.run(records, task, outcomes.append))
    elapsed = time.monotonic() - started
    by_key = {outcome.key: outcome for outcome in outcomes}
    assert len(by_key) == len(outcomes) == len(records), "every record ends exactly once"
    return by_key, dispatcher, elapsed


def ask(n: int, text: str = "") -> Generator[LLMRequest, LLMResponse, list[str]]:
    """A one-request task: ask for ``n`` queries and return them."""
    response = yield request(f"Write {n} queries about travel. {text}".strip(), schema=Queries)
    return list(response.parsed.queries)


# --- journal -----------------------------------------------------------------------------------------------------


def test_journal_appends_and_reloads_records(tmp_path: Path) -> None:
    """Appended records are one JSON line each and come back keyed on reopening; the directory is created."""
    path = tmp_path / "deep" / "gen.jsonl"
    with Journal(path) as journal:
        assert not journal.records and not journal.dropped_torn_line
        journal.append({"key": "a", "rows": ["x", "y"]})
        journal.append({"key": "b", "rows": [], "error": {"type": "auth"}})
        assert "a" in journal and "c" not in journal
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "b"]
    with Journal(path) as reopened:
        assert reopened.records == {
            "a": {"key": "a", "rows": ["x", "y"]},
            "b": {"key": "b", "rows": [], "error": {"type": "auth"}},
        }
        assert not reopened.dropped_torn_line


def test_journal_drops_a_torn_last_line_and_stays_appendable(tmp_path: Path) -> None:
    """Bytes after the last newline are cut off on open; the next append leaves a fully parseable file."""
    path = tmp_path / "gen.jsonl"
    good = b'{"key":"a","rows":["x"]}\n{"key":"b","rows":["y"]}\n'
    path.write_bytes(good + b'{"key":"c","ro')
    with Journal(path) as journal:
        assert journal.dropped_torn_line
        assert set(journal.records) == {"a", "b"}
        assert path.read_bytes() == good
        journal.append({"key": "c", "rows": ["z"]})
    records = [json.loads(line) for line in path.read_bytes().split(b"\n") if line]
    assert [r["key"] for r in records] == ["a", "b", "c"]
    assert path.read_bytes().endswith(b"\n")
    with Journal(path) as again:
        assert not again.dropped_torn_line and set(again.records) == {"a", "b", "c"}


def test_journal_drops_an_unparseable_last_line_that_has_its_newline(tmp_path: Path) -> None:
    """A last line cut mid-write but followed by a newline is dropped too (its record runs again)."""
    path = tmp_path / "gen.jsonl"
    good = b'{"key":"a"}\n'
    path.write_bytes(good + b'{"key":"b","rows":[\n')
    with Journal(path) as journal:
        assert journal.dropped_torn_line and set(journal.records) == {"a"}
    assert path.read_bytes() == good


def test_journal_bad_middle_line_is_a_user_error_naming_file_and_line(tmp_path: Path) -> None:
    """Only the last line can be torn by a crash; garbage in the middle stops with the file and line number."""
    path = tmp_path / "gen.jsonl"
    original = b'{"key":"a"}\nnot json at all\n{"key":"c"}\n'
    path.write_bytes(original)
    with pytest.raises(UserInputError) as info:
        Journal(path)
    assert str(path) in str(info.value) and "line 2" in str(info.value)
    assert path.read_bytes() == original  # nothing was truncated


def test_journal_fsyncs_in_batches_and_at_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync_every=3: seven appends fsync twice (after lines 3 and 6), closing fsyncs the seventh."""
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    journal = Journal(tmp_path / "gen.jsonl", fsync_every=3, fsync_seconds=3600)
    for i in range(7):
        journal.append({"key": f"k{i}"})
        assert len(calls) == (i + 1) // 3
    assert len(calls) == 2
    journal.close()
    assert len(calls) == 3
    journal.close()  # a second close is a no-op
    assert len(calls) == 3


# --- roulette ----------------------------------------------------------------------------------------------------


def test_roulette_draws_follow_weights() -> None:
    """A 3:1 weighting gives about 75 % / 25 % of 4000 seeded draws, reproducibly."""
    roulette = ModelRoulette([ModelSpec("a", weight=3), ModelSpec("b", weight=1)])
    rng = random.Random(7)
    draws = [roulette.draw(rng) for _ in range(4000)]
    assert abs(draws.count("a") / 4000 - 0.75) < 0.03
    rng2 = random.Random(7)
    assert [roulette.draw(rng2) for _ in range(4000)] == draws


def test_roulette_rotates_in_fallback_order_and_recovers_after_cooldown() -> None:
    """Preferred while healthy; rested after N failures in a row, routed along ``fallback``; back after cooldown."""
    roulette = ModelRoulette(
        [ModelSpec("a"), ModelSpec("b"), ModelSpec("c")], fallback=["c", "b"], failures_to_rotate=2, cooldown=0.15
    )
    assert roulette.route("a").name == "a"
    assert roulette.failed("a") is False
    assert roulette.route("a").name == "a"  # one failure is not enough
    assert roulette.failed("a") is True  # the second one rests it
    assert not roulette.healthy("a")
    assert roulette.route("a").name == "c"  # first of the fallback order
    assert roulette.failed("c") is False and roulette.failed("c") is True
    assert roulette.route("a").name == "b"
    assert roulette.route("b").name == "b"
    time.sleep(0.2)
    assert roulette.healthy("a") and roulette.route("a").name == "a"


def test_roulette_success_resets_the_failure_streak() -> None:
    """Failures must be in a row: a success in between starts the count again."""
    roulette = ModelRoulette([ModelSpec("a"), ModelSpec("b")], failures_to_rotate=3, cooldown=30)
    roulette.failed("a")
    roulette.failed("a")
    roulette.succeeded("a")
    assert roulette.failed("a") is False and roulette.failed("a") is False
    assert roulette.route("a").name == "a"
    assert roulette.failed("a") is True
    assert roulette.route("a").name == "b"


def test_roulette_all_excluded_is_none_and_all_resting_picks_first_to_wake() -> None:
    """Every model excluded: None. Every model resting: the one whose rest ends first (among those allowed)."""
    roulette = ModelRoulette([ModelSpec("a"), ModelSpec("b"), ModelSpec("c")], failures_to_rotate=1, cooldown=30)
    assert roulette.route("a", exclude={"a", "b", "c"}) is None
    for name in ("b", "a", "c"):  # b rests first, so it wakes first
        assert roulette.failed(name) is True
        time.sleep(0.002)
    assert not any(roulette.healthy(name) for name in "abc")
    assert roulette.route("a").name == "b"
    assert roulette.route("c", exclude={"b"}).name == "a"
    assert roulette.route("a", exclude={"a", "b"}).name == "c"


def test_rate_limiter_spaces_requests_evenly() -> None:
    """rpm=600 is one slot every 0.1 s: five acquires take ~0.4 s, each ~0.1 s after the previous."""

    async def times(limiter: RateLimiter, n: int) -> list[float]:
        stamps = []
        for _ in range(n):
            await limiter.acquire()
            stamps.append(time.monotonic())
        return stamps

    stamps = asyncio.run(times(RateLimiter(600), 5))
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(gap >= 0.09 for gap in gaps), gaps
    assert 0.38 <= stamps[-1] - stamps[0] < 1.0

    async def together(limiter: RateLimiter) -> list[float]:
        async def one() -> float:
            await limiter.acquire()
            return time.monotonic()

        return sorted(await asyncio.gather(*(one() for _ in range(4))))

    concurrent = asyncio.run(together(RateLimiter(1200)))  # concurrent callers are spaced too (no bursts)
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(concurrent)), concurrent
    unlimited = asyncio.run(times(RateLimiter(None), 50))
    assert unlimited[-1] - unlimited[0] < 0.05


# --- client ------------------------------------------------------------------------------------------------------


def test_parse_answer_accepts_fenced_json_and_rejects_wrong_shapes() -> None:
    """Code fences are stripped; a schema mismatch or prose is a ``malformed`` attempt naming the schema."""
    fenced = '```json\n{"queries": ["book a flight", "cancel my order"]}\n```'
    assert parse_answer(fenced, Queries).queries == ["book a flight", "cancel my order"]
    assert parse_answer('```\n{"queries": ["x"]}\n```', Queries).queries == ["x"]
    assert parse_answer('  {"queries": ["y"]}  ', Queries).queries == ["y"]
    for bad in ('{"items": ["x"]}', '{"queries": []}', '{"queries": "x"}', "Sure! Here you go", '{"queries": ["x"'):
        with pytest.raises(AttemptError) as info:
            parse_answer(bad, Queries, latency_ms=12.0)
        assert info.value.kind == "malformed" and "Queries" in info.value.message
        assert info.value.latency_ms == 12.0


def _with_headers(headers: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(response=SimpleNamespace(headers=headers))


def test_retry_after_seconds_reads_ms_seconds_and_http_dates() -> None:
    """retry-after-ms wins over Retry-After; seconds and HTTP dates both work; no header gives None."""
    assert retry_after_seconds(_with_headers({"retry-after-ms": "1500", "Retry-After": "9"})) == 1.5
    assert retry_after_seconds(_with_headers({"Retry-After": "3"})) == 3.0
    assert retry_after_seconds(_with_headers({"retry-after": "0.25"})) == 0.25
    assert retry_after_seconds(_with_headers({"retry-after-ms": "nope", "Retry-After": "4"})) == 4.0
    assert retry_after_seconds(_with_headers({"Retry-After": "-5"})) == 0.0
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= retry_after_seconds(_with_headers({"Retry-After": future})) <= 31
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert retry_after_seconds(_with_headers({"Retry-After": past})) == 0.0
    assert retry_after_seconds(_with_headers({})) is None
    assert retry_after_seconds(Exception("no response at all")) is None
    assert retry_after_seconds(SimpleNamespace(headers={"Retry-After": "2"})) == 2.0  # headers on the exception


def test_retry_after_seconds_ignores_an_unparseable_header() -> None:
    """A Retry-After that is neither seconds nor a date is ignored (None), not an exception."""
    assert retry_after_seconds(_with_headers({"Retry-After": "soon"})) is None


def test_attempt_returns_an_answer_with_token_counts(api_key: str) -> None:
    """One attempt against the loopback server: parsed answer, the server's token counts, a latency."""
    with LLMServer() as server:
        answer = asyncio.run(attempt(spec(server), request("Write 4 queries", schema=Queries), 5.0, {}))
        [logged] = server.stats.log
    assert len(answer.parsed.queries) == 4
    assert json.loads(answer.text) == {"queries": answer.parsed.queries}
    assert answer.prompt_tokens >= 1 and answer.completion_tokens == len(answer.text) // 4
    assert answer.latency_ms > 0
    assert logged.model == "fake-a" and logged.outcome == "ok"
    assert logged.prompt_hash == request("Write 4 queries").prompt_hash


def _attempt_error(server: LLMServer, timeout: float = 2.0, model: ModelSpec | None = None) -> AttemptError:
    with pytest.raises(AttemptError) as info:
        asyncio.run(attempt(model or spec(server), request("Write 2 queries", schema=Queries), timeout, {}))
    return info.value


def test_attempt_rate_limit_carries_retry_after(api_key: str) -> None:
    """A 429 is kind ``rate_limit`` with the server's Retry-After (2 s), returned at once (no litellm retries).

    litellm hands back a synthetic ``response`` without headers; the provider's are in ``litellm_response_headers``.
    """
    with LLMServer(Faults(rate_limit=1.0, retry_after=2)) as server:
        started = time.monotonic()
        error = _attempt_error(server)
        assert time.monotonic() - started < 1.0
        assert server.stats.requests == 1
    assert error.kind == "rate_limit"
    assert error.retry_after == 2


def test_attempt_hard_deadline_on_a_hung_server(api_key: str) -> None:
    """A server that never answers costs the attempt ``timeout`` seconds, then kind ``timeout``."""
    with LLMServer(Faults(hang=1.0)) as server:
        started = time.monotonic()
        error = _attempt_error(server, timeout=0.5)
        elapsed = time.monotonic() - started
    assert error.kind == "timeout"
    assert 0.45 <= elapsed < 1.5
    assert error.latency_ms >= 450


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        (Faults(auth_error=True), "auth"),
        (Faults(server_error=1.0), "server_error"),
        (Faults(fail_models=frozenset({"fake-a"})), "server_error"),
        (Faults(empty=1.0), "empty"),
        (Faults(malformed=1.0), "malformed"),
    ],
)
def test_attempt_sorts_server_faults_into_kinds(api_key: str, faults: Faults, kind: str) -> None:
    """401 -> auth, 500/503 -> server_error, empty content -> empty, prose -> malformed."""
    with LLMServer(faults) as server:
        assert _attempt_error(server).kind == kind


def test_attempt_missing_api_key_is_auth_not_server_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset key env var fails locally as ``auth`` (litellm reports it as an InternalServerError)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with LLMServer() as server:
        error = _attempt_error(server)
        assert server.stats.requests == 0  # nothing was sent
    assert error.kind == "auth"


def _litellm_error(cls: Any, status: int, headers: dict[str, str] | None = None) -> Exception:
    request_ = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request_)
    return cls(message="boom\nsecond line", llm_provider="openai", model="x", response=response)


def test_classify_litellm_exceptions() -> None:
    """litellm's exception types map to kinds; Retry-After comes from the response; only the first line is kept."""
    litellm = litellm_module()
    limited = classify(_litellm_error(litellm.RateLimitError, 429, {"retry-after": "3"}), 5.0)
    assert (limited.kind, limited.retry_after, limited.latency_ms) == ("rate_limit", 3.0, 5.0)
    assert "\n" not in limited.message and "boom" in limited.message
    cases = [
        (litellm.InternalServerError, 500, "server_error"),
        (litellm.ServiceUnavailableError, 503, "server_error"),
        (litellm.AuthenticationError, 401, "auth"),
        (litellm.PermissionDeniedError, 403, "auth"),
        (litellm.BadRequestError, 400, "bad_request"),
        (litellm.NotFoundError, 404, "bad_request"),
    ]
    for cls, status, kind in cases:
        error = classify(_litellm_error(cls, status), 0.0)
        assert error.kind == kind, cls.__name__
        assert error.retry_after is None
    timeout = classify(litellm.Timeout(message="slow", model="x", llm_provider="openai"), 0.0)
    assert timeout.kind == "timeout"
    connection = classify(litellm.APIConnectionError(message="refused", llm_provider="openai", model="x"), 0.0)
    assert connection.kind == "connection"
    assert classify(RuntimeError("weird"), 0.0).kind == "error"
    assert classify(RuntimeError(""), 0.0).message == "RuntimeError"


def test_classify_survives_a_garbage_retry_after() -> None:
    """A rate limit with a junk Retry-After is still a rate_limit attempt error (without a retry delay)."""
    error = classify(_litellm_error(litellm_module().RateLimitError, 429, {"retry-after": "soon"}), 0.0)
    assert error.kind == "rate_limit" and error.retry_after is None


def test_attempt_through_litellm_mock_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    """litellm's ``mock_response`` (no HTTP at all) drives attempt(): a text answer, and mocked provider errors."""
    litellm = litellm_module()
    real = litellm.acompletion
    model = ModelSpec("openai/mock-model", api_key_env=KEY_ENV)
    monkeypatch.setenv(KEY_ENV, "sk-mock-0000")
    req = request("Write 1 queries", schema=Queries)

    monkeypatch.setattr(litellm, "acompletion", functools.partial(real, mock_response='{"queries": ["hi"]}'))
    answer = asyncio.run(attempt(model, req, 5.0, {"temperature": 0.3}))
    assert answer.parsed.queries == ["hi"]
    assert answer.prompt_tokens > 0 and answer.completion_tokens > 0

    for mocked, kind in (("litellm.RateLimitError", "rate_limit"), ("litellm.InternalServerError", "server_error")):
        monkeypatch.setattr(litellm, "acompletion", functools.partial(real, mock_response=mocked))
        with pytest.raises(AttemptError) as info:
            asyncio.run(attempt(model, req, 5.0, {}))
        assert info.value.kind == kind


# --- dispatcher --------------------------------------------------------------------------------------------------


def test_dispatch_one_request_task(api_key: str) -> None:
    """One request per record: rows, model, attempts, tokens, provenance steps and a derived seed."""
    with LLMServer() as server:
        roulette = ModelRoulette([spec(server)])
        records = [TaskRecord("r1", A, 3), TaskRecord("r2", A, 2)]
        outcomes, dispatcher, _ = run_dispatch(roulette, FAST, records, ask)
        log = server.stats.log
    first = outcomes["r1"]
    assert first.error is None and len(first.rows) == 3 and len(outcomes["r2"].rows) == 2
    assert first.model == A and first.attempts == 1 and first.tokens > 0 and first.latency_ms > 0
    [step] = first.steps
    assert step["attempts"] == 1 and step["response"]["model"] == A
    assert json.loads(step["response"]["text"])["queries"] == first.rows
    assert step["request"]["schema"] == "Queries"
    assert step["request"]["seed"] == derive_seed("r1", 0) % 2**31
    [served] = [record for record in log if record.prompt_hash == step["request"]["prompt_hash"]]
    assert served.seed == step["request"]["seed"]  # the derived seed really went to the provider
    stats = dispatcher.stats
    assert (stats.records, stats.rows, stats.errors, stats.requests, stats.retries) == (2, 5, 0, 2, 0)
    assert stats.tokens == first.tokens + outcomes["r2"].tokens


def test_dispatch_sequential_steps_feed_answers_forward(api_key: str) -> None:
    """A second request built from the first answer is sent only after the first answer came back."""

    def task(_: Any) -> Generator[LLMRequest, LLMResponse, list[str]]:
        first = yield request("Write 2 queries about banking.", schema=Queries, step="draft")
        second = yield request(f"Rewrite as 1 queries: {first.parsed.queries[0]}", schema=Queries, step="rewrite")
        return [*first.parsed.queries, *second.parsed.queries]

    with LLMServer(Faults(latency=0.02)) as server:
        outcomes, _, _ = run_dispatch(ModelRoulette([spec(server)]), FAST, [TaskRecord("r", A, None)], task)
        log = server.stats.log
    outcome = outcomes["r"]
    assert outcome.error is None and len(outcome.rows) == 3
    draft, rewrite = outcome.steps
    assert (draft["request"]["step"], rewrite["request"]["step"]) == ("draft", "rewrite")
    assert rewrite["request"]["messages"][-1]["content"].endswith(outcome.rows[0])
    assert [record.prompt_hash for record in log] == [
        draft["request"]["prompt_hash"],
        rewrite["request"]["prompt_hash"],
    ]
    assert log[1].started >= log[0].ended
    assert draft["request"]["seed"] != rewrite["request"]["seed"]
    assert outcome.attempts == 2


def test_dispatch_parallel_step_answers_come_back_in_request_order(api_key: str) -> None:
    """``yield [r1, r2, r3]`` gets answers in request order although they finish in random order."""

    def task(name: str) -> Generator[list[LLMRequest], list[LLMResponse], list[int]]:
        answers = yield [request(f"Topic {name}: write {k} queries", schema=Queries) for k in (1, 2, 3)]
        return [len(answer.parsed.queries) for answer in answers]

    names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    settings = DispatchSettings(concurrency=18, timeout=2.0, max_attempts=2, backoff_base=0.01)
    with LLMServer(Faults(latency=0.01, latency_jitter=0.15, seed=11)) as server:
        roulette = ModelRoulette([spec(server)])
        outcomes, _, _ = run_dispatch(roulette, settings, [TaskRecord(n, A, n) for n in names], task)
        log = {record.prompt_hash: record for record in server.stats.log}
    out_of_order = 0
    for name in names:
        outcome = outcomes[name]
        assert outcome.error is None and outcome.rows == [1, 2, 3]
        hashes = [step["request"]["prompt_hash"] for step in outcome.steps]
        assert [step["request"]["messages"][-1]["content"] for step in outcome.steps] == [
            f"Topic {name}: write {k} queries" for k in (1, 2, 3)
        ]
        served = [log[h] for h in hashes]
        assert max(r.started for r in served) < min(r.ended for r in served), "the three ran at once"
        ends = [r.ended for r in served]
        out_of_order += ends != sorted(ends)
    assert out_of_order > 0, "jitter should have made some answers finish out of request order"


def test_dispatch_task_error_drops_the_record(api_key: str) -> None:
    """A task raising TaskError ends with that error type and message and no rows; its step is kept."""

    def task(_: Any) -> Generator[LLMRequest, LLMResponse, list[str]]:
        yield request("Write 2 queries", schema=Queries)
        raise TaskError("off_topic", "nothing usable in the answer")

    with LLMServer() as server:
        outcomes, dispatcher, _ = run_dispatch(ModelRoulette([spec(server)]), FAST, [TaskRecord("r", A, None)], task)
    outcome = outcomes["r"]
    assert outcome.rows is None
    assert outcome.error == {"type": "off_topic", "message": "nothing usable in the answer"}
    assert len(outcome.steps) == 1 and outcome.model == A
    assert (dispatcher.stats.errors, dispatcher.stats.rows) == (1, 0)


def test_dispatch_request_failed_can_be_caught_by_the_task(api_key: str) -> None:
    """A request failing every attempt is thrown into the task, which may catch it and still return rows."""
    caught: list[RequestFailed] = []

    def task(_: Any) -> Generator[LLMRequest, LLMResponse, list[str]]:
        try:
            yield request("Write 2 queries", schema=Queries)
        except RequestFailed as failure:
            caught.append(failure)
            return [f"fallback after {failure.error_type}"]
        return ["unreachable"]

    settings = DispatchSettings(concurrency=2, timeout=2.0, max_attempts=2, backoff_base=0.01)
    with LLMServer(Faults(server_error=1.0)) as server:
        outcomes, dispatcher, _ = run_dispatch(ModelRoulette([spec(server)]), settings, [TaskRecord("r", A, 0)], task)
        assert server.stats.requests == 2
    outcome = outcomes["r"]
    assert outcome.error is None and outcome.rows == ["fallback after server_error"]
    [failure] = caught
    assert failure.error_type == "server_error" and len(failure.attempts) == 2
    [step] = outcome.steps
    assert step["error"]["type"] == "server_error" and step["attempts"] == 2
    assert [a["attempt"] for a in step["failed_attempts"]] == [1, 2]
    assert {a["kind"] for a in step["failed_attempts"]} == {"server_error"}
    assert dispatcher.stats.retries == 1 and dispatcher.stats.failures["server_error"] == 2


def test_dispatch_broken_tasks_crash_their_record_not_the_run(api_key: str) -> None:
    """Not a generator, a bad yield, a non-list return or an exception: task_crashed; other records still run."""

    def good(_: Any) -> Generator[LLMRequest, LLMResponse, list[str]]:
        return (yield from ask(2))

    def yields_text(_: Any) -> Generator[Any, Any, list[str]]:
        yield "please answer"
        return ["never"]

    def returns_text(_: Any) -> Generator[LLMRequest, LLMResponse, str]:
        response = yield request("Write 1 queries")
        return response.text

    def raises(_: Any) -> Generator[LLMRequest, LLMResponse, list[str]]:
        yield request("Write 1 queries")
        raise ValueError("task bug")

    kinds = {"plain": lambda _: ["not", "a", "generator"], "text": yields_text, "ret": returns_text, "raise": raises}

    def task(payload: str) -> Any:
        return kinds.get(payload, good)(payload)

    records = [TaskRecord(key, A, key) for key in ("ok1", "plain", "text", "ret", "raise", "ok2")]
    with LLMServer() as server:
        outcomes, dispatcher, _ = run_dispatch(ModelRoulette([spec(server)]), FAST, records, task)
    for key in ("ok1", "ok2"):
        assert outcomes[key].error is None and len(outcomes[key].rows) == 2
    for key in kinds:
        assert outcomes[key].rows is None and outcomes[key].error["type"] == "task_crashed", key
    assert "generator" in outcomes["plain"].error["message"]
    assert "request(" in outcomes["text"].error["message"]
    assert "not a list" in outcomes["ret"].error["message"]
    assert "ValueError" in outcomes["raise"].error["message"] and "task bug" in outcomes["raise"].error["message"]
    assert dispatcher.stats.errors == 4 and dispatcher.stats.records == 6


def test_dispatch_retries_through_rate_limits(api_key: str) -> None:
    """Half the attempts rate-limited: every record ends (rows or an error), with retries counted consistently."""
    settings = DispatchSettings(concurrency=8, timeout=2.0, max_attempts=6, backoff_base=0.01, backoff_max=0.02)
    records = [TaskRecord(f"r{i}", A, 1 + i % 3) for i in range(24)]
    with LLMServer(Faults(rate_limit=0.5, retry_after=0, seed=5)) as server:
        outcomes, dispatcher, _ = run_dispatch(
            ModelRoulette([spec(server)], failures_to_rotate=1000), settings, records, ask
        )
        server_stats = server.stats
    for outcome in outcomes.values():
        assert (outcome.rows is None) != (outcome.error is None)
        if outcome.error is None:
            assert len(outcome.rows) == 1 + int(outcome.key[1:]) % 3
        else:
            assert outcome.error["type"] == "rate_limit"
    stats = dispatcher.stats
    assert stats.retries > 0 and stats.failures["rate_limit"] == server_stats.by_outcome["rate_limit"] > 0
    assert stats.requests == server_stats.requests == server_stats.by_outcome["ok"] + stats.failures["rate_limit"]
    assert sum(o.error is None for o in outcomes.values()) >= 20
    retried = [o for o in outcomes.values() if o.error is None and o.attempts > 1]
    assert retried and all(len(o.steps[0]["response"]["failed_attempts"]) == o.attempts - 1 for o in retried)


def test_dispatch_honours_retry_after(api_key: str) -> None:
    """A 429 with Retry-After: 1 makes the next attempt wait 1 s (not the 0.01 s backoff)."""
    settings = DispatchSettings(concurrency=2, timeout=2.0, max_attempts=2, backoff_base=0.01, backoff_max=0.02)
    with LLMServer(Faults(rate_limit=1.0, retry_after=1)) as server:
        outcomes, _, elapsed = run_dispatch(ModelRoulette([spec(server)]), settings, [TaskRecord("r", A, 1)], ask)
    outcome = outcomes["r"]
    assert outcome.error["type"] == "rate_limit"
    assert [a["retry_after"] for a in outcome.steps[0]["failed_attempts"]] == [1.0, 1.0]
    assert elapsed >= 1.0


def test_dispatch_hard_deadline_on_hung_requests(api_key: str) -> None:
    """Every attempt hangs: two attempts of 0.5 s each, then a ``timeout`` error, well before any hang ends."""
    settings = DispatchSettings(concurrency=2, timeout=0.5, max_attempts=2, backoff_base=0.01, backoff_max=0.02)
    with LLMServer(Faults(hang=1.0)) as server:
        outcomes, _, elapsed = run_dispatch(ModelRoulette([spec(server)]), settings, [TaskRecord("r", A, 1)], ask)
        assert server.stats.by_outcome["hang"] == 2
    outcome = outcomes["r"]
    assert outcome.rows is None and outcome.error["type"] == "timeout"
    assert [a["kind"] for a in outcome.steps[0]["failed_attempts"]] == ["timeout", "timeout"]
    assert 2 * 0.5 <= elapsed < 2 * 0.5 + 0.02 + 1.0


def test_attempts_queued_for_a_slot_skip_a_model_that_started_resting(api_key: str) -> None:
    """Six records for fake-a wait for one slot; the first 500 rests fake-a, so the five queued behind it
    go to fake-b instead of each paying a failed call to the resting model."""
    with LLMServer(Faults(fail_models=frozenset({"fake-a"}))) as server:
        roulette = ModelRoulette([spec(server, A), spec(server, B)], failures_to_rotate=1, cooldown=30)
        records = [TaskRecord(f"r{i}", A, 1) for i in range(6)]
        settings = DispatchSettings(concurrency=1, timeout=2.0, max_attempts=3, backoff_base=0.01)
        outcomes, _, _ = run_dispatch(roulette, settings, records, ask)
        log = server.stats.log
    assert [record.model for record in log].count("fake-a") == 1
    assert all(outcome.error is None and outcome.model == B for outcome in outcomes.values())


def test_dispatch_rotates_away_from_a_failing_model(api_key: str) -> None:
    """fake-a always 500s: records drawn for it are answered by fake-b after one failure rests fake-a."""
    with LLMServer(Faults(fail_models=frozenset({"fake-a"}))) as server:
        roulette = ModelRoulette([spec(server, A), spec(server, B)], failures_to_rotate=1, cooldown=30)
        records = [TaskRecord(f"r{i}", A if i % 2 else B, 1) for i in range(10)]
        settings = DispatchSettings(concurrency=2, timeout=2.0, max_attempts=3, backoff_base=0.01)
        outcomes, dispatcher, _ = run_dispatch(roulette, settings, records, ask)
        log = server.stats.log
    assert {record.model for record in log} == {"fake-a", "fake-b"}  # the server sees names without "openai/"
    assert all(record.outcome == "server_error" for record in log if record.model == "fake-a")
    assert all(record.outcome == "ok" for record in log if record.model == "fake-b")
    failed_on_a = sum(record.model == "fake-a" for record in log)
    assert 1 <= failed_on_a <= 2  # at most one per slot before fake-a rests; then no more traffic to it
    for outcome in outcomes.values():
        assert outcome.error is None and outcome.model == B
        assert outcome.steps[0]["response"]["model"] == B
    drawn_a = [outcomes[r.key] for r in records if r.model == A]
    assert sum(len(o.steps[0]["response"]["failed_attempts"]) for o in drawn_a) == failed_on_a
    assert not roulette.healthy(A) and roulette.healthy(B)
    assert dispatcher.stats.failures["server_error"] == failed_on_a


def test_dispatch_concurrency_limit_is_reached_and_never_exceeded(api_key: str) -> None:
    """200 records at concurrency 16: at most 16 requests in flight, on the dispatcher's side and the server's."""
    settings = DispatchSettings(concurrency=16, timeout=5.0, max_attempts=3, backoff_base=0.01)
    records = [TaskRecord(f"r{i}", A, 1) for i in range(200)]
    with LLMServer(Faults(latency=0.1)) as server:  # long enough for 16 to overlap on the server even on a busy CPU
        outcomes, dispatcher, _ = run_dispatch(ModelRoulette([spec(server)]), settings, records, ask)
        server_stats = server.stats
    assert all(o.error is None and len(o.rows) == 1 for o in outcomes.values())
    assert dispatcher.stats.max_in_flight == 16
    assert dispatcher.stats.in_flight == 0
    assert 14 <= server_stats.max_in_flight <= 16
    assert server_stats.requests == dispatcher.stats.requests == 200


def test_dispatch_scrubs_secrets_from_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server echoes the key in its 401; neither the key nor its first 8 characters reach any outcome."""
    canary = "sk-canary-7f3a9c2e1b4d6f80aa"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv(KEY_ENV, canary)
    seen: list[str] = []
    settings = DispatchSettings(concurrency=2, timeout=2.0, max_attempts=3, backoff_base=0.01)
    with LLMServer(Faults(auth_error=True)) as server:
        answer = server._answer

        def spy(body: Any, authorization: str) -> Any:
            seen.append(authorization)
            return answer(body, authorization)

        server._answer = spy  # type: ignore[method-assign]
        roulette = ModelRoulette([spec(server)])
        outcomes, _, _ = run_dispatch(roulette, settings, [TaskRecord("r", A, 1)], ask, secrets=[canary])
    assert seen and all(canary in header for header in seen)  # the key really went out
    outcome = outcomes["r"]
    assert outcome.rows is None and outcome.error["type"] == "auth"
    messages = [outcome.error["message"]] + [a["message"] for a in outcome.steps[0]["failed_attempts"]]
    assert any("Incorrect API key" in m for m in messages)
    dumped = json.dumps({"error": outcome.error, "steps": outcome.steps})
    for text in [*messages, dumped]:
        assert canary not in text and canary[:8] not in text
    assert "***redacted***" in outcome.error["message"]


def test_dispatch_counts_no_retry_when_no_model_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """An auth failure on the only model ends the request at once: one request, zero retries, no backoff sleep."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv(KEY_ENV, "sk-test-0123456789abcdef")
    settings = DispatchSettings(concurrency=2, timeout=2.0, max_attempts=3, backoff_base=0.5, backoff_max=0.5)
    with LLMServer(Faults(auth_error=True)) as server:
        outcomes, dispatcher, elapsed = run_dispatch(
            ModelRoulette([spec(server)]), settings, [TaskRecord("r", A, 1)], ask
        )
    assert outcomes["r"].error["type"] == "auth"
    assert dispatcher.stats.requests == 1
    assert dispatcher.stats.retries == 0
    assert elapsed < 0.25
