"""Generate stage: run every generator for every intent, then write rows and a review sample."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from framework.config.schema import GeneratorSection, IntentSpec, SourceSection
from framework.data.allocation import allocate
from framework.data.seeding import derive_seed, make_rng
from framework.errors import StageError, UserInputError
from framework.io import write_jsonl
from framework.pipeline.facts import GenerateFacts
from framework.pipeline.runner import StageDef, StageRun, labelled_files
from framework.pipeline.targets import register_stage
from framework.plugin_api import GenerateContext, SourceContext

if TYPE_CHECKING:  # framework.config.check imports the targets, which import the stages
    from framework.config.check import BoundPlugin, ValidatedRecipe

ROWS_FILE = "rows.jsonl"


def rows_wanted(recipe: ValidatedRecipe) -> dict[str, dict[str, int]]:
    """Generator -> intent -> rows to ask for."""
    config = recipe.config
    shares = {name: cast(GeneratorSection, bound.section).share for name, bound in recipe.generators.items()}
    wanted: dict[str, dict[str, int]] = {name: {} for name in shares}
    from_data = set(recipe.derived.added) if recipe.derived else set()
    for intent, spec in config.intents.items():
        total = round(config.generate.samples_per_intent * spec.weight)
        # a generator whose params say it makes no rows of this intent (``generates_for``) takes no share of them
        covering = {name: share for name, share in shares.items() if _params_cover(recipe.generators[name], spec)}
        counts = allocate(total, covering) if covering else {}
        for name in shares:
            asked = intent not in from_data or generates_for(recipe.generators[name].spec.name, spec)
            wanted[name][intent] = counts.get(name, 0) if asked else 0
    return wanted


def _params_cover(bound: BoundPlugin, spec: IntentSpec) -> bool:
    hook = getattr(bound.params, "generates_for", None)
    return bool(hook(spec)) if callable(hook) else True


def generates_for(plugin: str, spec: IntentSpec) -> bool:
    """Whether a generator is asked for rows of an intent taken from data (``intents_from``): the template
    generator when it has templates, the llm generator when it has a description, others when it has either."""
    if plugin == "template":
        return bool(spec.templates)
    if plugin == "llm":
        return bool(spec.description)
    return bool(spec.templates or spec.description)


def _run_generator(
    run: StageRun, name: str, bound: BoundPlugin, counts: dict[str, int], details: dict[str, Any]
) -> list[dict[str, Any]]:
    config = run.recipe.config
    advance = run.progress.task(f"generate: {name}", sum(counts.values()))
    context = GenerateContext(
        name=name,
        plugin_id=bound.spec.id,
        intents=config.intents,
        slots={intent: config.slots_for(intent) for intent in config.intents},
        counts=counts,
        seed=derive_seed(config.seed, "generate", name),
        work_dir=run.work_dir,
        advance=advance,
        warn=lambda message: run.warn(f"{name}: {message}"),
        note=advance.note,
        resume_dir=run.resume_dir,
        limit=run.limit,
        fingerprint=run.fingerprint,
        tool_calls=config.tool_calls,
    )
    rows = list(cast(Iterable[dict[str, Any]], bound.spec.func(bound.params, context)))
    if context.details:
        details[name] = context.details
    return rows


def _run_source(run: StageRun, name: str, bound: BoundPlugin) -> list[dict[str, Any]]:
    config = run.recipe.config
    context = SourceContext(
        name=name,
        plugin_id=bound.spec.id,
        intents=config.intents,
        split=cast(SourceSection, bound.section).split,
        seed=derive_seed(config.seed, "source", name),
        advance=run.progress.task(f"read: {name}", None),
        warn=lambda message: run.warn(f"{name}: {message}"),
    )
    return list(cast(Iterable[dict[str, Any]], bound.spec.func(bound.params, context)))


def source_files(recipe: ValidatedRecipe) -> dict[str, Path]:
    """Every file the recipe's sources and generators read (their params' ``files()``), labelled by source or
    generator: their bytes feed the generate fingerprint."""
    files: dict[str, Path] = {}
    for name, bound in recipe.generators.items():
        lister = getattr(bound.params, "files", None)
        files |= labelled_files(f"generators.{name}", [Path(path) for path in (lister() if callable(lister) else [])])
    for name, bound in recipe.sources.items():
        lister = getattr(bound.params, "files", None)
        listed = lister() if callable(lister) else []
        missing = [path for path in listed if not Path(path).is_file()]
        if missing:
            raise UserInputError(
                f"sources.{name}: {missing[0]} does not exist (relative paths are relative to the working "
                f"directory, {Path.cwd()}). Fix sources.{name}.path in {recipe.source} or run from the directory "
                "it is relative to."
            )
        files |= labelled_files(f"sources.{name}", [Path(path) for path in listed])
    return files


def run_generate(run: StageRun) -> GenerateFacts:
    """Produce ``rows.jsonl`` (real rows from sources, then generated ones) and ``verification_sample.jsonl``."""
    rows: list[dict[str, Any]] = []
    for name, bound in run.recipe.sources.items():
        rows += _run_source(run, name, bound)
    details: dict[str, Any] = {}
    for name, counts in rows_wanted(run.recipe).items():
        rows += _run_generator(run, name, run.recipe.generators[name], counts, details)
    duplicated = [rid for rid, n in Counter(r["id"] for r in rows).items() if n > 1]
    if duplicated:
        raise StageError(
            f"generate: generators produced duplicate row ids (e.g. {duplicated[0]}); this is a plugin bug"
        )
    write_jsonl(run.work_dir / ROWS_FILE, rows)
    fraction = run.recipe.config.generate.verification_fraction
    rng = make_rng(run.recipe.config.seed, "verification")
    sample = [row for row in rows if rng.random() < fraction]
    write_jsonl(run.work_dir / "verification_sample.jsonl", sample)
    per_intent = Counter(row["intent"] for row in rows)
    per_generator = Counter(row["provenance"]["generator"] for row in rows)
    return GenerateFacts(
        counts={
            "rows": len(rows),
            "per_intent": dict(sorted(per_intent.items())),
            "per_generator": dict(per_generator),
        },
        verification_sample={"rows": len(sample), "file": "verification_sample.jsonl"},
        generators=details or None,
        rows_file=ROWS_FILE,
    )


GENERATE = register_stage(
    StageDef(
        name="generate",
        upstream=(),
        config_keys=("seed", "slots", "intents", "tool_calls", "sources", "generate"),
        facts=GenerateFacts,
        run=run_generate,
        plugins=lambda recipe: [*recipe.sources.values(), *recipe.generators.values()],
        files=source_files,
        plugin_kinds=("sources", "generators", "llm_tasks"),  # LLM tasks: the prompts the llm generator runs
    )
)
