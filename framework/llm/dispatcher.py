"""Run generation tasks for many records at once: bounded concurrency, retries, backoff, model rotation.

Each record's task is a generator function (see :mod:`framework.llm.requests`). Workers drive the tasks of
all records concurrently; every HTTP attempt, whichever record it serves, takes one of ``concurrency``
slots, so requests in flight never exceed the limit. Each answer goes back to the task that asked, in the
order it asked (a parallel yield gets its answers as a list in request order).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import random
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from framework.data.seeding import derive_seed
from framework.llm.client import RETRYABLE, AttemptError, attempt
from framework.llm.openai_http import OpenAICompatibleTransport
from framework.llm.requests import LLMRequest, LLMResponse, RequestFailed, TaskError
from framework.llm.roulette import ModelRoulette
from framework.redact import scrub

Step = LLMRequest | list[LLMRequest]
TaskFn = Callable[[Any], Generator[Step, Any, Any]]


@dataclass(frozen=True)
class DispatchSettings:
    """How requests are made.

    Attributes:
        concurrency: Most requests in flight at once, over all records and models.
        timeout: Hard deadline of one attempt, in seconds.
        max_attempts: Attempts per request before it fails (first try included).
        backoff_base: First retry delay in seconds; doubles per attempt, with jitter.
        backoff_max: Cap of the computed delay (a server's Retry-After is honoured up to ``retry_after_max``).
        retry_after_max: Longest Retry-After honoured, in seconds.
        temperature: Default sampling temperature.
        max_tokens: Default completion token limit.
    """

    concurrency: int = 8
    timeout: float = 60.0
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass
class DispatchStats:
    """Live counters (read by the progress bar)."""

    records: int = 0
    rows: int = 0
    errors: int = 0
    requests: int = 0
    retries: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: Counter = field(default_factory=Counter)

    @property
    def tokens(self) -> int:
        """Prompt and completion tokens so far."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TaskRecord:
    """One record to run a task for: a stable ``key``, its drawn ``model`` and the task's input."""

    key: str
    model: str
    payload: Any


@dataclass
class TaskOutcome:
    """What a record's task ended with: rows, or an error, and every step it took."""

    key: str
    rows: list[Any] | None
    error: dict[str, str] | None
    steps: list[dict[str, Any]]
    model: str | None = None
    attempts: int = 0
    latency_ms: float = 0.0
    tokens: int = 0


class Dispatcher:
    """Drives tasks over records with the roulette's models.

    Args:
        roulette: Models, weights, rate limits and fallback order.
        settings: Concurrency, deadlines, retries and backoff.
        secrets: Values scrubbed from every error message kept.
    """

    def __init__(self, roulette: ModelRoulette, settings: DispatchSettings, secrets: list[str] | None = None) -> None:
        self.roulette = roulette
        self.settings = settings
        self.secrets = secrets or []
        self.stats = DispatchStats()
        self._jitter = random.Random()
        self._defaults = {"temperature": settings.temperature, "max_tokens": settings.max_tokens}

    async def run(self, records: Iterable[TaskRecord], task: TaskFn, on_outcome: Callable[[TaskOutcome], None]) -> None:
        """Run ``task`` for every record; ``on_outcome`` gets each finished record (in completion order)."""
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._http = OpenAICompatibleTransport()
        pending = iter(records)
        workers = [asyncio.create_task(self._worker(pending, task, on_outcome)) for _ in range(self._workers())]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await self._http.close()

    def _workers(self) -> int:
        """Records driven at once: enough to keep every slot busy while some tasks think or back off."""
        return max(2, self.settings.concurrency * 2)

    async def _worker(self, pending: Iterator[TaskRecord], task: TaskFn, on_outcome: Callable) -> None:
        for record in pending:  # a shared iterator: each record goes to exactly one worker
            outcome = await self.drive(record, task)
            self.stats.records += 1
            if outcome.error is None:
                self.stats.rows += len(outcome.rows or [])
            else:
                self.stats.errors += 1
            on_outcome(outcome)

    async def drive(self, record: TaskRecord, task: TaskFn) -> TaskOutcome:
        """Run one record's task to its end."""
        steps: list[dict[str, Any]] = []
        responses: list[LLMResponse] = []
        try:
            rows = await self._drive(record, task, steps, responses)
            error = None
        except TaskError as exc:
            rows, error = None, {"type": exc.error_type, "message": scrub(exc.message, self.secrets)}
        except Exception as exc:  # a bug in a task drops its record, not the run
            message = scrub(f"{type(exc).__name__}: {exc}", self.secrets)
            rows, error = None, {"type": "task_crashed", "message": message[:500]}
        if rows is not None and not isinstance(rows, list | tuple):
            rows, error = None, {"type": "task_crashed", "message": f"task returned {type(rows).__name__}, not a list"}
        return TaskOutcome(
            key=record.key,
            rows=list(rows) if rows is not None else None,
            error=error,
            steps=steps,
            model=responses[-1].model if responses else None,
            attempts=sum(step.get("attempts", 0) for step in steps),
            latency_ms=round(sum(r.latency_ms for r in responses), 1),
            tokens=sum(r.prompt_tokens + r.completion_tokens for r in responses),
        )

    async def _drive(
        self, record: TaskRecord, task: TaskFn, steps: list[dict[str, Any]], responses: list[LLMResponse]
    ) -> Any:
        gen = task(record.payload)
        if not inspect.isgenerator(gen):
            raise TaskError("task_crashed", "the task is not a generator function (it must `yield request(...)`)")
        value: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                step = gen.throw(thrown) if thrown is not None else gen.send(value)
            except StopIteration as stop:
                return stop.value
            thrown = None
            requests = [step] if isinstance(step, LLMRequest) else step
            if not isinstance(requests, list | tuple) or not all(isinstance(r, LLMRequest) for r in requests):
                thrown = TypeError(f"a task must yield request(...) or a list of them, not {type(step).__name__}")
                continue
            results = await asyncio.gather(
                *(self._request(req, record, steps) for req in requests), return_exceptions=True
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                thrown = failed[0]
                if not isinstance(thrown, RequestFailed):
                    raise thrown
                continue
            answers = cast("list[LLMResponse]", results)  # none failed: every result is a response
            responses += answers
            value = answers[0] if isinstance(step, LLMRequest) else list(answers)

    async def _request(self, req: LLMRequest, record: TaskRecord, steps: list[dict[str, Any]]) -> LLMResponse:
        """Make one request, retrying with backoff and rotating models; its step lands in ``steps``."""
        if req.seed is None:  # the same record and step always send the same seed (resumed runs too)
            req = dataclasses.replace(req, seed=derive_seed(record.key, len(steps)) % 2**31)
        entry: dict[str, Any] = {"request": {**req.describe(), "seed": req.seed}}
        steps.append(entry)  # in the order the task asked, whatever order the answers come in
        preferred, excluded = req.model or record.model, set[str]()
        failures: list[dict[str, Any]] = []
        for number in range(1, self.settings.max_attempts + 1):
            spec = self.roulette.route(preferred, excluded)
            if spec is None:
                break
            await self.roulette.limiters[spec.name].acquire()
            async with self._slots:
                spec = await self._reroute_if_resting(spec, preferred, excluded)
                error: AttemptError | None = None
                try:
                    answer = await self._attempt(spec, req)
                except AttemptError as exc:
                    error = exc
            if error is not None:  # the backoff below waits outside the slot
                failures.append(self._failure(number, spec.name, error))
                self.roulette.failed(spec.name)
                if error.kind not in RETRYABLE:
                    excluded.add(spec.name)
                    if self.roulette.route(preferred, excluded) is None:
                        break  # no other model to try: fail now, without a pointless wait
                if number < self.settings.max_attempts:
                    self.stats.retries += 1
                    await asyncio.sleep(self._delay(number, error.retry_after))
                continue
            self.roulette.succeeded(spec.name)
            response = LLMResponse(
                answer.text, answer.parsed, spec.name, number, answer.latency_ms,
                answer.prompt_tokens, answer.completion_tokens, failures,
            )  # fmt: skip
            entry.update(response=response.describe(), attempts=number)
            return response
        last = failures[-1] if failures else {"kind": "no_model", "message": "every model was excluded"}
        entry.update(error={"type": last["kind"], "message": last["message"]}, attempts=len(failures))
        entry["failed_attempts"] = failures
        raise RequestFailed(last["kind"], f"{len(failures)} attempt(s) failed; last: {last['message']}", failures)

    async def _reroute_if_resting(self, spec: Any, preferred: str, excluded: set[str]) -> Any:
        """The model to call now that a slot is free: ``spec``, unless it started resting while this attempt
        waited for the slot and a healthy model can take it (then that model, after its own rate limit)."""
        if self.roulette.healthy(spec.name):
            return spec
        other = self.roulette.route(preferred, excluded)
        if other is None or other.name == spec.name or not self.roulette.healthy(other.name):
            return spec
        await self.roulette.limiters[other.name].acquire()
        return other

    async def _attempt(self, spec: Any, req: LLMRequest) -> Any:
        """One call to ``spec`` (the caller holds a concurrency slot)."""
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            if spec.transport == "openai_compatible":
                answer = await self._http.attempt(spec, req, self.settings.timeout, self._defaults)
            else:
                answer = await attempt(spec, req, self.settings.timeout, self._defaults)
        finally:
            stats.in_flight -= 1
        stats.prompt_tokens += answer.prompt_tokens
        stats.completion_tokens += answer.completion_tokens
        return answer

    def _failure(self, number: int, model: str, exc: AttemptError) -> dict[str, Any]:
        self.stats.failures[exc.kind] += 1
        return {
            "attempt": number,
            "model": model,
            "kind": exc.kind,
            "message": scrub(exc.message, self.secrets),
            "latency_ms": round(exc.latency_ms, 1),
            "retry_after": exc.retry_after,
        }

    def _delay(self, number: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter; a server's Retry-After wins (up to ``retry_after_max``)."""
        if retry_after is not None:
            return min(retry_after, self.settings.retry_after_max)
        ceiling = min(self.settings.backoff_max, self.settings.backoff_base * 2 ** (number - 1))
        return ceiling * (0.5 + 0.5 * self._jitter.random())
