"""The model roulette: weighted draws over models, per-model rate limits, rotation away from failing models."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Collection
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    """One model of the roulette.

    Attributes:
        name: A litellm model string (``openai/gpt-4o-mini``, ``anthropic/claude-3-5-haiku-latest``, ...).
        weight: Relative share of records drawn for this model.
        rpm: Requests per minute allowed to this model (None: unlimited).
        api_key_env: Name of the environment variable holding its API key (None: litellm's default variable).
        api_base: Base URL of an OpenAI-compatible server (None: the provider's).
        transport: ``litellm`` (any provider) or ``openai_compatible`` (a direct HTTP client for a server at
            ``api_base``; see :mod:`framework.llm.openai_http`).
    """

    name: str
    weight: float = 1.0
    rpm: float | None = None
    api_key_env: str | None = None
    api_base: str | None = None
    transport: str = "litellm"

    def api_key(self) -> str | None:
        """The key, read from the environment at call time (never stored)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class RateLimiter:
    """Spaces requests to one model evenly at ``rpm`` per minute (no bursts)."""

    def __init__(self, rpm: float | None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0

    async def acquire(self) -> None:
        """Wait for this request's slot."""
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass
class _Health:
    failures: int = 0
    closed_until: float = 0.0


@dataclass
class ModelRoulette:
    """Draw a model per record; route each attempt to a healthy model in fallback order.

    A model that fails ``failures_to_rotate`` times in a row is rested for ``cooldown`` seconds: attempts meant
    for it go to the next healthy model of ``fallback`` (then of the remaining models). One success resets it.
    """

    models: list[ModelSpec]
    fallback: list[str] = field(default_factory=list)
    failures_to_rotate: int = 3
    cooldown: float = 30.0

    def __post_init__(self) -> None:
        self.by_name = {spec.name: spec for spec in self.models}
        self.limiters = {spec.name: RateLimiter(spec.rpm) for spec in self.models}
        self.health = {spec.name: _Health() for spec in self.models}
        self.order = list(dict.fromkeys([*self.fallback, *self.by_name]))

    def draw(self, rng: random.Random) -> str:
        """A model name drawn by weight."""
        return rng.choices([m.name for m in self.models], weights=[m.weight for m in self.models])[0]

    def healthy(self, name: str, now: float | None = None) -> bool:
        """Whether the model is not resting."""
        return self.health[name].closed_until <= (time.monotonic() if now is None else now)

    def route(self, preferred: str, exclude: Collection[str] = frozenset()) -> ModelSpec | None:
        """The model for the next attempt: ``preferred`` if healthy, else the next healthy in fallback order.

        When every allowed model rests, the one that wakes first; None when every model is excluded.
        """
        now = time.monotonic()
        candidates = [name for name in [preferred, *self.order] if name not in exclude]
        candidates = list(dict.fromkeys(candidates))
        if not candidates:
            return None
        for name in candidates:
            if self.healthy(name, now):
                return self.by_name[name]
        return self.by_name[min(candidates, key=lambda name: self.health[name].closed_until)]

    def succeeded(self, name: str) -> None:
        """Reset the model's failure count."""
        self.health[name].failures = 0

    def failed(self, name: str) -> bool:
        """Count a failure; returns True when the model starts resting."""
        health = self.health[name]
        health.failures += 1
        if health.failures >= self.failures_to_rotate and self.healthy(name):
            health.closed_until = time.monotonic() + self.cooldown
            return True
        return False
