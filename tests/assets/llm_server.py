"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for tests, with injectable faults.

Stdlib only and cheap per request, so it can stand in for a provider in concurrency, resume, fault-storm and
throughput tests::

    with LLMServer(Faults(latency=0.05, rate_limit=0.1)) as server:
        await litellm.acompletion(model="openai/fake-a", api_base=server.url, api_key="sk-test", messages=...)

Standalone: ``python tests/assets/llm_server.py --port 0 --latency 0.05`` prints its URL on the first stdout line
and serves until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[str, list[dict], int | None], str]
MODELS = ("fake-a", "fake-b")
HANG_CAP_S = 600.0
COMPLETION_PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass
class Faults:
    """Fault probabilities per request, drawn from ``random.Random(seed)`` under a lock (reproducible by order).

    At most one of ``rate_limit``, ``server_error``, ``empty``, ``malformed`` and ``hang`` happens per request;
    their sum must not exceed 1. ``auth_error`` and ``fail_models`` apply to every request they match.
    """

    rate_limit: float = 0.0  # 429 with Retry-After and retry-after-ms headers
    retry_after: float = 1.0  # seconds advertised by a 429
    server_error: float = 0.0  # 500 or 503 with an OpenAI-style error body
    empty: float = 0.0  # 200 whose message content is ""
    malformed: float = 0.0  # 200 whose content is prose or truncated JSON, alternately
    hang: float = 0.0  # never answers until the server stops
    latency: float = 0.0  # seconds added before every answer, errors included
    latency_jitter: float = 0.0  # uniform extra seconds in [0, latency_jitter)
    fail_models: frozenset[str] = field(default_factory=frozenset)  # these models always get 500
    auth_error: bool = False  # every request gets 401 echoing its Authorization header
    seed: int = 0

    def __post_init__(self) -> None:
        probabilities = (self.rate_limit, self.server_error, self.empty, self.malformed, self.hang)
        if min(probabilities) < 0 or sum(probabilities) > 1 + 1e-9:
            raise ValueError(f"fault probabilities must be >= 0 and sum to <= 1, got {probabilities}")
        self.fail_models = frozenset(self.fail_models)


@dataclass
class RequestRecord:
    """One chat-completion request: what was asked, how it was answered, and when (``time.monotonic()``)."""

    prompt_hash: str  # sha256 of json.dumps(messages, sort_keys=True, ensure_ascii=False); "" if unparseable
    model: str
    outcome: str
    started: float
    ended: float | None = None  # None while being answered or hung
    seed: int | None = None  # the request's sampling seed, if it sent one


@dataclass
class ServerStats:
    """A snapshot of the server's counters, all about chat-completion requests (not GET /models nor 404s)."""

    requests: int  # received, whatever their outcome
    by_outcome: Counter[str]  # ok, rate_limit, server_error, empty, malformed, hang, auth_error, bad_request
    in_flight: int  # being answered now, hung ones excluded
    max_in_flight: int  # most answered at once since start or reset_stats(), hung ones excluded
    hung: int  # hung now
    log: list[RequestRecord]  # one per request, in arrival order


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


_VERBS = _words(
    "book cancel change check compare find fix update reset move share export import delete schedule track order "
    "return renew transfer upload download install configure connect print scan sync restore rename sort filter "
    "merge split convert translate summarize review approve reject submit pay refund replace repair clean organize "
    "plan prepare edit open close lock unlock activate disable enable block report verify confirm send forward "
    "archive recover create add remove join start stop pause resume measure estimate calculate upgrade downgrade "
    "register reschedule postpone extend unsubscribe"
)
_NOUNS = _words(
    "account order invoice password subscription flight hotel room ticket meeting calendar report budget payment "
    "card receipt package delivery address phone laptop printer router email message contact document spreadsheet "
    "folder file photo video playlist song recipe appointment prescription insurance claim balance loan mortgage "
    "car tire battery charger screen keyboard camera app profile setting notification reminder alarm task project "
    "team schedule shift vacation contract form application license passport visa reservation table menu course "
    "lesson exam grade homework library membership gym workout plan diet bill statement transaction transfer "
    "deposit refund warranty return shipment label coupon discount cart wishlist review comment post group "
    "channel server database backup certificate domain website browser tablet watch speaker headset "
    "thermostat heater fridge oven washer dryer garage parking toll rental lease deadline timesheet paycheck"
)
_ADJECTIVES = _words(
    "new old broken missing late recent monthly weekly annual shared personal business small large cheap "
    "expensive urgent pending default wireless digital free premium current previous next main local remote "
    "public private quick simple full partial extra spare damaged expired lost overdue unpaid duplicate wrong "
    "blank slow corporate international domestic family student temporary primary secondary"
)
_PREPOSITIONS = _words("for with from to in on into about before after near without under over through")
_TIMES = _words(
    "today|tomorrow|tonight|this week|next week|this month|next month|before friday|by tomorrow morning|"
    "after lunch|on monday|this weekend|right now|as soon as possible|before the deadline|later today",
    "|",
)
_TEMPLATES = (
    "how do I {v} the {a} {n} {p} my {m}?",
    "can you help me {v} my {a} {n} {t}?",
    "what is the best way to {v} a {n} {p} the {m}?",
    "I need to {v} the {a} {n} {t}.",
    "please {v} my {n} and {w} the {a} {m}.",
    "why does my {n} stop working when I {v} the {m}?",
    "is it possible to {v} the {n} {p} my {a} {m}?",
    "where can I find the {a} {n} for my {m}?",
    "I want to {v} my {n} {t}.",
    "could you {v} the {a} {n} {p} my {m} {t}?",
    "what happens if I {v} my {a} {n} {t}?",
    "help me {v} a {a} {n} {p} the {m}.",
    "remind me to {v} the {n} {p} the {m} {t}.",
    "do you know how to {v} a {a} {n}?",
    "I cannot {v} my {n} {p} the {a} {m}.",
    "when should I {v} the {a} {n} {p} my {m}?",
)
_COUNT = re.compile(
    r"(\d+)\s+(?:[a-z-]+,?\s+){0,3}?(?:queries|questions|requests|examples|utterances|prompts|messages)\b", re.I
)


def _text(content: Any) -> str:
    """The text of a message's content: a string, or a list of OpenAI content parts."""
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def prompt_hash(messages: list[dict]) -> str:
    """The sha256 hex digest identifying a prompt, as recorded in ``RequestRecord.prompt_hash``."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def default_answer(model: str, messages: list[dict], seed: int | None = None) -> str:
    """A ``{"queries": [...]}`` JSON string of n distinct, realistic user queries, deterministic in the prompt.

    Args:
        model: The requested model name (part of the seed).
        messages: The chat messages; n is parsed from the last user message (default 5, at most 50).
        seed: The request's ``seed`` (part of the seed, as with a real provider's sampling seed).

    Returns:
        The JSON object as a string.
    """
    last_user = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    match = _COUNT.search(last_user)
    n = max(1, min(int(match.group(1)), 50)) if match else 5
    key = f"{model}\0{'' if seed is None else seed}\0{json.dumps(messages, sort_keys=True, ensure_ascii=False)}"
    digest = hashlib.sha256(key.encode())
    rng = random.Random(int.from_bytes(digest.digest()[:8], "big"))
    queries: list[str] = []
    while len(queries) < n:
        v, w = rng.sample(_VERBS, 2)
        n1, m = rng.sample(_NOUNS, 2)
        text = rng.choice(_TEMPLATES).format(
            v=v, w=w, n=n1, m=m, a=rng.choice(_ADJECTIVES), p=rng.choice(_PREPOSITIONS), t=rng.choice(_TIMES)
        )
        if rng.random() < 0.4:  # punctuation only sometimes, as real users type
            text = text[:-1]
        text = text[0].upper() + text[1:] if rng.random() < 0.6 else text
        if text not in queries:
            queries.append(text)
    return json.dumps({"queries": queries})


def _error(message: str, kind: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for hung or idle keep-alive handlers
    request_queue_size = 256
    owner: LLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away (timeouts, stop()); these are expected in tests."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.owner._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (it costs time under load)."""

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        """Write a JSON response in a single write (cheaper than send_response/send_header under load)."""
        body = json.dumps(payload).encode()
        lines = [f"{self.protocol_version} {status} {self.responses[status][0]}", "Content-Type: application/json"]
        lines += [f"Content-Length: {len(body)}", *(f"{name}: {value}" for name, value in (headers or {}).items())]
        self.wfile.write("\r\n".join([*lines, "", ""]).encode("latin-1") + body)

    def do_GET(self) -> None:
        if self.path.split("?")[0].rstrip("/") in ("/v1/models", "/models"):
            models = [{"id": m, "object": "model", "created": 0, "owned_by": "llm-server"} for m in MODELS]
            return self._send(200, {"object": "list", "data": models})
        self._send(404, _error(f"Unknown path {self.path}", "invalid_request_error", "not_found"))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0].rstrip("/") not in COMPLETION_PATHS:
            return self._send(404, _error(f"Unknown path {self.path}", "invalid_request_error", "not_found"))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        owner = self.server.owner
        answer = owner._answer(body, self.headers.get("Authorization", ""))
        if answer is None:  # hung until stop(): write nothing, drop the connection
            self.close_connection = True
            return
        record, status, payload, headers = answer
        owner._finish(record)  # before the answer leaves: a client holding it never sees the request in flight
        self._send(status, payload, headers)


class LLMServer:
    """An OpenAI-compatible server on 127.0.0.1 in a background thread; faults can change at run time.

    Args:
        faults: The faults to inject (none by default).
        port: The port to bind; 0 picks a free one.
        responder: Makes the answer content from (model, messages); ``default_answer`` by default.
    """

    def __init__(self, faults: Faults | None = None, port: int = 0, responder: Responder = default_answer) -> None:
        self.responder = responder
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._in_flight = self._hung = 0
        self.set_faults(faults or Faults())
        self.reset_stats()

    @property
    def url(self) -> str:
        """The base URL to give clients as ``api_base``, ending in ``/v1``."""
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> LLMServer:
        """Bind and serve in a daemon thread; returns self."""
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _Handler)
        self._httpd.owner = self
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="llm-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hung handlers, stop serving, close every connection and join the thread (well under 2 s)."""
        if self._httpd is None or self._thread is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # wakes handlers idle on keep-alive connections
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join(timeout=2)
        deadline = time.monotonic() + 1.0
        while self._hung and time.monotonic() < deadline:  # let released handlers record their end
            time.sleep(0.005)
        self._httpd = self._thread = None

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults, reseeding the fault draws from ``faults.seed``."""
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._malformed_count = 0

    def reset_stats(self) -> None:
        """Forget counters and the log; requests being answered or hung stay counted in ``in_flight``/``hung``."""
        with self._lock:
            self._requests = 0
            self._by_outcome: Counter[str] = Counter()
            self._max_in_flight = self._in_flight
            self._log: list[RequestRecord] = []

    @property
    def stats(self) -> ServerStats:
        """A consistent snapshot of the counters and the request log."""
        with self._lock:
            log = [replace(record) for record in self._log]
            return ServerStats(
                self._requests, Counter(self._by_outcome), self._in_flight, self._max_in_flight, self._hung, log
            )

    def _track(self, connection: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def _answer(self, body: Any, authorization: str) -> tuple[RequestRecord, int, dict, dict[str, str]] | None:
        """Decide and build the answer to one completion request (after its latency); None once a hang ended."""
        messages = body.get("messages") if isinstance(body, dict) else None
        valid = isinstance(messages, list) and bool(messages) and all(isinstance(m, dict) for m in messages)
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        choices = body.get("n") if isinstance(body, dict) else None
        choices = min(max(choices, 1), 8) if isinstance(choices, int) else 1
        with self._lock:
            faults, draw, jitter, coin = self._faults, self._rng.random(), self._rng.random(), self._rng.random()
            if faults.auth_error:
                outcome = "auth_error"
            elif not valid:
                outcome = "bad_request"
            elif model in faults.fail_models:
                outcome = "server_error"
            else:
                outcome = "ok"
                for name in ("rate_limit", "server_error", "empty", "malformed", "hang"):
                    draw -= getattr(faults, name)
                    if draw < 0:
                        outcome = name
                        break
            if outcome == "malformed":
                coin, self._malformed_count = self._malformed_count % 2, self._malformed_count + 1
            seed = body.get("seed") if valid and isinstance(body.get("seed"), int) else None
            record = RequestRecord(prompt_hash(messages) if valid else "", model, outcome, time.monotonic(), seed=seed)
            self._requests += 1
            self._by_outcome[outcome] += 1
            self._log.append(record)
            if outcome == "hang":
                self._hung += 1
            else:
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
        if outcome == "hang":
            self._stopping.wait(HANG_CAP_S)
            with self._lock:
                self._hung -= 1
                record.ended = time.monotonic()
            return None
        try:
            delay = faults.latency + jitter * faults.latency_jitter
            if delay > 0:
                time.sleep(delay)
            seed = body.get("seed") if isinstance(body, dict) and isinstance(body.get("seed"), int) else None
            return (record, *self._response(outcome, model, (messages, seed), choices, faults, authorization, coin))
        except BaseException:
            self._finish(record)
            raise

    def _response(
        self, outcome: str, model: str, prompt: Any, choices: int, faults: Faults, authorization: str, coin: float
    ) -> tuple[int, dict, dict[str, str]]:
        """The status, payload and extra headers for an outcome; ``prompt`` is (messages, seed)."""
        messages, seed = prompt
        if outcome == "auth_error":  # echoes the key, like some providers do
            message = f"Incorrect API key provided: {authorization}"
            return 401, _error(message, "invalid_request_error", "invalid_api_key"), {}
        if outcome == "bad_request":
            message = "Invalid body: expected JSON with a non-empty 'messages' list of objects"
            return 400, _error(message, "invalid_request_error"), {}
        if outcome == "rate_limit":
            seconds, millis = str(round(faults.retry_after)), str(round(faults.retry_after * 1000))
            headers = {"Retry-After": seconds, "retry-after-ms": millis}
            message = "Rate limit reached, please retry later"
            return 429, _error(message, "rate_limit_error", "rate_limit_exceeded"), headers
        if outcome == "server_error":
            status = 503 if coin < 0.5 and model not in faults.fail_models else 500
            return status, _error(f"The server had an error ({status})", "server_error"), {}
        content = "" if outcome == "empty" else self.responder(model, messages, seed)
        if outcome == "malformed":
            content = f"Sure! Here are some ideas:\n- {content}" if coin == 0 else content[: len(content) // 2]
        prompt_chars = sum(len(_text(m.get("content"))) for m in messages)
        usage = {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": len(content) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        payload = {
            "id": f"chatcmpl-{random.getrandbits(96):024x}",  # no urandom syscall per request
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [dict(choice, index=i) for i in range(choices)],
            "usage": usage,
        }
        return 200, payload, {}

    def _finish(self, record: RequestRecord) -> None:
        with self._lock:
            self._in_flight -= 1
            record.ended = time.monotonic()


def main(argv: list[str] | None = None) -> None:
    """Serve until killed (SIGTERM or Ctrl-C), printing the URL on the first stdout line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    numbers = ("latency", "latency_jitter", "rate_limit", "retry_after", "server_error", "empty", "malformed", "hang")
    for name in numbers:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(Faults, name))
    parser.add_argument("--fail-model", action="append", default=[], help="always 500 for this model (repeatable)")
    parser.add_argument("--auth-error", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    faults = Faults(
        **{name: getattr(args, name) for name in numbers},
        fail_models=frozenset(args.fail_model),
        auth_error=args.auth_error,
        seed=args.seed,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with LLMServer(faults, port=args.port) as server:
        print(server.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()


if __name__ == "__main__":
    main()
