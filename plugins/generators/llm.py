"""Built-in ``llm`` generator: LLM-written rows through litellm, with a model roulette and diversity axes.

Each intent's rows are asked for in records of ``rows_per_request`` rows. A record draws its model from the
roulette (by weight) and its axis values by rotating through the shuffled combinations of the axes
(domains x personas x styles, or whatever axes the recipe lists), renders the recipe's prompt in the jinja2
sandbox and runs a task (``task``, a registered ``llm_tasks`` plugin) through the dispatcher.

Every finished record goes to an append-only journal in the stage's resume directory the moment it finishes,
so a run killed at any point resumes without asking for a finished record again. Rows are emitted in record
order (never completion order), so a resumed run's rows equal an uninterrupted run's. Failed records become
error records (``llm_errors.jsonl``) with every step's request and response, never rows.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Literal

import jinja2
from pydantic import Field, field_validator, model_validator

from framework.config.schema import RecipeConfig
from framework.data.rows import row_id
from framework.data.seeding import derive_seed, make_rng
from framework.data.templating import PROMPT_LIMITS, TemplateLimitError, make_environment, template_variables
from framework.errors import StageError, StageStopped, UserInputError
from framework.io import write_jsonl
from framework.llm.client import ENDPOINT_KINDS
from framework.llm.dispatcher import Dispatcher, DispatchSettings, TaskOutcome, TaskRecord
from framework.llm.journal import Journal
from framework.llm.records import GenerationRecord, axis_rotation
from framework.llm.roulette import ModelRoulette, ModelSpec
from framework.plugin_api import GenerateContext
from framework.redact import KEY_ENV_ALLOW_VARIABLE, key_env_allowed, key_env_permitted, secret_values
from framework.registry import PluginParams, UnknownPlugin, generators, llm_tasks
from framework.toolcalls.exports import system_prompt

SYSTEM = "You write training data for an intent classifier. Answer with JSON only, no prose."
PROMPT = """\
Write {{ n }} queries that a user might type when their intent is "{{ intent }}": {{ description }}
{% if examples %}Examples of this intent (do not copy them):
{% for example in examples %}- {{ example }}
{% endfor %}{% endif %}{% for name, value in axes.items() %}{{ name | capitalize }}: {{ value }}
{% endfor %}Vary the wording, the length and the vocabulary. Answer with a JSON object {"queries": [...]} \
holding {{ n }} strings."""
PROMPT_VARIABLES = {"intent", "description", "examples", "axes", "n"}
NEGATIVES_PROMPT = """\
A router sends each request that a user types into this product to one of these intents:
{% for item in in_scope %}- {{ item.name }}: {{ item.description }}
{% endfor %}Write {{ n }} requests a user of this product might send that none of these intents covers: \
off-topic questions, chit-chat, requests meant for other products or services, and vague messages that name \
nothing these intents act on.
{% for name, value in axes.items() %}{{ name | capitalize }}: {{ value }}
{% endfor %}Vary the wording, the length and the vocabulary. Answer with a JSON object {"queries": [...]} \
holding {{ n }} strings."""
NEGATIVES_VARIABLES = PROMPT_VARIABLES | {"in_scope"}
TOOL_PROMPT = """\
{{ tools }}

Write {{ n }} realistic requests that a user of these tools might send and that {% if intent == "complete" %}\
are answered directly (status complete: {{ description }}){% else %}need the tool "{{ intent }}" ({{ description }})\
{% endif %}, each with the exact JSON reply described above.
{% for name, value in axes.items() %}{{ name | capitalize }}: {{ value }}
{% endfor %}Each request names the specifics its reply uses (paths, identifiers, numbers); the thought gives the \
reason in one sentence. Vary the wording and the length. Answer with a JSON object \
{"examples": [{"query": "...", "call": {...}}, ...]} holding {{ n }} examples."""
TOOL_VARIABLES = PROMPT_VARIABLES | {"tools"}
TOOL_TASKS = frozenset({"tool_calls"})
BUILTIN_TEXT_TASKS = frozenset({"queries", "paraphrased"})
"""Built-in tasks that write tool calls (a tool-call recipe needs one; a classifier recipe cannot use them)."""
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ModelParams(PluginParams):
    """One model of the roulette.

    Attributes:
        model: A litellm model string, e.g. ``openai/gpt-4o-mini``.
        weight: Relative share of records drawn for this model.
        rpm: Requests per minute allowed (None: no limit).
        api_key_env: The environment variable that holds its API key (None: litellm's default variable).
        api_base: Base URL of an OpenAI-compatible server (None: the provider's).
        transport: ``litellm`` (default; any provider litellm knows) or ``openai_compatible``: a direct HTTP
            client for the server at ``api_base`` that speaks OpenAI's chat completions (vLLM, llama.cpp,
            TGI, Ollama's /v1), with far less CPU per call; an ``openai/`` prefix on ``model`` is dropped.
    """

    model: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)
    rpm: float | None = Field(default=None, gt=0)
    api_key_env: str | None = None
    api_base: str | None = None
    transport: Literal["litellm", "openai_compatible"] = "litellm"
    api_key: str | None = Field(default=None, exclude=True)

    @field_validator("api_key")
    @classmethod
    def _no_literal_keys(cls, value: str | None) -> None:
        if value is not None:
            raise ValueError(
                "API keys are never written in a recipe: put the key in an environment variable and name it "
                "with api_key_env (e.g. api_key_env: OPENAI_API_KEY)"
            )
        return None

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name (letters, digits, underscores)")
        if value is not None and not key_env_permitted(value):
            raise ValueError(
                f"a recipe may read API keys only from variables named like {', '.join(key_env_allowed())}, not "
                f"{value}; to allow another name, set {KEY_ENV_ALLOW_VARIABLE} in your own environment (a "
                f"comma-separated list of patterns, e.g. {KEY_ENV_ALLOW_VARIABLE}='HF_TOKEN,MYCO_*')"
            )
        return value

    @model_validator(mode="after")
    def _direct_needs_a_server(self) -> ModelParams:
        if self.transport == "openai_compatible" and not (self.api_base or "").startswith(("http://", "https://")):
            raise ValueError(
                "transport openai_compatible calls the server at api_base directly: set api_base to its URL "
                "(e.g. http://127.0.0.1:8000/v1), or use transport litellm"
            )
        return self

    def spec(self) -> ModelSpec:
        """The roulette's view of this model."""
        return ModelSpec(self.model, self.weight, self.rpm, self.api_key_env, self.api_base, self.transport)


class LLMParams(PluginParams):
    """Rows written by LLMs.

    Attributes:
        models: The roulette: litellm model strings with weights, rate limits and key variables.
        fallback: Order in which to try other models when one keeps failing (default: the ``models`` order).
        axes: Diversity axes, each a list of values (e.g. domain, persona, style); records rotate over their
            combinations. The prompt sees the drawn values as ``axes``.
        prompt: jinja2 template (sandboxed) of the user prompt; it sees ``intent``, ``description``,
            ``examples``, ``axes`` and ``n`` (rows wanted from the request).
        negatives: The out-of-scope intent's records use ``negatives_prompt`` instead of ``prompt``: off-topic
            requests written from the in-scope intents' descriptions rather than from the fallback's own.
        negatives_prompt: jinja2 template for those records; it also sees ``in_scope``, a list of
            ``{name, description}`` of every other intent (its examples where it has no description).
        tool_prompt: jinja2 template of the user prompt in a tool-call recipe (one with ``tool_calls``); it also
            sees ``tools``, the system prompt listing every tool with its arguments and rules.
        system: System prompt (None: none).
        task: The ``llm_tasks`` plugin run per record (``queries``: one request; ``paraphrased``: two steps).
        task_options: Free-form settings handed to custom tasks as ``record.options``.
        rows_per_intent: Rows wanted per intent (None: ``generate.samples_per_intent`` x this generator's share).
        rows_per_request: Rows asked for per record.
        temperature: Sampling temperature.
        max_tokens: Completion token limit per request.
        concurrency: Most requests in flight at once.
        timeout: Hard deadline of one attempt, in seconds.
        max_attempts: Attempts per request (first try included) before its record fails.
        backoff_base: First retry delay in seconds (doubles per attempt, with jitter; Retry-After wins).
        backoff_max: Longest computed retry delay in seconds.
        failures_to_rotate: Consecutive failures after which a model rests and its requests rotate onward.
        cooldown: Seconds a failing model rests.
        output: ``annotated`` rows carry model, prompt hash, axes, seed, attempts and latency; ``minimal`` rows
            carry the model and axes only (the journal always keeps everything).
        fsync_every: Journal lines between fsyncs.
    """

    models: list[ModelParams] = Field(min_length=1)
    fallback: list[str] = Field(default_factory=list)
    axes: dict[str, list[str]] = Field(default_factory=dict)
    prompt: str = PROMPT
    negatives: bool = False
    negatives_prompt: str = NEGATIVES_PROMPT
    tool_prompt: str = TOOL_PROMPT
    system: str | None = SYSTEM
    task: str = "queries"
    task_options: dict[str, Any] = Field(default_factory=dict)
    rows_per_intent: int | None = Field(default=None, ge=1, le=1_000_000)
    rows_per_request: int = Field(default=5, ge=1, le=50)
    temperature: float = Field(default=0.9, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=1)
    concurrency: int = Field(default=8, ge=1, le=512)
    timeout: float = Field(default=60.0, gt=0, le=3600)
    max_attempts: int = Field(default=5, ge=1, le=50)
    backoff_base: float = Field(default=1.0, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
    failures_to_rotate: int = Field(default=3, ge=1)
    cooldown: float = Field(default=30.0, ge=0)
    output: Literal["annotated", "minimal"] = "annotated"
    fsync_every: int = Field(default=64, ge=1)

    @model_validator(mode="after")
    def _known_fallbacks(self) -> LLMParams:
        names = [m.model for m in self.models]
        unknown = [name for name in self.fallback if name not in names]
        if unknown:
            raise ValueError(f"fallback names {unknown[0]!r}, which is not in models ({', '.join(names)})")
        empty = [name for name, values in self.axes.items() if not values]
        if empty:
            raise ValueError(f"axes.{empty[0]} is an empty list; give it at least one value or remove it")
        return self

    def check_recipe(self, config: RecipeConfig) -> list[tuple[str, str]]:
        """The prompt renders in the sandbox with only known variables; the task exists; intents are described."""
        issues = _prompt_issues(self.prompt)
        if self.negatives:
            issues += [
                ("negatives_prompt", why) for _, why in _prompt_issues(self.negatives_prompt, NEGATIVES_VARIABLES)
            ]
            if config.fallback_intent is None:
                issues.append(
                    ("negatives", "no intent sets out_of_scope: true, so there is no intent to write negatives for")
                )
        try:
            llm_tasks.resolve(self.task)
        except UnknownPlugin as exc:
            issues.append(("task", str(exc)))
        if config.tool_calls is not None:
            issues += [("tool_prompt", why) for _, why in _prompt_issues(self.tool_prompt, TOOL_VARIABLES)]
            if self.task in BUILTIN_TEXT_TASKS:
                issues.append(
                    (
                        "task",
                        f"the {self.task} task writes queries without calls; a tool-call recipe needs task: tool_calls",
                    )
                )
        elif self.task in TOOL_TASKS:
            issues.append(("task", f"the {self.task} task writes tool calls, and the recipe declares no tool_calls"))
        for intent, spec in config.intents.items():
            if not spec.description and not spec.examples:
                issues.append(("models", f"intent {intent} has neither a description nor examples to prompt with"))
        return issues


def _prompt_issues(source: str, allowed_variables: set[str] = PROMPT_VARIABLES) -> list[tuple[str, str]]:
    env = make_environment(limits=PROMPT_LIMITS)
    try:
        unknown = template_variables(env, source) - allowed_variables
        if unknown:
            allowed = ", ".join(sorted(allowed_variables))
            used = ", ".join(sorted(unknown))
            return [("prompt", f"the prompt uses {used}; it may use {allowed} (axis values are axes.NAME)")]
        sample: dict[str, Any] = (
            {"in_scope": [{"name": "x", "description": "x"}]} if "in_scope" in allowed_variables else {}
        )
        sample |= {"tools": "x"} if "tools" in allowed_variables else {}
        env.from_string(source).render(intent="x", description="x", examples=["x"], axes={"style": "x"}, n=1, **sample)
    except jinja2.exceptions.SecurityError as exc:
        return [("prompt", f"the prompt is refused by the sandbox: {exc}")]
    except TemplateLimitError as exc:
        return [("prompt", f"the prompt {str(exc).removeprefix('template ')}")]
    except jinja2.TemplateError as exc:
        return [("prompt", f"the prompt does not render: {exc}")]
    return []


def _render_prompt(template: jinja2.Template, generator: str, variables: dict[str, Any]) -> str:
    """The prompt for one record; a prompt that fails for these values (a limit, a type error) stops the stage."""
    try:
        return template.render(variables)
    except jinja2.TemplateError as exc:
        where = f"generate.generators.{generator}.prompt"
        raise StageError(f"{where}: the prompt cannot be rendered for intent {variables['intent']!r}: {exc}") from None


def build_records(params: LLMParams, ctx: GenerateContext) -> list[TaskRecord]:
    """Every record of every intent, in a fixed order, each with its model, axes and rendered prompt."""
    env = make_environment(limits=PROMPT_LIMITS)
    template = env.from_string(params.prompt if ctx.tool_calls is None else params.tool_prompt)
    tools = system_prompt(ctx.tool_calls) if ctx.tool_calls is not None else None
    negatives = env.from_string(params.negatives_prompt) if params.negatives else None
    in_scope = [
        {"name": name, "description": spec.description or "; ".join(spec.examples[:3])}
        for name, spec in ctx.intents.items()
        if not spec.out_of_scope
    ]
    roulette = ModelRoulette([m.spec() for m in params.models])
    records = []
    for intent, spec in ctx.intents.items():
        prompt = negatives if negatives is not None and spec.out_of_scope else template
        wanted = params.rows_per_intent or ctx.counts.get(intent, 0)
        rotation = axis_rotation(params.axes, make_rng(ctx.seed, "axes", intent))
        for index in range(-(-wanted // params.rows_per_request)):
            n = min(params.rows_per_request, wanted - index * params.rows_per_request)
            axes = rotation[index % len(rotation)]
            variables = {"intent": intent, "description": spec.description, "examples": spec.examples, "axes": axes}
            if prompt is negatives:
                variables["in_scope"] = in_scope
            if tools is not None:
                variables["tools"] = tools
            record = GenerationRecord(
                key=f"{intent}:{index:05d}",
                intent=intent,
                description=spec.description,
                examples=tuple(spec.examples),
                axes=axes,
                index=index,
                n=n,
                seed=derive_seed(ctx.seed, intent, index),
                prompt=_render_prompt(prompt, ctx.name, {**variables, "n": n}),
                system=params.system,
                options=params.task_options,
                tool_calls=ctx.tool_calls,
            )
            records.append(TaskRecord(record.key, roulette.draw(make_rng(record.seed, "model")), record))
    return records


@generators.register("llm", params=LLMParams)
def llm(params: LLMParams, ctx: GenerateContext) -> Iterator[dict[str, Any]]:
    """Rows written by LLMs through litellm: model roulette, diversity axes, resumable journal."""
    if ctx.resume_dir is None:
        raise UserInputError(f"generate.generators.{ctx.name}: the llm generator runs inside a pipeline stage")
    _check_keys(params, ctx.name)
    task = llm_tasks.resolve(params.task)
    records = build_records(params, ctx)
    with Journal(ctx.resume_dir / f"{ctx.name}.jsonl", fsync_every=params.fsync_every) as journal:
        if journal.dropped_torn_line:
            ctx.warn("the journal's last line was torn by a crash; that record is requested again")
        pending = [record for record in records if _needs_request(journal.records.get(record.key))]
        retried = sum(record.key in journal for record in pending)
        if retried:
            ctx.warn(
                f"{retried} records that failed for the endpoint (connection, 5xx, rate limit, ...) are requested again"
            )
        chosen = pending if ctx.limit is None else pending[: ctx.limit]
        ctx.advance(sum(len(journal.records[r.key].get("rows") or []) for r in records if r.key in journal))
        stats = _dispatch(params, ctx, chosen, task.func, journal, task.id)
        done = dict(journal.records)
    if len(chosen) < len(pending):
        left = len(pending) - len(chosen)
        raise StageStopped(
            f"generate.generators.{ctx.name}: stopped after {len(chosen)} records (--limit {ctx.limit}); "
            f"{left} of {len(records)} are left. Run the same command again to finish them."
        )
    yield from _emit(params, ctx, records, done, stats, task.id)


def _needs_request(entry: dict | None) -> bool:
    """Not journaled yet, or journaled as failed by the endpoint (an outage, a bad key) rather than the record."""
    return entry is None or (entry["status"] == "error" and entry["error"]["type"] in ENDPOINT_KINDS)


def _check_keys(params: LLMParams, name: str) -> None:
    for index, model in enumerate(params.models):
        if model.api_key_env and not os.environ.get(model.api_key_env):
            raise UserInputError(
                f"generate.generators.{name}.models.{index}.api_key_env names {model.api_key_env}, which is not set "
                f"in the environment. Export it (export {model.api_key_env}=...) and run again; keys never go in "
                "the recipe."
            )


def _dispatch(
    params: LLMParams,
    ctx: GenerateContext,
    records: list[TaskRecord],
    task: Any,
    journal: Journal,
    task_id: str,
) -> dict[str, Any]:
    """Run the records through the dispatcher; each outcome is journaled the moment it finishes."""
    roulette = ModelRoulette(
        [m.spec() for m in params.models], params.fallback, params.failures_to_rotate, params.cooldown
    )
    settings = DispatchSettings(
        concurrency=params.concurrency,
        timeout=params.timeout,
        max_attempts=params.max_attempts,
        backoff_base=params.backoff_base,
        backoff_max=params.backoff_max,
        temperature=params.temperature,
        max_tokens=params.max_tokens,
    )
    secrets = secret_values([m.api_key_env for m in params.models if m.api_key_env])
    dispatcher = Dispatcher(roulette, settings, secrets)
    payloads = {record.key: record.payload for record in records}

    def finished(outcome: TaskOutcome) -> None:
        journal.append(_journal_record(outcome, payloads[outcome.key], ctx, task_id))
        ctx.advance(len(outcome.rows or []))

    async def main() -> None:
        ticker = asyncio.create_task(_tick(dispatcher, ctx))
        try:
            await dispatcher.run(records, task, finished)
        finally:
            ticker.cancel()
            _show(dispatcher, ctx)

    if records:
        asyncio.run(main())
    stats = dispatcher.stats
    return {
        "requested_records": len(records),
        "requests": stats.requests,
        "retries": stats.retries,
        "max_in_flight": stats.max_in_flight,
        "tokens": {"prompt": stats.prompt_tokens, "completion": stats.completion_tokens},
        "failed_attempts": dict(stats.failures),
    }


async def _tick(dispatcher: Dispatcher, ctx: GenerateContext) -> None:
    while True:
        _show(dispatcher, ctx)
        await asyncio.sleep(0.25)


def _show(dispatcher: Dispatcher, ctx: GenerateContext) -> None:
    s = dispatcher.stats
    ctx.note(
        f"{s.rows} rows · {s.errors} failed records · {s.in_flight} in flight · {s.retries} retries · "
        f"{s.tokens:,} tokens"
    )


def _journal_record(outcome: TaskOutcome, record: GenerationRecord, ctx: GenerateContext, task_id: str) -> dict:
    first = outcome.steps[0]["request"]["prompt_hash"] if outcome.steps else None
    return {
        "key": outcome.key,
        "status": "ok" if outcome.error is None else "error",
        "intent": record.intent,
        "index": record.index,
        "rows": [str(text) if not isinstance(text, dict) else text for text in outcome.rows or []],
        "error": outcome.error,
        "task": task_id,
        "model": outcome.model,
        "axes": record.axes,
        "seed": record.seed,
        "prompt_hash": first,
        "attempts": outcome.attempts,
        "latency_ms": outcome.latency_ms,
        "tokens": outcome.tokens,
        "input": {"intent": record.intent, "axes": record.axes, "n": record.n, "prompt": record.prompt},
        "steps": outcome.steps,
        "recipe_fingerprint": ctx.fingerprint,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _emit(
    params: LLMParams,
    ctx: GenerateContext,
    records: list[TaskRecord],
    done: dict[str, dict],
    stats: dict[str, Any],
    task_id: str,
) -> Iterator[dict[str, Any]]:
    """Rows in record order, at most the wanted count per intent; errors to ``llm_errors.jsonl``."""
    errors, per_model, emitted = [], Counter(), Counter()
    for item in records:
        entry = done[item.key]
        record: GenerationRecord = item.payload
        if entry["status"] != "ok":
            errors.append(entry)
            continue
        for j, value in enumerate(entry["rows"]):
            text = value["text"] if isinstance(value, dict) else value
            intent = value.get("intent", record.intent) if isinstance(value, dict) else record.intent
            if intent not in ctx.intents:
                ctx.warn(f"task returned a row for unknown intent {intent!r}; dropped")
                continue
            per_model[entry["model"]] += 1
            emitted[intent] += 1
            row = {
                "id": row_id(ctx.name, record.intent, record.index, j),
                "text": text,
                "intent": intent,
                "source": ctx.name,
                "provenance": _provenance(params, ctx, entry, task_id),
            }
            if isinstance(value, dict) and "output" in value:  # a tool call, checked by the validation layers
                row["output"] = value["output"]
            yield row
    if records and len(errors) == len(records):
        kinds = Counter(e["error"]["type"] for e in errors)
        last = errors[-1]["error"]["message"].rstrip(".")
        raise StageError(
            f"generate.generators.{ctx.name}: all {len(records)} records failed "
            f"({', '.join(f'{k}: {n}' for k, n in kinds.items())}); last error: {last}. "
            f"Check generate.generators.{ctx.name}.models (model names, api_base, api_key_env) and that the "
            "endpoint answers, then run the same command again: records that failed for the endpoint "
            f"({', '.join(sorted(ENDPOINT_KINDS))}) are requested again. The journal is "
            f"{ctx.resume_dir / (ctx.name + '.jsonl')}; delete it to request every record again."
        )
    write_jsonl(ctx.work_dir / f"{ctx.name}.errors.jsonl", errors)
    wanted = {intent: params.rows_per_intent or ctx.counts.get(intent, 0) for intent in ctx.intents}
    short = {intent: (emitted[intent], n) for intent, n in wanted.items() if emitted[intent] < n}
    if errors:
        kinds = Counter(e["error"]["type"] for e in errors)
        ctx.warn(
            f"{len(errors)} of {len(records)} records failed ({', '.join(f'{k}: {n}' for k, n in kinds.items())}); "
            f"see {ctx.name}.errors.jsonl"
        )
    if short:
        intent, (got, n) = next(iter(short.items()))
        ctx.warn(f"{len(short)} intents got fewer rows than wanted (e.g. {intent}: {got} of {n})")
    ctx.details.update(
        stats,
        records=len(records),
        failed_records=len(errors),
        rows_per_model=dict(per_model),
        errors_file=f"{ctx.name}.errors.jsonl",
    )


def _provenance(params: LLMParams, ctx: GenerateContext, entry: dict, task_id: str) -> dict[str, Any]:
    provenance = {
        "generator": ctx.name,
        "plugin": ctx.plugin_id,
        "synthetic": True,
        "model": entry["model"],
        "axes": entry["axes"],
    }
    if params.output == "annotated":
        provenance.update(
            task=task_id,
            record=entry["key"],
            seed=entry["seed"],
            prompt_hash=entry["prompt_hash"],
            attempts=entry["attempts"],
            latency_ms=entry["latency_ms"],
        )
    return provenance
