"""Built-in ``tool_template`` generator: tool-call rows from the templates under ``tool_calls.tools``.

Each template holds a query, a thought and the call's arguments (or, for a direct answer, a query and the answer).
One draw of slot values fills them all, so the call is right by construction: ``find where {{ symbol }} is
defined`` and ``{query: "{{ symbol }}", mode: exact}`` name the same symbol. Rendering happens in the project's
jinja2 sandbox; every draw comes from an RNG seeded with stable parts (byte-identical output across processes).
Rendered argument text is converted to the declared types (``"30"`` -> 30 for an integer); a call that still
fails its schema is kept as rendered, for the structural layer to reject with the reason.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jinja2
from pydantic import Field, ValidationError

from framework.data.rows import normalize_text, row_id
from framework.data.seeding import derive_seed, make_rng
from framework.data.templating import make_environment, template_variables
from framework.errors import StageError
from framework.plugin_api import GenerateContext
from framework.registry import PluginParams, generators
from framework.toolcalls.checks import template_strings
from framework.toolcalls.schema import ToolCallSchema
from framework.toolcalls.spec import COMPLETE, RUNNING, AnswerTemplate, SlotValue, ToolCallsSpec, ToolTemplate

if TYPE_CHECKING:
    from framework.config.schema import RecipeConfig

_ADVANCE_EVERY = 100


class Params(PluginParams):
    """Params of the ``tool_template`` generator.

    Attributes:
        max_attempts: Draws per row to find a query not yet produced for its tool, >= 1.
    """

    max_attempts: int = Field(default=30, ge=1)

    def check_recipe(self, config: RecipeConfig) -> list[tuple[str, str]]:
        """The generator renders the templates of ``tool_calls``: the recipe must declare them."""
        if config.tool_calls is None:
            return [
                (
                    "plugin",
                    "the tool_template generator makes tool-call rows from tool_calls.tools, and the recipe "
                    "declares no tool_calls section; declare the tools, or use the template generator for a classifier",
                )
            ]
        return []


@dataclass(frozen=True)
class _Part:
    """One compiled string of a template: where it sits (``query``, ``arguments.path``) and its slots."""

    where: str
    source: str
    compiled: jinja2.Template
    variables: frozenset[str]


@dataclass
class _Compiled:
    """A template compiled once: its parts and the slots any of them use."""

    index: int
    template: ToolTemplate | AnswerTemplate
    parts: list[_Part]
    variables: tuple[str, ...]


@dataclass
class _Job:
    label: str
    templates: list[_Compiled]
    slots: dict[str, list[SlotValue]]
    seen: set[str] = field(default_factory=set)


class _Renderer:
    def __init__(self) -> None:
        self.rng = random.Random(0)
        self.env = make_environment(self.rng)

    def compile(self, label: str, index: int, template: ToolTemplate | AnswerTemplate) -> _Compiled:
        sources = [("query", template.query)]
        if isinstance(template, ToolTemplate):
            sources.append(("thought", template.thought))
            sources += list(template_strings(template.arguments, "arguments"))
        else:
            sources.append(("final_answer", template.final_answer))
        parts = []
        for where, source in sources:
            try:
                parts.append(
                    _Part(where, source, self.env.from_string(source), frozenset(template_variables(self.env, source)))
                )
            except jinja2.TemplateError as exc:
                raise _error(label, index, where, source, exc) from exc
        variables = tuple(sorted(set().union(*(part.variables for part in parts))))
        return _Compiled(index, template, parts, variables)

    def render(self, job: _Job, compiled: _Compiled, seed_parts: tuple[object, ...]) -> tuple[dict[str, str], dict]:
        """Rendered parts by place, and the slot values drawn."""
        self.rng.seed(derive_seed(*seed_parts))
        values = {name: self.rng.choice(job.slots[name]) for name in compiled.variables}
        rendered = {}
        for part in compiled.parts:
            try:
                text = part.compiled.render(values)
            except Exception as exc:  # whatever a recipe's template raises is the recipe's fault
                raise _error(job.label, compiled.index, part.where, part.source, exc) from exc
            rendered[part.where] = " ".join(text.split()) if part.where in ("query", "thought") else text.strip()
        return rendered, values


def _filled(value: Any, path: str, rendered: dict[str, str]) -> Any:
    """An argument value with each template string replaced by its rendering."""
    if isinstance(value, str):
        return rendered[path]
    if isinstance(value, list):
        return [_filled(item, f"{path}[{index}]", rendered) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: _filled(item, f"{path}.{key}", rendered) for key, item in value.items()}
    return value


def _error(label: str, index: int, where: str, source: str, exc: Exception) -> StageError:
    return StageError(
        f"tool_calls: {label} template #{index} ({where}: {source!r}) cannot be rendered: {type(exc).__name__}: {exc}"
    )


def _output(label: str, compiled: _Compiled, rendered: dict[str, str], schema: ToolCallSchema) -> dict[str, Any]:
    template = compiled.template
    if isinstance(template, AnswerTemplate):
        raw: dict[str, Any] = {"status": COMPLETE, "final_answer": rendered["final_answer"]}
    else:
        arguments = {key: _filled(value, f"arguments.{key}", rendered) for key, value in template.arguments.items()}
        tool_use = {"tool_name": label, "arguments": arguments}
        raw = {"status": RUNNING, "thought": rendered["thought"], "tool_use": tool_use}
    try:
        return schema.dump(schema.coerce(raw))
    except ValidationError:
        return raw  # the structural layer rejects it, with the reason


def _jobs(spec: ToolCallsSpec, ctx: GenerateContext, renderer: _Renderer) -> list[tuple[_Job, int]]:
    """Compile every template up front, so a bad one fails before any row is written."""
    # the intents of a tool-call recipe are derived from its tools and have no slots of their own: each sees the
    # recipe-level slots, which the tools' own overlay
    shared = next(iter(ctx.slots.values()), {})
    jobs = []
    for label, count in ctx.counts.items():
        if label not in spec.labels:
            raise ValueError(f"tool_template generator asked for rows of {label!r}, which is not a tool")
        if count <= 0:
            continue
        templates: list[ToolTemplate] | list[AnswerTemplate]
        if label == COMPLETE:
            templates = spec.answer.templates if spec.answer is not None else []
        else:
            templates = spec.tools[label].templates
        if not templates:
            ctx.warn(f"{label}: has no templates, so the tool_template generator produced 0 rows of {count} asked")
            continue
        slots = spec.slots_of(label, shared)
        compiled = [renderer.compile(label, index, template) for index, template in enumerate(templates)]
        for item in compiled:
            for part in item.parts:
                empty = [name for name in sorted(part.variables) if not slots.get(name)]
                if empty:
                    cause = jinja2.UndefinedError(f"slot {empty[0]!r} has no values")
                    raise _error(label, item.index, part.where, part.source, cause)
        jobs.append((_Job(label, compiled, slots), count))
    return jobs


def _rows(
    job: _Job, count: int, renderer: _Renderer, schema: ToolCallSchema, ctx: GenerateContext, params: Params
) -> Iterator[dict[str, Any]]:
    """Up to ``count`` rows of one tool, templates in shuffled rounds; stops after ``max_attempts`` rows in a
    row found no new query."""
    plan = make_rng(ctx.seed, ctx.name, job.label, "plan")
    produced = failures = position = 0
    order: list[int] = []
    while produced < count and failures < params.max_attempts:
        if not order:
            order = list(range(len(job.templates)))
            plan.shuffle(order)
        compiled = job.templates[order.pop()]
        drawn = None
        for attempt in range(params.max_attempts):
            shifted = job.templates[(compiled.index + attempt // 2) % len(job.templates)] if attempt else compiled
            rendered, values = renderer.render(job, shifted, (ctx.seed, ctx.name, job.label, position, attempt))
            key = normalize_text(rendered["query"]) or rendered["query"]
            if rendered["query"] and key not in job.seen:
                job.seen.add(key)
                drawn = shifted, rendered, values
                break
        position += 1
        if drawn is None:
            failures += 1
            continue
        failures = 0
        template, rendered, values = drawn
        provenance = {
            "generator": ctx.name,
            "plugin": ctx.plugin_id,
            "synthetic": True,
            "seed": ctx.seed,
            "template": template.template.query,
            "template_index": template.index,
            "slots": values,
        }
        yield {
            "id": row_id(ctx.name, job.label, produced),
            "text": rendered["query"],
            "intent": job.label,
            "source": ctx.name,
            "output": _output(job.label, template, rendered, schema),
            "provenance": provenance,
        }
        produced += 1
    if produced < count:
        ctx.warn(f"{job.label}: produced {produced} unique queries of {count} asked; add templates or slot values")


@generators.register("tool_template", params=Params)
def tool_template(params: Params, ctx: GenerateContext) -> Iterator[dict[str, Any]]:
    """Render the templates of ``tool_calls.tools`` (and ``tool_calls.answer``) into queries with their calls.

    Yields ``ctx.counts[label]`` rows per tool when the templates and slot values allow, otherwise as many as it
    can and a warning.

    Raises:
        StageError: The recipe has no ``tool_calls`` section, or a template fails to render.
    """
    if ctx.tool_calls is None:
        raise StageError(
            "the tool_template generator makes tool-call rows: the recipe needs a tool_calls section (see "
            "recipes/agent_router.yaml); for a classifier recipe use the template generator"
        )
    renderer, schema = _Renderer(), ToolCallSchema(ctx.tool_calls)
    pending = 0
    for job, count in _jobs(ctx.tool_calls, ctx, renderer):
        for row in _rows(job, count, renderer, schema, ctx, params):
            pending += 1
            if pending >= _ADVANCE_EVERY:
                ctx.advance(pending)
                pending = 0
            yield row
    if pending:
        ctx.advance(pending)
