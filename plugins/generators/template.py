"""Built-in ``template`` generator: renders each intent's jinja2 templates with random slot values.

Templates render in the project's jinja2 sandbox (``framework.data.templating``) with strict undefined.
Every random choice (template order, slot values, the ``random`` filter, augmentation) comes from RNGs
seeded with stable parts, so the output is byte-identical across processes and ``PYTHONHASHSEED``.

Rows are unique per intent under ``normalize_text`` (the key the dedupe stage uses), so the rows asked
for survive deduplication. With ``eval_seed`` set, the eval stream is drawn first and depends only on
``eval_seed`` (not on the run's seed); the train stream then avoids every eval text.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from framework.data.rows import normalize_text, row_id
from framework.data.seeding import make_rng
from framework.plugin_api import GenerateContext
from framework.plugins.generators._augment import OP_NAMES, augment, protected_words
from framework.plugins.generators._render import CompiledTemplate, TemplateRenderer
from framework.registry import PluginParams, generators

if TYPE_CHECKING:
    from framework.config.schema import RecipeConfig

OpName = Literal["typo", "case", "punct", "drop", "swap"]
StreamName = Literal["train", "eval"]
_ADVANCE_EVERY = 100


class AugmentParams(PluginParams):
    """Noise applied to a share of the rows.

    Attributes:
        ratio: Share of rows augmented, 0..1.
        ops: Ops an augmented row draws from: typo, case, punct, drop, swap (default: all).
        max_ops: Each augmented row gets 1..max_ops distinct ops, 1..5.
    """

    ratio: float = Field(default=0.2, ge=0, le=1)
    ops: list[OpName] = Field(default_factory=lambda: list(OP_NAMES))
    max_ops: int = Field(default=2, ge=1, le=5)

    @field_validator("ops")
    @classmethod
    def _unique_ops(cls, ops: list[OpName]) -> list[OpName]:
        return list(dict.fromkeys(ops))

    @model_validator(mode="after")
    def _ops_when_augmenting(self) -> AugmentParams:
        if self.ratio > 0 and not self.ops:
            raise ValueError("ops must name at least one op when ratio > 0 (or set ratio: 0)")
        return self


class TemplateParams(PluginParams):
    """Params of the ``template`` generator.

    Attributes:
        eval_seed: When set, ``eval_share`` of each intent's rows come from a second stream seeded with
            it and are marked ``provenance.stream: eval`` (the rest ``train``, seeded from the run).
        eval_share: Share of each intent's rows in the eval stream, strictly between 0 and 1.
        augment: Noise applied to a share of the rows (see ``AugmentParams``).
        max_attempts: Draws per row to find a text not yet produced for its intent, >= 1.
    """

    eval_seed: int | None = None
    eval_share: float = Field(default=0.2, gt=0, lt=1)
    augment: AugmentParams = Field(default_factory=AugmentParams)
    max_attempts: int = Field(default=30, ge=1)

    def check_recipe(self, config: RecipeConfig) -> list[tuple[str, str]]:
        """Intent templates make classifier rows: a tool-call recipe needs rows with their calls."""
        if config.tool_calls is not None:
            return [("plugin", "the template generator writes rows without tool calls; a recipe with tool_calls "
                     "uses the tool_template generator (override /generate: tool_template)")]  # fmt: skip
        return []


@dataclass(frozen=True)
class _Stream:
    label: StreamName | None
    seed: int
    count: int


@dataclass
class _IntentJob:
    """Everything needed to produce one intent's rows; ``seen`` holds normalised texts produced."""

    intent: str
    templates: list[CompiledTemplate]
    slots: dict[str, list[str]]
    params: TemplateParams
    ctx: GenerateContext
    renderer: TemplateRenderer
    seen: set[str] = field(default_factory=set)


def _streams(params: TemplateParams, seed: int, count: int) -> list[_Stream]:
    """The eval stream first (so it never depends on the train seed), then train."""
    if params.eval_seed is None:
        return [_Stream(None, seed, count)]
    n_eval = int(count * params.eval_share + 0.5)
    return [_Stream("eval", params.eval_seed, n_eval), _Stream("train", seed, count - n_eval)]


def _schedule(rng: random.Random, n_templates: int) -> Iterator[int]:
    """Endless balanced round-robin over template indices, each round shuffled."""
    while True:
        block = list(range(n_templates))
        rng.shuffle(block)
        yield from block


def _draw(
    job: _IntentJob, stream: _Stream, position: int, template_index: int, augmented: bool
) -> tuple[CompiledTemplate, str, dict[str, str], list[str]] | None:
    """Try up to ``max_attempts`` draws for one row; ``None`` when each gave an empty or seen text.

    The first half of the attempts use the scheduled template, the rest rotate through the others so an
    exhausted template does not starve the intent.
    """
    aug, attempts = job.params.augment, job.params.max_attempts
    primary = attempts - attempts // 2
    for attempt in range(attempts):
        shift = 0 if attempt < primary else attempt - primary + 1
        template = job.templates[(template_index + shift) % len(job.templates)]
        parts = (stream.seed, job.ctx.name, job.intent, stream.label, position, attempt)
        text, values = job.renderer.render(job.intent, template, job.slots, parts)
        applied: list[str] = []
        if augmented and text:
            protected = protected_words(values.values())
            text, applied = augment(text, job.renderer.rng, aug.ops, aug.max_ops, protected)
        key = normalize_text(text) or text
        if text and key not in job.seen:
            job.seen.add(key)
            return template, text, values, applied
    return None


def _row(job: _IntentJob, stream: _Stream, index: int, drawn: tuple[Any, ...]) -> dict[str, Any]:
    template, text, values, applied = drawn
    name = job.ctx.name
    provenance = {
        "generator": name,
        "plugin": job.ctx.plugin_id,
        "synthetic": True,
        "seed": stream.seed,
        "template": template.source,
        "template_index": template.index,
        "stream": stream.label,
        "slots": values,
        "augment": applied,
    }
    row_key = row_id(name, job.intent, stream.label or "all", index)
    return {"id": row_key, "text": text, "intent": job.intent, "source": name, "provenance": provenance}


def _stream_rows(job: _IntentJob, stream: _Stream) -> Iterator[dict[str, Any]]:
    """Rows of one stream; stops at its count or after ``max_attempts`` rows in a row found nothing new."""
    plan = make_rng(stream.seed, job.ctx.name, job.intent, stream.label, "plan")
    n_augmented = int(stream.count * job.params.augment.ratio + 0.5)
    augmented = set(plan.sample(range(stream.count), n_augmented))
    produced = failures = 0
    for position, template_index in enumerate(_schedule(plan, len(job.templates))):
        if produced >= stream.count or failures >= job.params.max_attempts:
            return
        drawn = _draw(job, stream, position, template_index, produced in augmented)
        if drawn is None:
            failures += 1
            continue
        failures = 0
        yield _row(job, stream, produced, drawn)
        produced += 1


def _intent_rows(job: _IntentJob, count: int) -> Iterator[dict[str, Any]]:
    produced = 0
    for stream in _streams(job.params, job.ctx.seed, count):
        for row in _stream_rows(job, stream):
            produced += 1
            yield row
    if produced < count:
        job.ctx.warn(f"{job.intent}: produced {produced} unique rows of {count} asked; add templates or slot values")


def _with_progress(rows: Iterator[dict[str, Any]], advance: Callable[[int], None]) -> Iterator[dict[str, Any]]:
    pending = 0
    for row in rows:
        pending += 1
        if pending >= _ADVANCE_EVERY:
            advance(pending)
            pending = 0
        yield row
    if pending:
        advance(pending)


def _jobs(params: TemplateParams, ctx: GenerateContext) -> list[tuple[_IntentJob, int]]:
    """Compile every intent's templates up front, so a bad template fails before any row is written."""
    renderer, jobs = TemplateRenderer(), []
    for intent, count in ctx.counts.items():
        if intent not in ctx.intents:
            raise ValueError(f"template generator asked for rows of unknown intent {intent!r}")
        if count < 0:
            raise ValueError(f"template generator asked for {count} rows of {intent!r}")
        sources = ctx.intents[intent].templates
        if count and not sources:
            ctx.warn(f"{intent}: has no templates, so the template generator produced 0 rows of {count} asked")
        elif count:
            slots = ctx.slots.get(intent, {})
            compiled = renderer.compile(intent, sources, slots)
            jobs.append((_IntentJob(intent, compiled, slots, params, ctx, renderer), count))
    return jobs


@generators.register("template", params=TemplateParams)
def template(params: TemplateParams, ctx: GenerateContext) -> Iterator[dict[str, Any]]:
    """Render intents' jinja2 templates with random slot values, balanced across templates.

    Yields ``ctx.counts[intent]`` rows per intent when the templates and slot values allow, otherwise
    as many as it can and a warning. See ``TemplateParams`` for the params.

    Raises:
        StageError: A template fails to compile or render (sandbox violation, unknown slot).
    """
    for job, count in _jobs(params, ctx):
        yield from _with_progress(_intent_rows(job, count), ctx.advance)
