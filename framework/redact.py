"""Keep secrets out of everything intentcraft writes."""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|authorization)", re.IGNORECASE)
REDACTED = "***redacted***"


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced."""
    if isinstance(value, dict):
        return {
            k: REDACTED if SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def secret_values(extra_names: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Values of environment variables that hold secrets (secret-looking names, plus ``extra_names``)."""
    names = [name for name in os.environ if SECRET_KEY.search(name)] + list(extra_names)
    values = {os.environ.get(name, "") for name in names}
    return sorted((value for value in values if len(value) >= 6), key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every occurrence of a secret value (and of its first 8+ characters) replaced."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
        if len(secret) >= 16:  # providers echo key prefixes ("sk-abcd1234***")
            text = text.replace(secret[:8], REDACTED)
    return text
