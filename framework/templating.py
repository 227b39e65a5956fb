"""The one jinja2 sandbox that renders recipe templates and prompts.

Templates come from recipes, which may come from someone else: they render in
``SandboxedEnvironment`` (no attribute access to dunder internals, no imports) with
``StrictUndefined`` so a missing slot is an error rather than an empty string.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import jinja2
import jinja2.runtime
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment


def make_environment(rng: random.Random | None = None) -> SandboxedEnvironment:
    """A sandboxed environment whose ``random`` filter draws from ``rng`` (deterministic).

    Reseed ``rng`` before each render to make every row reproducible on its own.
    """
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
    chooser = rng or random.Random(0)

    @jinja2.pass_context  # also stops jinja from folding ``[...] | random`` into a constant at compile time
    def seeded_random(context: jinja2.runtime.Context, values: Iterable[object]) -> object:
        items = list(values)
        if not items:
            raise jinja2.UndefinedError("random filter got an empty sequence")
        return chooser.choice(items)

    env.filters["random"] = seeded_random
    env.globals.pop("lipsum", None)  # it draws from the global random module
    return env


def template_variables(env: SandboxedEnvironment, source: str) -> set[str]:
    """Names a template reads from its context (its slots)."""
    return set(meta.find_undeclared_variables(env.parse(source))) - set(env.globals)
