"""Exceptions that carry an exit code and a user-facing message.

Exit codes follow the CLI contract: 0 ok, 1 a gate failed, 2 bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from framework.redact import REDACTED, SECRET_KEY, scrub


class IntentcraftError(Exception):
    """Base class for errors reported to the user without a traceback."""

    exit_code = 2


def user_message(exc: BaseException) -> str:
    """What the user reads for an error: its message and any notes added on the way up (``add_note``)."""
    return "\n".join([str(exc), *getattr(exc, "__notes__", [])])


@dataclass
class ConfigIssue:
    """One problem in a recipe: where it is, what is wrong, and what was found there."""

    path: str
    message: str
    value: object = field(default=None)
    has_value: bool = False

    def render(self) -> str:
        """Format as ``path: message (got value)``."""
        where = self.path or "<recipe>"
        text = f"{where}: {self.message}"
        if self.has_value:
            secret = SECRET_KEY.search(self.path.rsplit(".", 1)[-1]) and self.value not in (None, "")
            text += f" (got {REDACTED if secret else _short_repr(self.value)})"
        return text


def _short_repr(value: object, limit: int = 80) -> str:
    text = scrub(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RecipeError(IntentcraftError):
    """The recipe (after composition) is invalid; lists every problem at once."""

    def __init__(self, source: str, issues: list[ConfigIssue], hint: str | None = None) -> None:
        self.source = source
        self.issues = issues
        self.hint = hint
        super().__init__(self.render())

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        """One block naming the recipe and every bad key path."""
        count = len(self.issues)
        noun = "problem" if count == 1 else "problems"
        lines = [f"Recipe {self.source} has {count} {noun}:"]
        lines += [f"  - {issue.render()}" for issue in self.issues]
        lines.append(self.hint or "Fix these keys in the recipe (or the override that set them) and run again.")
        return "\n".join(lines)


class UserInputError(IntentcraftError):
    """Bad input that is not a recipe key: a missing file, a bad command line."""


class StageError(IntentcraftError):
    """A stage could not finish; earlier stages' artifacts are kept."""

    exit_code = 2


class GateFailed(IntentcraftError):
    """A quality gate (accuracy drop, ECE, ...) was not met."""

    exit_code = 1


class StageStopped(Exception):
    """A stage stopped short on purpose (``--limit``); what it did is kept and the next run resumes it.

    Not an error: the run ends with exit code 0 and ``status`` shows the stage as PARTIAL.
    """
