"""The ``openai_compatible`` transport against the loopback server: answers, error kinds, deadlines, dispatch."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from framework.llm.client import AttemptError
from framework.llm.dispatcher import Dispatcher, DispatchSettings, TaskOutcome, TaskRecord
from framework.llm.openai_http import OpenAICompatibleTransport, wire_model
from framework.llm.records import Queries
from framework.llm.requests import LLMRequest, request
from framework.llm.roulette import ModelRoulette, ModelSpec
from framework.redact import REDACTED
from tests.assets.llm_server import Faults, LLMServer

KEY_ENV = "INTENTCRAFT_TEST_DIRECT_KEY"
KEY = "sk-direct-0123456789abcdef"
DIRECT = "openai_compatible"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def spec(url: str, name: str = "openai/fake-a") -> ModelSpec:
    return ModelSpec(name, api_key_env=KEY_ENV, api_base=url, transport=DIRECT)


def call(model: ModelSpec, req: LLMRequest, timeout: float = 2.0, defaults: dict[str, Any] | None = None) -> Any:
    async def once() -> Any:
        transport = OpenAICompatibleTransport()
        try:
            return await transport.attempt(model, req, timeout, defaults or {})
        finally:
            await transport.close()

    return asyncio.run(once())


def failure(model: ModelSpec, timeout: float = 2.0) -> AttemptError:
    with pytest.raises(AttemptError) as info:
        call(model, request("Write 2 queries", schema=Queries), timeout)
    return info.value


def test_wire_model_drops_only_litellms_openai_prefix() -> None:
    assert wire_model("openai/Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    assert wire_model("llama3.1:8b") == "llama3.1:8b"


def test_an_answer_with_parsed_json_tokens_seed_and_the_bearer_key() -> None:
    """The body carries model (prefix dropped), messages, sampling and seed; the answer parses into the schema."""
    bodies: list[tuple[dict, str]] = []
    with LLMServer() as server:
        answer_of = server._answer

        def spy(body: Any, authorization: str) -> Any:
            bodies.append((body, authorization))
            return answer_of(body, authorization)

        server._answer = spy  # type: ignore[method-assign]
        req = request("Write 4 queries", schema=Queries, seed=7)
        answer = call(spec(server.url), req, defaults={"temperature": 0.3, "max_tokens": 99})
    [(body, authorization)] = bodies
    assert authorization == f"Bearer {KEY}"
    assert body["model"] == "fake-a" and body["messages"] == list(req.messages)
    assert body["temperature"] == 0.3 and body["max_tokens"] == 99 and body["seed"] == 7
    assert body["response_format"] == {"type": "json_object"}
    assert len(answer.parsed.queries) == 4
    assert answer.prompt_tokens >= 1 and answer.completion_tokens == len(answer.text) // 4
    assert answer.latency_ms > 0


def test_same_seed_same_answer_as_through_litellm_wire_format() -> None:
    """Two calls with one seed get the same text: the seed really reaches the server."""
    with LLMServer() as server:
        first = call(spec(server.url), request("Write 3 queries", seed=11))
        second = call(spec(server.url), request("Write 3 queries", seed=11))
        other = call(spec(server.url), request("Write 3 queries", seed=12))
    assert first.text == second.text != other.text


@pytest.mark.parametrize(
    ("faults", "kind"),
    [
        (Faults(auth_error=True), "auth"),
        (Faults(server_error=1.0), "server_error"),
        (Faults(empty=1.0), "empty"),
        (Faults(malformed=1.0), "malformed"),
    ],
)
def test_server_faults_sort_into_the_same_kinds_as_litellm(faults: Faults, kind: str) -> None:
    with LLMServer(faults) as server:
        error = failure(spec(server.url))
    assert error.kind == kind
    assert error.message.startswith("HTTP ") or kind in ("empty", "malformed")


def test_rate_limit_carries_retry_after() -> None:
    with LLMServer(Faults(rate_limit=1.0, retry_after=3)) as server:
        error = failure(spec(server.url))
    assert error.kind == "rate_limit" and error.retry_after == 3.0
    assert error.message == "HTTP 429: Rate limit reached, please retry later"


def test_a_hung_server_costs_the_deadline_then_timeout() -> None:
    with LLMServer(Faults(hang=1.0)) as server:
        started = time.monotonic()
        error = failure(spec(server.url), timeout=0.5)
        elapsed = time.monotonic() - started
    assert error.kind == "timeout" and 0.45 <= elapsed < 1.5


def test_a_wrong_path_is_bad_request_and_a_closed_port_is_connection() -> None:
    with LLMServer() as server:
        assert failure(spec(server.url + "/nowhere")).kind == "bad_request"
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = failure(spec(f"http://127.0.0.1:{port}/v1"))
    assert error.kind == "connection" and "ClientConnectorError" in error.message


@pytest.fixture
def garbage_server() -> Iterator[str]:
    """A server that answers 200 with a body that is not a chat completion."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"<html>gateway says hi</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_a_body_that_is_not_a_chat_completion_is_malformed(garbage_server: str) -> None:
    error = failure(spec(garbage_server))
    assert error.kind == "malformed" and "gateway says hi" in error.message


def ask(payload: Any) -> Any:
    response = yield request(f"Write {payload} queries about travel.", schema=Queries)
    return list(response.parsed.queries)


def test_dispatch_through_a_storm_with_the_direct_transport() -> None:
    """429s, 5xx, empty and malformed answers at concurrency 8, and a second model whose server answers 401
    echoing the key: every record ends as rows or an error record, the limit holds on both sides, the echoed key
    never reaches an outcome, and the session is closed at the end."""
    faults = Faults(rate_limit=0.2, retry_after=0, server_error=0.1, empty=0.05, malformed=0.05, latency=0.01)
    settings = DispatchSettings(concurrency=8, timeout=2.0, max_attempts=4, backoff_base=0.01, backoff_max=0.02)
    records = [TaskRecord(f"r{i}", "openai/fake-b" if i % 4 == 0 else "openai/fake-a", 3) for i in range(120)]
    outcomes: list[TaskOutcome] = []
    with LLMServer(faults) as server, LLMServer(Faults(auth_error=True)) as echoing:
        # No model ever rests, so each fake-b record meets the echoing server once (a 401 is not retried there).
        roulette = ModelRoulette([spec(server.url), spec(echoing.url, "openai/fake-b")], failures_to_rotate=10**6)
        dispatcher = Dispatcher(roulette, settings, [KEY])
        asyncio.run(dispatcher.run(records, ask, outcomes.append))
        server_stats, echo_stats = server.stats, echoing.stats
    assert sorted(o.key for o in outcomes) == sorted(r.key for r in records)
    ok = [o for o in outcomes if o.error is None]
    assert len(ok) >= 100 and all(len(o.rows) == 3 for o in ok)
    assert dispatcher.stats.retries > 0 and dispatcher.stats.max_in_flight <= 8
    assert server_stats.max_in_flight <= 8 and echo_stats.max_in_flight <= 8
    assert server_stats.requests + echo_stats.requests == dispatcher.stats.requests
    assert echo_stats.by_outcome == {"auth_error": 30} and dispatcher.stats.failures["auth"] == 30
    kept = json.dumps([(o.steps, o.error) for o in outcomes])
    auth = [a for o in outcomes for a in failed_attempts(o) if a["kind"] == "auth"]
    assert len(auth) == 30  # every echoing 401 is recorded, and none with the key
    assert all(a["message"] == f"HTTP 401: Incorrect API key provided: Bearer {REDACTED}" for a in auth)
    assert KEY not in kept and KEY[:12] not in kept
    assert dispatcher._http._session is None  # closed


def failed_attempts(outcome: TaskOutcome) -> list[dict[str, Any]]:
    """Every failed attempt an outcome recorded, on its failed steps and on the steps answered after retries."""
    return [
        attempt
        for step in outcome.steps
        for attempt in [*step.get("failed_attempts", []), *step.get("response", {}).get("failed_attempts", [])]
    ]


@pytest.mark.parametrize("key", [KEY, "plain-direct-canary-7f3a9c2e51b04d68"])
def test_a_401_that_echoes_the_key_is_kept_redacted_and_still_says_what_happened(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that answers 401 with the Authorization header in its message: the record fails as ``auth``
    after one attempt, its error and steps say HTTP 401 and the server's words, and the key appears nowhere. The
    second key has no known key shape, so only the dispatcher's list of secrets can catch it."""
    monkeypatch.setenv(KEY_ENV, key)
    settings = DispatchSettings(concurrency=2, timeout=2.0, max_attempts=3, backoff_base=0.01)
    records = [TaskRecord(f"r{i}", "openai/fake-a", 2) for i in range(3)]
    outcomes: list[TaskOutcome] = []
    with LLMServer(Faults(auth_error=True)) as server:
        dispatcher = Dispatcher(ModelRoulette([spec(server.url)]), settings, [key])
        asyncio.run(dispatcher.run(records, ask, outcomes.append))
        stats = server.stats
    assert stats.by_outcome == {"auth_error": 3}  # not retried: a bad key stays bad
    said = f"HTTP 401: Incorrect API key provided: Bearer {REDACTED}"
    for outcome in outcomes:
        assert outcome.rows is None and outcome.error is not None
        assert outcome.error == {"type": "auth", "message": f"1 attempt(s) failed; last: {said}"}
        [step] = outcome.steps
        assert step["error"] == {"type": "auth", "message": said}
        assert [a["message"] for a in step["failed_attempts"]] == [said]
    kept = json.dumps([(o.steps, o.error, o.model) for o in outcomes]) + repr(dispatcher.stats)
    assert key not in kept and key[:12] not in kept


def test_proxies_come_from_the_environment_once_per_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP(S)_PROXY applies unless NO_PROXY names the host (looked up, never contacted, here)."""
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,127.0.0.1")
    transport = OpenAICompatibleTransport()
    assert transport._proxy("https://llm.example/v1/chat/completions") == "http://127.0.0.1:3128"
    assert transport._proxy("https://internal.example/v1/chat/completions") is None
    assert transport._proxy("http://127.0.0.1:8000/v1/chat/completions") is None  # no HTTP_PROXY set
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9999")
    assert transport._proxy("https://llm.example/v1/chat/completions") == "http://127.0.0.1:3128"  # cached


def test_unset_sampling_values_are_left_out_not_sent_as_null() -> None:
    bodies: list[dict] = []
    with LLMServer() as server:
        answer_of = server._answer

        def spy(body: Any, authorization: str) -> Any:
            bodies.append(body)
            return answer_of(body, authorization)

        server._answer = spy  # type: ignore[method-assign]
        call(spec(server.url), request("Write 2 queries"))
    [body] = bodies
    assert set(body) == {"model", "messages"}
