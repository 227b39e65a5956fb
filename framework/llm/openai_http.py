"""The ``openai_compatible`` transport: POST ``{api_base}/chat/completions`` on one shared aiohttp session.

For self-hosted OpenAI-compatible servers (vLLM, llama.cpp's server, TGI, Ollama's ``/v1``) that answer fast and
are called many times a second. litellm, the default transport, spends 7-9 ms of CPU per call on this
project's 2-core development machine (cost and model-info lookups, response conversion), which caps one process
near 110-140 requests/s; this path parses the answer and nothing more. It speaks only the chat-completions wire
format, so every other provider stays on litellm. Failures are sorted into the same kinds as litellm's.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from typing import Any

from framework.llm.client import (
    Answer,
    AttemptError,
    answer_from,
    elapsed_ms,
    retry_after_from_headers,
    sampling_params,
)
from framework.llm.requests import LLMRequest
from framework.llm.roulette import ModelSpec

_STATUS_KINDS = {401: "auth", 403: "auth", 400: "bad_request", 404: "bad_request", 422: "bad_request"}
_STATUS_KINDS |= {408: "timeout", 429: "rate_limit"}


def wire_model(name: str) -> str:
    """The model name the server expects: litellm's ``openai/`` provider prefix is dropped."""
    return name.removeprefix("openai/")


class OpenAICompatibleTransport:
    """One aiohttp session for every ``openai_compatible`` model of a run; :meth:`close` it when done."""

    def __init__(self) -> None:
        self._session: Any = None
        self._proxies: dict[str, str | None] = {}

    def _client(self) -> Any:
        if self._session is None:
            import aiohttp  # installed with litellm (the llm extra)

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),  # the dispatcher bounds requests in flight
                timeout=aiohttp.ClientTimeout(total=None),  # the deadline is enforced around the whole call
                trust_env=False,  # aiohttp would then look up proxies and .netrc in a thread for every request
            )
        return self._session

    def _proxy(self, url: str) -> str | None:
        """The proxy that HTTP(S)_PROXY and NO_PROXY name for ``url``, looked up once per server, as litellm does."""
        if url not in self._proxies:
            parts = urllib.parse.urlsplit(url)
            bypass = urllib.request.proxy_bypass(parts.hostname or "")
            self._proxies[url] = None if bypass else urllib.request.getproxies().get(parts.scheme)
        return self._proxies[url]

    async def attempt(self, spec: ModelSpec, req: LLMRequest, timeout: float, defaults: dict[str, Any]) -> Answer:
        """Call the model once; the call is cancelled at ``timeout`` seconds whatever the server does."""
        started = time.monotonic()
        try:
            status, headers, body = await asyncio.wait_for(self._post(spec, req, defaults), timeout=timeout)
        except TimeoutError:
            raise AttemptError("timeout", f"no answer within {timeout:g} s", latency_ms=elapsed_ms(started)) from None
        except Exception as exc:
            transport = isinstance(exc, OSError) or type(exc).__module__.startswith("aiohttp")
            message = f"{type(exc).__name__}: {exc}".strip()[:500]
            raise AttemptError(
                "connection" if transport else "error", message, latency_ms=elapsed_ms(started)
            ) from None
        latency = elapsed_ms(started)
        if status != 200:
            kind = _STATUS_KINDS.get(status, "server_error" if status >= 500 else "error")
            message = f"HTTP {status}: {_error_message(body)}"
            raise AttemptError(kind, message, retry_after_from_headers(headers), latency)
        try:
            payload = json.loads(body)
            text = payload["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise AttemptError("malformed", f"not a chat completion: {body[:200]!r}", latency_ms=latency) from None
        return answer_from(text, req, payload.get("usage") or {}, latency)

    async def _post(self, spec: ModelSpec, req: LLMRequest, defaults: dict[str, Any]) -> tuple[int, Any, str]:
        sampling = {key: value for key, value in sampling_params(req, defaults).items() if value is not None}
        body = {"model": wire_model(spec.name), "messages": list(req.messages), **sampling}
        headers = {"Content-Type": "application/json"}
        if (key := spec.api_key()) is not None:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{(spec.api_base or '').rstrip('/')}/chat/completions"
        post = self._client().post(url, data=json.dumps(body), headers=headers, proxy=self._proxy(url))
        async with post as response:
            return response.status, response.headers, await response.text(errors="replace")

    async def close(self) -> None:
        """Close the session (and its connections)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _error_message(body: str) -> str:
    """The server's ``error.message`` if it sent OpenAI's error object, else the start of the body."""
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    return str(message or body.strip() or "no body")[:300]
