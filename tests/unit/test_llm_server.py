"""The fake OpenAI-compatible server: answer shape, generated texts, each fault, concurrency accounting, entry point."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.assets.llm_server import Faults, LLMServer, default_answer, prompt_hash

SCRIPT = Path(__file__).resolve().parents[1] / "assets" / "llm_server.py"
PROMPT = "Write 3 queries a customer might send about flight bookings."


def messages(content: str = PROMPT) -> list[dict]:
    return [{"role": "system", "content": "You write test data."}, {"role": "user", "content": content}]


HTTP = httpx.Client(trust_env=False, timeout=5.0)  # one pooled keep-alive client, as a generator would use


def post(url: str, body: object, key: str = "sk-test", timeout: float = 5.0) -> httpx.Response:
    """POST a JSON body (or raw bytes)."""
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    return HTTP.post(url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout, **kwargs)


def chat(server: LLMServer, content: str = PROMPT, model: str = "fake-a", **kwargs: object) -> httpx.Response:
    return post(f"{server.url}/chat/completions", {"model": model, "messages": messages(content)}, **kwargs)


def queries(content: str) -> list[str] | None:
    """The queries list if ``content`` is the JSON the generator asks for, else None."""
    try:
        parsed = json.loads(content)
    except ValueError:
        return None
    return parsed.get("queries") if isinstance(parsed, dict) and isinstance(parsed.get("queries"), list) else None


@pytest.fixture(scope="module", autouse=True)
def _close_http_client():
    yield
    HTTP.close()


@pytest.fixture
def server():
    with LLMServer() as running:
        yield running


def test_answer_is_an_openai_chat_completion_and_deterministic(server: LLMServer) -> None:
    response = chat(server)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-") and isinstance(body["created"], int)
    assert body["model"] == "fake-a"
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert content == default_answer("fake-a", messages())
    assert len(queries(content)) == 3
    prompt_chars = sum(len(m["content"]) for m in messages())
    assert body["usage"]["prompt_tokens"] == prompt_chars // 4
    assert body["usage"]["completion_tokens"] == len(content) // 4
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]

    assert chat(server).json()["choices"][0]["message"]["content"] == content
    assert chat(server, model="fake-b").json()["choices"][0]["message"]["content"] != content
    assert chat(server, PROMPT + " Be brief.").json()["choices"][0]["message"]["content"] != content
    stats = server.stats
    assert stats.requests == 4 and stats.by_outcome == {"ok": 4}
    assert stats.log[0].prompt_hash == prompt_hash(messages()) and stats.log[0].model == "fake-a"
    assert stats.log[0].started <= stats.log[0].ended <= stats.log[1].started
    assert (stats.in_flight, stats.max_in_flight, stats.hung) == (0, 1, 0)
    server.reset_stats()
    assert server.stats.requests == 0 and server.stats.log == []


@pytest.mark.parametrize(
    ("prompt", "n"),
    [
        ("Write 12 queries about refunds.", 12),
        ("Give me 7 short, realistic user questions.", 7),
        ("Generate 500 examples.", 50),
        ("Say something.", 5),
    ],
)
def test_count_is_parsed_from_the_last_user_message(prompt: str, n: int) -> None:
    texts = queries(default_answer("fake-a", [{"role": "user", "content": "Write 2 queries."}, *messages(prompt)]))
    assert len(texts) == n == len(set(texts))


def test_generated_texts_are_varied_clean_queries() -> None:
    texts: list[str] = []
    for topic in range(200):
        batch = queries(default_answer("fake-a", messages(f"Write 50 queries for intent number {topic}.")))
        assert len(batch) == 50 == len(set(batch))
        texts += batch
    assert len(set(texts)) > 0.99 * len(texts) == 9900
    for text in texts:
        assert 6 <= len(text.split()) <= 14, text
        assert re.fullmatch(r"[A-Za-z]+( [A-Za-z]+)+[?.]?", text), text


def test_rate_limit_carries_retry_after_and_latency_comes_first() -> None:
    with LLMServer(Faults(rate_limit=1.0, retry_after=2.0, latency=0.1)) as server:
        started = time.monotonic()
        response = chat(server)
        assert time.monotonic() - started >= 0.1
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2" and response.headers["retry-after-ms"] == "2000"
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert server.stats.by_outcome == {"rate_limit": 1}


def test_server_errors_are_500_or_503_with_an_error_body() -> None:
    with LLMServer(Faults(server_error=1.0)) as server:
        responses = [chat(server) for _ in range(8)]
    assert {r.status_code for r in responses} == {500, 503}  # seed 0 draws both
    assert all(r.json()["error"]["type"] == "server_error" for r in responses)
    assert server.stats.by_outcome == {"server_error": 8}


def test_empty_answers_are_valid_completions_with_empty_content() -> None:
    with LLMServer(Faults(empty=1.0)) as server:
        body = chat(server).json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == ""
    assert server.stats.by_outcome == {"empty": 1}


def test_malformed_answers_alternate_prose_and_truncated_json() -> None:
    with LLMServer(Faults(malformed=1.0)) as server:
        contents = [chat(server).json()["choices"][0]["message"]["content"] for _ in range(2)]
    valid = default_answer("fake-a", messages())
    assert all(queries(content) is None for content in contents)
    assert contents[0].startswith("Sure!") and valid in contents[0]
    assert valid.startswith(contents[1]) and len(contents[1]) < len(valid)
    assert server.stats.by_outcome == {"malformed": 2}


def test_hung_requests_never_answer_and_stop_still_returns_promptly() -> None:
    server = LLMServer().start()
    with httpx.Client(trust_env=False, timeout=5) as keep_alive:
        assert keep_alive.post(f"{server.url}/chat/completions", json={"messages": messages()}).status_code == 200
        server.set_faults(Faults(hang=1.0))
        with pytest.raises(httpx.ReadTimeout):
            chat(server, timeout=0.5)
        stats = server.stats
        assert (stats.hung, stats.in_flight, stats.by_outcome["hang"]) == (1, 0, 1)
        assert stats.log[-1].outcome == "hang" and stats.log[-1].ended is None
        started = time.monotonic()
        server.stop()  # with one hung handler and one idle keep-alive connection
        assert time.monotonic() - started < 2
    assert server.stats.hung == 0 and server.stats.log[-1].ended is not None


def test_fail_models_always_get_500() -> None:
    with LLMServer(Faults(fail_models=frozenset({"fake-b"}))) as server:
        assert [chat(server, model="fake-b").status_code for _ in range(4)] == [500] * 4
        assert chat(server, model="fake-a").status_code == 200


def test_auth_error_echoes_the_authorization_header() -> None:
    with LLMServer(Faults(auth_error=True)) as server:
        response = chat(server, key="sk-canary-0123456789")
    assert response.status_code == 401
    assert "Bearer sk-canary-0123456789" in response.json()["error"]["message"]
    assert server.stats.by_outcome == {"auth_error": 1}


def test_fault_draws_are_reproducible_from_the_seed() -> None:
    faults = Faults(rate_limit=0.3, server_error=0.2, empty=0.2, seed=7)
    runs = []
    for _ in range(2):
        with LLMServer(faults) as server:
            for _ in range(20):
                chat(server)
        runs.append([record.outcome for record in server.stats.log])
    assert runs[0] == runs[1] and len(set(runs[0])) == 4


def test_max_in_flight_counts_concurrent_requests() -> None:
    clients = 8
    barrier = threading.Barrier(clients)

    def one(_: int) -> int:
        barrier.wait()
        return chat(server).status_code

    with LLMServer(Faults(latency=0.2)) as server, ThreadPoolExecutor(clients) as pool:
        started = time.monotonic()
        assert list(pool.map(one, range(clients))) == [200] * clients
        elapsed = time.monotonic() - started
    stats = server.stats
    assert (stats.max_in_flight, stats.in_flight, stats.requests) == (clients, 0, clients)
    assert elapsed < 0.2 * clients / 2  # answered concurrently, not one after another
    assert max(r.started for r in stats.log) < min(r.ended for r in stats.log)


def test_bad_requests_unknown_paths_and_models(server: LLMServer) -> None:
    for body in (b"{not json", {"model": "fake-a"}, {"model": "fake-a", "messages": []}):
        response = post(f"{server.url}/chat/completions", body)
        assert response.status_code == 400
        assert response.json() == {
            "error": {
                "message": response.json()["error"]["message"],
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    assert server.stats.by_outcome == {"bad_request": 3}
    assert post(f"{server.url}/embeddings", {"input": "x"}).status_code == 404
    assert {m["id"] for m in HTTP.get(f"{server.url}/models").json()["data"]} >= {"fake-a"}
    assert HTTP.get(f"{server.url}/nothing").status_code == 404


def test_litellm_round_trip(server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")

    def complete() -> object:
        return asyncio.run(
            litellm.acompletion(
                model="openai/fake-a",
                api_base=server.url,
                api_key="sk-test",
                messages=messages(),
                response_format={"type": "json_object"},
                max_retries=0,
            )
        )

    assert complete().choices[0].message.content == default_answer("fake-a", messages())
    assert server.stats.log[0].prompt_hash == prompt_hash(messages())
    server.set_faults(Faults(rate_limit=1.0))
    with pytest.raises(litellm.RateLimitError):
        complete()
    assert server.stats.by_outcome == {"ok": 1, "rate_limit": 1}


def test_standalone_prints_its_url_and_serves_until_killed() -> None:
    command = [sys.executable, str(SCRIPT), "--port", "0", "--latency", "0.01", "--fail-model", "fake-b"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        body = {"model": "fake-a", "messages": messages()}
        assert queries(post(f"{url}/chat/completions", body).json()["choices"][0]["message"]["content"])
        assert post(f"{url}/chat/completions", dict(body, model="fake-b")).status_code == 500
    finally:
        process.terminate()
        process.wait(timeout=5)
    assert process.returncode == 0
