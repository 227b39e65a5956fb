"""Built-in ``negatives`` generator: off-topic rows for the recipe's out-of-scope intent, written by no one.

A router learns where its intents end only from text outside them. This generator makes that text for the
intent marked ``out_of_scope: true`` (and for no other), from two kinds, mixed by ``kinds``:

- ``packs``: requests to other products: every intent's templates of the other shipped intent packs
  (``recipes/intents/``), rendered with their own slots in the jinja2 sandbox. A pack that shares an intent
  name with the recipe is the recipe's own and is skipped; ``packs`` names the ones to use instead.
- ``slots``: the recipe's own slot values recombined into nonsense: the words of two to four distinct values
  drawn from all its slots, shuffled, so the router meets its own vocabulary with no request behind it.

LLM-written negatives come from the ``llm`` generator's ``negatives`` switch (a prompt built from the in-scope
intents' descriptions). Every draw is seeded from stable parts, so the rows are the same in every process.

Example::

    generate:
      generators:
        templates: {plugin: template}
        negatives: {plugin: negatives, share: 0.5, kinds: {packs: 0.7, slots: 0.3}}
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator

from framework.config.schema import IntentSpec, RecipeConfig
from framework.data.allocation import allocate
from framework.data.rows import normalize_text, row_id
from framework.data.seeding import make_rng
from framework.errors import StageError
from framework.paths import shipped_recipes_dir
from framework.plugin_api import GenerateContext
from framework.plugins.generators._render import CompiledTemplate, TemplateRenderer
from framework.registry import PluginParams, generators

Kind = Literal["packs", "slots"]
MAX_ATTEMPTS = 20
"""Draws per row to find a text not produced yet."""


def packs_dir() -> Path:
    """Where the shipped intent packs are (``recipes/intents`` in a checkout)."""
    return shipped_recipes_dir() / "intents"


def shipped_packs() -> list[str]:
    """Names of the shipped intent packs."""
    return sorted(path.stem for path in packs_dir().glob("*.yaml"))


class NegativesParams(PluginParams):
    """Params of the ``negatives`` generator.

    Attributes:
        kinds: Share of the rows from each kind: ``packs`` (other shipped intent packs' templates) and
            ``slots`` (the recipe's slot values recombined into nonsense).
        packs: Shipped packs to render; None: every shipped pack with no intent name in common with the recipe.
    """

    kinds: dict[Kind, float] = Field(default_factory=lambda: {"packs": 0.7, "slots": 0.3})
    packs: list[str] | None = None

    @field_validator("kinds")
    @classmethod
    def _some_share(cls, kinds: dict[Kind, float]) -> dict[Kind, float]:
        if any(share < 0 for share in kinds.values()) or not sum(kinds.values()) > 0:
            raise ValueError("kinds must give each kind a share >= 0, and one of them a share > 0")
        return kinds

    @field_validator("packs")
    @classmethod
    def _known_packs(cls, packs: list[str] | None) -> list[str] | None:
        unknown = [name for name in packs or [] if name not in shipped_packs()]
        if unknown:
            raise ValueError(
                f"no shipped intent pack named {', '.join(unknown)} (shipped: {', '.join(shipped_packs())})"
            )
        return packs

    def check_recipe(self, config: RecipeConfig) -> list[tuple[str, str]]:
        """The recipe has an out-of-scope intent to make negatives for."""
        if config.fallback_intent is None:
            return [("plugin", "no intent sets out_of_scope: true, so there is no intent to make negatives for")]
        return []

    def generates_for(self, spec: IntentSpec) -> bool:
        """Rows only for the out-of-scope intent."""
        return spec.out_of_scope

    def files(self) -> list[str]:
        """The pack files read (their bytes feed the generate stage's fingerprint); all shipped ones when
        ``packs`` is None, since which are skipped depends on the recipe."""
        return [str(packs_dir() / f"{name}.yaml") for name in (self.packs or shipped_packs())]


PackTemplate = tuple[str, CompiledTemplate, dict[str, list[str]]]
"""(pack/intent, compiled template, its slots)."""


def _pack_templates(names: list[str], renderer: TemplateRenderer) -> list[PackTemplate]:
    """(pack/intent, compiled template, slots) of every template of every intent of the packs."""
    out = []
    for name in names:
        path = packs_dir() / f"{name}.yaml"
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        shared = document.get("slots") or {}
        for intent, spec in (document.get("intents") or {}).items():
            spec = spec or {}
            slots = {**shared, **(spec.get("slots") or {})}
            where = f"{name}/{intent}"
            for template in renderer.compile(where, list(spec.get("templates") or []), slots):
                out.append((where, template, slots))
    return out


def _chosen_packs(params: NegativesParams, ctx: GenerateContext) -> list[str]:
    if params.packs is not None:
        return params.packs
    own = set(ctx.intents)
    chosen = []
    for name in shipped_packs():
        document = yaml.safe_load((packs_dir() / f"{name}.yaml").read_text(encoding="utf-8")) or {}
        if not own & set(document.get("intents") or {}):
            chosen.append(name)
    return chosen


def _pack_rows(
    params: NegativesParams, ctx: GenerateContext, intent: str, count: int, seen: set[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    renderer = TemplateRenderer()
    templates = _pack_templates(_chosen_packs(params, ctx), renderer)
    if count and not templates:
        ctx.warn(f"{intent}: no other shipped intent pack has templates, so no pack negatives were made")
        return
    rng = make_rng(ctx.seed, ctx.name, intent, "packs")
    for position in range(count):
        for attempt in range(MAX_ATTEMPTS):
            where, template, slots = templates[rng.randrange(len(templates))]
            text, values = renderer.render(where, template, slots, (ctx.seed, ctx.name, intent, position, attempt))
            key = normalize_text(text)
            if key and key not in seen:
                seen.add(key)
                yield text, {"kind": "packs", "pack_intent": where, "template": template.source, "slots": values}
                break


def _slot_rows(ctx: GenerateContext, intent: str, count: int, seen: set[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    values = sorted({value for slots in ctx.slots.values() for values in slots.values() for value in values if value})
    if count and len(values) < 2:
        ctx.warn(f"{intent}: the recipe has fewer than two slot values, so no slot negatives were made")
        return
    rng = make_rng(ctx.seed, ctx.name, intent, "slots")
    for _ in range(count):
        for _attempt in range(MAX_ATTEMPTS):
            picked = rng.sample(values, min(len(values), rng.randint(2, 4)))
            words = [word for value in picked for word in value.split()]
            rng.shuffle(words)
            text = " ".join(words)
            key = normalize_text(text)
            if key and key not in seen:
                seen.add(key)
                yield text, {"kind": "slots", "slots": picked}
                break


@generators.register("negatives", params=NegativesParams)
def negatives(params: NegativesParams, ctx: GenerateContext) -> Iterator[dict[str, Any]]:
    """Off-topic rows for the out-of-scope intent: other shipped packs' requests and the recipe's own slot
    values recombined into nonsense (see the module docstring)."""
    for intent, count in ctx.counts.items():
        if not count:
            continue
        if not ctx.intents[intent].out_of_scope:
            raise StageError(f"the negatives generator was asked for rows of {intent}, which is not out of scope")
        seen: set[str] = set()
        produced = 0
        counts = allocate(count, params.kinds)
        streams = (
            _pack_rows(params, ctx, intent, counts["packs"], seen) if counts.get("packs") else iter(()),
            _slot_rows(ctx, intent, counts["slots"], seen) if counts.get("slots") else iter(()),
        )
        for stream in streams:
            for text, detail in stream:
                provenance = {
                    "generator": ctx.name,
                    "plugin": ctx.plugin_id,
                    "synthetic": True,
                    "seed": ctx.seed,
                    **detail,
                }
                yield {
                    "id": row_id(ctx.name, intent, "all", produced),
                    "text": text,
                    "intent": intent,
                    "source": ctx.name,
                    "provenance": provenance,
                }
                produced += 1
                ctx.advance(1)
        if produced < count:
            ctx.warn(f"{intent}: the negatives generator produced {produced} unique rows of {count} asked")
