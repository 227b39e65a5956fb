"""Pydantic schema of a composed recipe (the "envelope").

The envelope is strict (unknown keys are errors). Plugin sections (a source, a generator, a validation
layer, and the sections stage kinds own, such as the trainer) keep their plugin-specific keys as extras here;
``framework.config.check`` validates those against the named plugin's ``Params`` model.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from framework.toolcalls.spec import ToolCallsSpec, derived_intents

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"
DEFAULT_TARGET = "classifier"
"""The target a recipe builds when it names none (``framework.pipeline.targets``)."""


class StrictModel(BaseModel):
    """Base: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class IntentSpec(StrictModel):
    """One intent, authored in YAML.

    Attributes:
        description: What the intent means; shown to LLM generators and in reports.
        examples: Hand-written example utterances (also used by the anti-parroting check).
        templates: jinja2 templates rendered in a sandbox; ``{{ slot }}`` names a slot list.
        slots: Slot value lists for this intent only; they override recipe-level ``slots``.
        weight: Multiplier on ``generate.samples_per_intent`` for this intent.
        out_of_scope: Marks the out-of-scope / ambiguous class the router falls back to.
        min_words: Rows with fewer words are rejected by the quality layer.
        label: The label this intent has in the data, when it is not a valid intent name (``reverted card
            payment?``); the bundle's router returns it instead of the name. Set by ``intents_from``.
    """

    description: str = ""
    examples: list[str] = Field(default_factory=list)
    templates: list[str] = Field(default_factory=list)
    slots: dict[str, list[str]] = Field(default_factory=dict)
    weight: float = Field(default=1.0, gt=0, le=100)
    out_of_scope: bool = False
    min_words: int | None = Field(default=None, ge=1)
    label: str | None = Field(default=None, min_length=1, max_length=200)


class PluginSection(BaseModel):
    """A section that names a plugin; the other keys are that plugin's params."""

    model_config = ConfigDict(extra="allow")

    plugin: str = Field(min_length=1)

    def plugin_params(self) -> dict[str, Any]:
        """The keys meant for the plugin's own ``Params`` model."""
        core = set(type(self).model_fields)
        return {k: v for k, v in self.model_dump().items() if k not in core}


class GeneratorSection(PluginSection):
    """One generator instance; ``share`` is its part of each intent's rows."""

    share: float = Field(default=1.0, gt=0)


class LayerSection(PluginSection):
    """One validation layer; layers run in the order they appear."""

    enabled: bool = True


class SourceSection(PluginSection):
    """Real labelled data read from a file; ``split`` pins every row to one split (None: the splitter decides)."""

    split: Literal["train", "eval", "test"] | None = None


class GenerateConfig(StrictModel):
    """The generate stage: generators make synthetic rows, ``sources`` (top level) bring real ones."""

    samples_per_intent: int = Field(default=1000, ge=1, le=1_000_000)
    verification_fraction: float = Field(default=0.1, ge=0, le=1)
    generators: dict[str, GeneratorSection] = Field(default_factory=dict)


class ValidateConfig(StrictModel):
    """The validate stage: ordered layers and a gate on the share of rejected rows."""

    layers: dict[str, LayerSection] = Field(default_factory=dict)
    max_rejected_fraction: float = Field(default=0.5, ge=0, le=1)


class PathsConfig(StrictModel):
    """Where run output goes (relative paths are relative to the working directory)."""

    outputs: str = "outputs"


class RecipeConfig(StrictModel):
    """The core of a composed recipe: what every target reads.

    ``target`` names what it builds (``framework.pipeline.targets``). ``tool_calls`` declares the tools of a
    tool-call router (:mod:`framework.toolcalls.spec`); its intents are then the tools (and ``complete``). The
    other top-level sections (``split``, ``trainer``, ``export``, ``calibrate``, ``evaluate``, ``report`` for the
    classifier) belong to the stage
    kinds that read them: ``framework.config.check.recipe_model`` adds them to this model, and the recipe checks
    require the plugin sections of the target's stages. ``notice`` is a line printed when a run starts and ends
    (e.g. by ``+debug``).
    """

    schema_version: Literal[1] = 1
    target: str = Field(default=DEFAULT_TARGET, min_length=1)
    name: str
    description: str = ""
    notice: str = Field(default="", max_length=500)
    seed: int = 13
    paths: PathsConfig = Field(default_factory=PathsConfig)
    slots: dict[str, list[str]] = Field(default_factory=dict)
    intents: dict[str, IntentSpec] = Field(min_length=2)
    intents_from: list[str] | None = None
    sources: dict[str, SourceSection] = Field(default_factory=dict)
    tool_calls: ToolCallsSpec | None = None
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    validate_: ValidateConfig = Field(alias="validate")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _intents_from_tools(cls, data: Any) -> Any:
        """A recipe that declares ``tool_calls`` gets one intent per tool, and ``complete`` for direct answers."""
        if not isinstance(data, dict) or not isinstance(data.get("tool_calls"), dict):
            return data
        if data.get("intents"):
            raise ValueError(
                "a recipe with tool_calls takes its intents from tool_calls.tools (one per tool, and 'complete' "
                "for direct answers); remove the intents section (and any intents pack in its defaults list)"
            )
        return {**data, "intents": derived_intents(data["tool_calls"])}

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not re.match(NAME_PATTERN, name):
            raise ValueError("must start with a letter and use only letters, digits, _ or - (it names output folders)")
        return name

    @field_validator("intents")
    @classmethod
    def _check_intents(cls, intents: dict[str, IntentSpec]) -> dict[str, IntentSpec]:
        bad = [name for name in intents if not re.match(NAME_PATTERN, name)]
        if bad:
            raise ValueError(f"intent names must start with a letter and use letters, digits, _ or -: {bad}")
        labels = [spec.label or name for name, spec in intents.items()]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"two intents would be returned under the same label: {repeated}; give each its own")
        flagged = [name for name, spec in intents.items() if spec.out_of_scope]
        if len(flagged) > 1:
            raise ValueError(f"at most one intent may set out_of_scope: true, found {flagged}; keep it on one")
        return intents

    @field_validator("intents_from", mode="before")
    @classmethod
    def _one_or_more_sources(cls, value: Any) -> Any:
        """``intents_from: sources.train`` or a list of them; stored as source names."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        return [item.removeprefix("sources.") if isinstance(item, str) else item for item in items]

    @model_validator(mode="after")
    def _some_data(self) -> RecipeConfig:
        if not self.generate.generators and not self.sources:
            raise ValueError(
                "the recipe makes no data: add a generator under generate.generators or a source under sources"
            )
        return self

    @property
    def fallback_intent(self) -> str | None:
        """The out-of-scope intent, if the recipe declares one."""
        return next((name for name, spec in self.intents.items() if spec.out_of_scope), None)

    @property
    def display_labels(self) -> dict[str, str]:
        """``{intent: label}`` for the intents whose data label differs from their name (what predict returns)."""
        return {name: spec.label for name, spec in self.intents.items() if spec.label and spec.label != name}

    def slots_for(self, intent: str) -> dict[str, list[str]]:
        """Recipe-level slots overlaid with the intent's own."""
        return {**self.slots, **self.intents[intent].slots}
