"""Sandboxed jinja2 rendering of a recipe's templates, shared by the template and negatives generators.

A private helper (``_*.py``): it is part of the code fingerprint of every generator in this package, so a change
here regenerates their rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import jinja2

from framework.data.seeding import derive_seed
from framework.data.templating import make_environment, template_variables
from framework.errors import StageError


@dataclass(frozen=True)
class CompiledTemplate:
    """A template compiled in the sandbox: its position in the intent, its source and the slots it uses."""

    index: int
    source: str
    compiled: jinja2.Template
    variables: tuple[str, ...]


class TemplateRenderer:
    """One sandboxed environment per run; its ``random`` filter draws from the current row's RNG."""

    def __init__(self) -> None:
        self.rng = random.Random(0)
        self.env = make_environment(self.rng)

    def compile(self, intent: str, sources: list[str], slots: dict[str, list[str]]) -> list[CompiledTemplate]:
        """Parse and compile every template of an intent once; each slot it uses must have values."""
        templates = []
        for index, source in enumerate(sources):
            try:
                variables = tuple(sorted(template_variables(self.env, source)))
                compiled = self.env.from_string(source)
            except jinja2.TemplateError as exc:
                raise _template_error(intent, index, source, exc) from exc
            empty = [name for name in variables if not slots.get(name)]
            if empty:
                cause = jinja2.UndefinedError(f"slot {empty[0]!r} has no values for this intent")
                raise _template_error(intent, index, source, cause)
            templates.append(CompiledTemplate(index, source, compiled, variables))
        return templates

    def render(
        self, intent: str, template: CompiledTemplate, slots: dict[str, list[str]], seed_parts: tuple[object, ...]
    ) -> tuple[str, dict[str, str]]:
        """Reseed the row RNG, draw one value per slot the template uses, render and tidy whitespace."""
        self.rng.seed(derive_seed(*seed_parts))
        values = {name: self.rng.choice(slots[name]) for name in template.variables}
        try:
            text = template.compiled.render(values)
        except Exception as exc:  # whatever a recipe's template raises is the recipe's fault
            raise _template_error(intent, template.index, template.source, exc) from exc
        return " ".join(text.split()), values


def _template_error(intent: str, index: int, source: str, exc: Exception) -> StageError:
    return StageError(f"{intent}: template #{index} {source!r} cannot be rendered: {type(exc).__name__}: {exc}")
