"""One attempt at one request through litellm, under a hard deadline, with errors sorted into kinds.

litellm is imported lazily (it takes seconds) with its model-cost map read from the installed package,
never fetched. Its own retries are off: the dispatcher retries, backs off and rotates models itself.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from framework.errors import UserInputError
from framework.llm.requests import LLMRequest
from framework.llm.roulette import ModelSpec

RETRYABLE = frozenset({"rate_limit", "server_error", "timeout", "connection", "empty", "malformed", "error"})
"""Kinds worth another attempt on the same model; ``auth`` and ``bad_request`` move to another model."""
ENDPOINT_KINDS = frozenset({"rate_limit", "server_error", "timeout", "connection", "auth"})
"""Failures of the endpoint, not of the record: a resumed run requests error records of these kinds again."""
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)
_MISSING_KEY = re.compile(r"missing credentials|api_key client option must be set", re.IGNORECASE)
_NO_CONNECTION = re.compile(r"connection error|cannot connect|connect call failed", re.IGNORECASE)
_litellm: Any = None


def litellm_module() -> Any:
    """litellm, configured for offline use and quiet logs (imported once)."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
        except ImportError:
            raise UserInputError(
                "LLM generation needs litellm, which is not installed: pip install 'intentcraft[llm]' "
                "(make install includes it)."
            ) from None

        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):  # one INFO line per call otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        litellm.suppress_debug_info = True
        litellm.drop_params = True  # a provider without e.g. response_format still answers
        litellm.telemetry = False
        _litellm = litellm
    return _litellm


@dataclass
class Answer:
    """A successful attempt."""

    text: str
    parsed: BaseModel | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float


class AttemptError(Exception):
    """A failed attempt: ``kind`` (see :data:`RETRYABLE`), a message and the server's Retry-After, if any."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None, latency_ms: float = 0.0) -> None:
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.latency_ms = latency_ms
        super().__init__(f"{kind}: {message}")


async def attempt(spec: ModelSpec, req: LLMRequest, timeout: float, defaults: dict[str, Any]) -> Answer:
    """Call the model once; the call is cancelled at ``timeout`` seconds whatever the transport does."""
    litellm = litellm_module()
    kwargs: dict[str, Any] = {
        "model": spec.name,
        "messages": list(req.messages),
        "timeout": timeout,
        "max_retries": 0,
        **sampling_params(req, defaults),
    }
    if spec.api_base:
        kwargs["api_base"] = spec.api_base
    if (key := spec.api_key()) is not None:
        kwargs["api_key"] = key
    started = time.monotonic()
    try:
        response = await asyncio.wait_for(litellm.acompletion(**kwargs), timeout=timeout)
    except TimeoutError:
        raise AttemptError("timeout", f"no answer within {timeout:g} s", latency_ms=elapsed_ms(started)) from None
    except Exception as exc:
        raise classify(exc, elapsed_ms(started)) from None
    text = (response.choices[0].message.content or "") if response.choices else ""
    return answer_from(text, req, getattr(response, "usage", None), elapsed_ms(started))


def sampling_params(req: LLMRequest, defaults: dict[str, Any]) -> dict[str, Any]:
    """temperature, max_tokens, seed and the JSON response format, as the chat-completions API names them."""
    params: dict[str, Any] = {
        "temperature": req.temperature if req.temperature is not None else defaults.get("temperature"),
        "max_tokens": req.max_tokens or defaults.get("max_tokens"),
    }
    if req.seed is not None:
        params["seed"] = req.seed
    if req.schema is not None:
        params["response_format"] = {"type": "json_object"}
    return params


def answer_from(text: str, req: LLMRequest, usage: Any, latency_ms: float) -> Answer:
    """An :class:`Answer` from a completion's content and usage; empty or off-schema content fails the attempt."""
    if not text.strip():
        raise AttemptError("empty", "the model answered with empty content", latency_ms=latency_ms)
    return Answer(
        text=text,
        parsed=parse_answer(text, req.schema, latency_ms) if req.schema else None,
        prompt_tokens=int(_field(usage, "prompt_tokens") or 0),
        completion_tokens=int(_field(usage, "completion_tokens") or 0),
        latency_ms=latency_ms,
    )


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def parse_answer(text: str, schema: type[BaseModel], latency_ms: float = 0.0) -> BaseModel:
    """Parse JSON content (code fences allowed) into ``schema``; a mismatch is a ``malformed`` attempt."""
    body = _FENCE.sub("", text.strip())
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "<answer>"
        raise AttemptError(
            "malformed", f"answer does not match {schema.__name__}: {where}: {first['msg']}", latency_ms=latency_ms
        ) from None


def classify(exc: Exception, latency_ms: float) -> AttemptError:
    """Sort a litellm / openai / transport exception into an :class:`AttemptError`."""
    litellm = litellm_module()
    message = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip().splitlines()[0][:500]
    checks: list[tuple[Any, str]] = [
        (litellm.RateLimitError, "rate_limit"),
        (litellm.Timeout, "timeout"),
        ((litellm.AuthenticationError, litellm.PermissionDeniedError), "auth"),
        ((litellm.BadRequestError, litellm.NotFoundError, litellm.UnprocessableEntityError), "bad_request"),
        (litellm.APIConnectionError, "connection"),
        ((litellm.InternalServerError, litellm.ServiceUnavailableError), "server_error"),
    ]
    kind = next((name for types, name in checks if isinstance(exc, types)), None)
    if kind == "server_error" and _MISSING_KEY.search(message):  # raised locally, before any request
        kind = "auth"
    elif kind == "server_error" and _NO_CONNECTION.search(message):  # litellm reports a refused connection so
        kind = "connection"
    status = getattr(exc, "status_code", None)
    if kind is None:
        kind = "server_error" if isinstance(status, int) and status >= 500 else "error"
    return AttemptError(kind, message, retry_after_seconds(exc), latency_ms)


def retry_after_seconds(exc: Exception) -> float | None:
    """The server's ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if it sent one."""
    headers: dict[str, str] = {}
    sources = (  # litellm keeps the provider's headers in litellm_response_headers
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "headers", None),
        getattr(exc, "litellm_response_headers", None),
    )
    for source in sources:
        if source:
            headers.update(dict(source).items())
    return retry_after_from_headers(headers)


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None if absent."""
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    if "retry-after-ms" in lower:
        try:
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # neither seconds nor an HTTP date: ignore it
        return None
    return max(0.0, when.timestamp() - time.time())


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.monotonic()`` reading)."""
    return (time.monotonic() - started) * 1000
