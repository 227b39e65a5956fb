"""What a generation task asks for and gets back: requests, responses and task errors.

A task is a Python generator function that yields requests and receives responses::

    response = yield request("Write 5 queries about ...", schema=Queries)   # one request
    first = yield request(...); second = yield request(f"... {first.text}")  # sequential steps
    a, b = yield [request(...), request(...)]                                # parallel, answers in order

It ends with ``return [...]`` (the rows' texts) or raises :class:`TaskError` to drop its record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class LLMRequest:
    """One chat completion to make.

    Attributes:
        messages: OpenAI-style chat messages (``{"role": ..., "content": ...}``).
        schema: A pydantic model the answer must parse into (JSON); None keeps the raw text.
        temperature: Sampling temperature (None: the generator's).
        max_tokens: Completion token limit (None: the generator's).
        model: Pin one model of the roulette (None: the record's drawn model).
        step: A name for this step in the record's provenance.
        seed: Sampling seed sent to providers that take one (None: derived from the record and step).
    """

    messages: tuple[dict[str, str], ...]
    schema: type[BaseModel] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    model: str | None = None
    step: str = ""
    seed: int | None = None

    @property
    def prompt_hash(self) -> str:
        """SHA-256 of the messages (sorted-key JSON): the same prompt always hashes the same."""
        return prompt_hash(list(self.messages))

    def describe(self) -> dict[str, Any]:
        """The request as plain JSON for provenance."""
        return {
            "step": self.step,
            "messages": list(self.messages),
            "schema": self.schema.__name__ if self.schema else None,
            "prompt_hash": self.prompt_hash,
        }


def prompt_hash(messages: list[dict[str, str]]) -> str:
    """SHA-256 hex of ``json.dumps(messages, sort_keys=True, ensure_ascii=False)``."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def request(
    prompt: str | None = None,
    *,
    system: str | None = None,
    messages: list[dict[str, str]] | None = None,
    schema: type[BaseModel] | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    model: str | None = None,
    step: str = "",
    seed: int | None = None,
) -> LLMRequest:
    """Build a request from a user prompt (and optional system prompt) or from full ``messages``."""
    if (prompt is None) == (messages is None):
        raise ValueError("request() takes either a prompt or messages, not both or neither")
    if messages is None:
        assert prompt is not None  # checked above: exactly one of prompt and messages is given
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return LLMRequest(tuple(dict(m) for m in messages), schema, temperature, max_tokens, model, step, seed)


@dataclass(frozen=True)
class LLMResponse:
    """A successful answer.

    Attributes:
        text: The message content.
        parsed: The content parsed into the request's schema (None without a schema).
        model: The model that answered.
        attempts: Attempts this request took (1 = first try).
        latency_ms: Wall time of the successful attempt.
        prompt_tokens: Tokens of the prompt, as the provider counted them.
        completion_tokens: Tokens of the answer.
    """

    text: str
    parsed: BaseModel | None
    model: str
    attempts: int
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """The response as plain JSON for provenance."""
        return {
            "text": self.text,
            "model": self.model,
            "attempts": self.attempts,
            "latency_ms": round(self.latency_ms, 1),
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "failed_attempts": self.failures,
        }


class TaskError(Exception):
    """Raised by a task (or into it) to drop its record; kept as an error record with ``error_type``."""

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type = error_type
        self.message = message
        super().__init__(f"{error_type}: {message}")


class RequestFailed(TaskError):
    """A request failed on every attempt; thrown into the task at its ``yield`` (it may catch it)."""

    def __init__(self, error_type: str, message: str, attempts: list[dict[str, Any]]) -> None:
        super().__init__(error_type, message)
        self.attempts = attempts
