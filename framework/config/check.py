"""Validate a composed recipe before any work: envelope, plugin params, templates and slots.

Every problem is collected and raised together as one ``RecipeError``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import jinja2
from pydantic import BaseModel, Field, ValidationError, create_model

from framework.config.intents_from import DerivedIntents, derive_intents
from framework.config.pydantic_issues import allowed_keys, did_you_mean, issues_from_validation
from framework.config.recipe_policy import credential_issues
from framework.config.schema import GeneratorSection, LayerSection, PluginSection, RecipeConfig, SourceSection
from framework.data.templating import TemplateLimitError, make_environment, template_variables
from framework.errors import ConfigIssue, RecipeError, StageError
from framework.pipeline.targets import UnknownTarget, get_target, recipe_sections, required_sections, target_stages
from framework.registry import PluginSpec, Registry, UnknownPlugin, registry
from framework.toolcalls.checks import templates_missing, tool_call_issues

TRIAL_RENDER_SECONDS = 10.0
"""Time for the trial renders of all of a recipe's templates together (each render has its own limit too)."""
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class BoundPlugin:
    """A recipe section bound to its plugin and validated params."""

    path: str
    spec: PluginSpec
    params: BaseModel
    section: PluginSection


@dataclass(frozen=True)
class ValidatedRecipe:
    """A recipe that passed every check, with its plugins resolved."""

    source: str
    raw: dict[str, Any]
    config: RecipeConfig
    sources: dict[str, BoundPlugin]
    generators: dict[str, BoundPlugin]
    layers: dict[str, BoundPlugin]
    single: dict[str, BoundPlugin]
    derived: DerivedIntents | None = None

    def bound(self, section: str) -> BoundPlugin:
        """The plugin of a stage kind's plugin section (``split``, ``trainer``, ``export``, ...)."""
        if section not in self.single:
            raise StageError(
                f"the recipe has no {section} section, which this stage needs; add it (see conf/{section}/)"
            )
        return self.single[section]

    def section(self, key: str, model: type[M]) -> M:
        """A stage kind's section as its model: a plugin section's core keys, or settings with their defaults."""
        value = getattr(self.config, key, None)
        if not isinstance(value, model):
            raise StageError(f"the recipe has no {key} section, which this stage needs; add it (see conf/{key}/)")
        return value

    @property
    def name(self) -> str:
        """The recipe's ``name``."""
        return self.config.name


def recipe_model() -> type[RecipeConfig]:
    """The recipe schema: the core model plus the section of every registered stage kind (a plugin section is
    optional here, required by the recipe checks when the target runs its stage; a settings section has its
    defaults)."""
    return _recipe_model(tuple(recipe_sections().values()))


@functools.cache
def _recipe_model(sections: tuple[Any, ...]) -> type[RecipeConfig]:
    fields: dict[str, Any] = {}
    for section in sections:  # register_stage refused sections under core keys
        if section.plugin_kind is None:
            fields[section.key] = (section.model, Field(default_factory=section.model))
        else:
            fields[section.key] = (section.model | None, None)
    name = f"RecipeConfig_{'_'.join(section.key for section in sections)}"
    model = create_model(name, __base__=RecipeConfig, __doc__=RecipeConfig.__doc__, __module__=__name__, **fields)
    globals()[name] = model  # found by name, as pickle looks classes up
    return model


def _plugin_sections(raw: dict[str, Any]) -> Iterator[tuple[str, Any, type[PluginSection], Registry]]:
    if isinstance(raw.get("sources"), dict):
        for key, section in raw["sources"].items():
            yield f"sources.{key}", section, SourceSection, registry("sources")
    generate = raw.get("generate")
    if isinstance(generate, dict) and isinstance(generate.get("generators"), dict):
        for key, section in generate["generators"].items():
            yield f"generate.generators.{key}", section, GeneratorSection, registry("generators")
    validate = raw.get("validate")
    if isinstance(validate, dict) and isinstance(validate.get("layers"), dict):
        for key, section in validate["layers"].items():
            yield f"validate.layers.{key}", section, LayerSection, registry("validators")
    for key, declared in recipe_sections().items():
        if declared.plugin_kind is not None and isinstance(raw.get(key), dict):
            assert issubclass(declared.model, PluginSection), f"section {key!r}: a plugin section's model"
            yield key, raw[key], declared.model, registry(declared.plugin_kind)


def bind_plugin(
    path: str, raw_section: Any, model: type[PluginSection], registry: Registry
) -> BoundPlugin | list[ConfigIssue]:
    """Resolve the section's plugin and validate its params; reports core and plugin keys together."""
    if not isinstance(raw_section, dict):
        return [ConfigIssue(path, "must be a mapping with a 'plugin' key", raw_section, has_value=True)]
    issues: list[ConfigIssue] = []
    section: PluginSection | None = None
    try:
        section = model.model_validate(raw_section)
    except ValidationError as exc:
        issues += issues_from_validation(exc, model, path)
    if not isinstance(raw_section.get("plugin"), str):
        return issues
    try:
        spec = registry.resolve(raw_section["plugin"])
    except UnknownPlugin as exc:
        return [*issues, ConfigIssue(f"{path}.plugin", str(exc))]
    own = {k: v for k, v in raw_section.items() if k not in model.model_fields}
    try:
        params = spec.params.model_validate(own)
    except ValidationError as exc:
        beside = tuple(key for key in allowed_keys(model) if key != "plugin")
        found = issues_from_validation(exc, spec.params, path, owner=f"plugin {spec.id}", beside=beside)
        return issues + _explain_leftover_keys(found, own, spec, registry, path)
    if issues or section is None:
        return issues
    return BoundPlugin(path, spec, params, section)


def _explain_leftover_keys(
    found: list[ConfigIssue], own: dict[str, Any], spec: PluginSpec, registry: Registry, path: str
) -> list[ConfigIssue]:
    """When every unknown key belongs to another plugin, say so once instead of listing each key."""
    unknown = [i for i in found if i.message.startswith("unknown key")]
    keys = {i.path.rsplit(".", 1)[-1] for i in unknown}
    if len(keys) < 2:
        return found
    owner = next((o for o in registry.all() if o.id != spec.id and keys <= set(o.params.model_fields)), None)
    if owner is None:
        return found
    message = (
        f"keys {', '.join(sorted(keys))} belong to plugin {owner.id}, not {spec.id}: changing only "
        f"{path}.plugin keeps the old plugin's keys; replace the whole section (a conf group option, "
        f"e.g. {path.split('.')[0]}=NAME, or the section in the recipe)"
    )
    return [i for i in found if i not in unknown] + [ConfigIssue(path, message)]


def _template_issues(config: RecipeConfig) -> list[ConfigIssue]:
    """Syntax, unknown slots, sandbox violations and resource limits, found by a trial render of every template."""
    issues: list[ConfigIssue] = []
    env = make_environment()
    stop_at = time.monotonic() + TRIAL_RENDER_SECONDS
    for intent, spec in config.intents.items():
        slots = config.slots_for(intent)
        for index, source in enumerate(spec.templates):
            path = f"intents.{intent}.templates[{index}]"
            try:
                names = template_variables(env, source)
            except jinja2.TemplateSyntaxError as exc:
                issues.append(ConfigIssue(path, f"template syntax error: {exc.message}", source, has_value=True))
                continue
            missing = sorted(names - set(slots))
            for name in missing:
                hint = did_you_mean(name, sorted(slots))
                issues.append(
                    ConfigIssue(
                        path,
                        f"uses slot '{name}' that is defined neither in slots nor in intents.{intent}.slots{hint}",
                    )
                )
            if missing:
                continue
            if time.monotonic() > stop_at:
                message = f"the templates before this one took over {TRIAL_RENDER_SECONDS} s to render once each"
                return [*issues, ConfigIssue(path, message + "; make them cheaper (this one and later were not tried)")]
            issue = _trial_render(env, path, source, {name: slots[name][0] for name in names if slots[name]})
            issues += [issue] if issue else []
    return issues


def _trial_render(env: jinja2.Environment, path: str, source: str, values: dict[str, Any]) -> ConfigIssue | None:
    """Render ``source`` once under the sandbox's limits; the problem found, if any."""
    try:
        env.from_string(source).render(values)
    except jinja2.exceptions.SecurityError as exc:
        return ConfigIssue(path, f"template is refused by the sandbox: {exc}", source, has_value=True)
    except TemplateLimitError as exc:
        return ConfigIssue(path, str(exc), source, has_value=True)
    except jinja2.TemplateError as exc:
        return ConfigIssue(path, f"template fails to render: {exc}", source, has_value=True)
    return None


def _content_issues(
    config: RecipeConfig, bound: dict[str, BoundPlugin], from_data: frozenset[str] = frozenset()
) -> list[ConfigIssue]:
    """Slots, templates and plugin ``check_recipe`` hooks; intents ``from_data`` (added by ``intents_from``)
    need no templates: generators make rows only for those written for them."""
    issues: list[ConfigIssue] = []
    for name, values in config.slots.items():
        if not values:
            issues.append(ConfigIssue(f"slots.{name}", "slot list is empty; give at least one value"))
    generator_names = {b.spec.name for b in bound.values() if b.path.startswith("generate.")}
    uses_templates, uses_llm = "template" in generator_names, "llm" in generator_names
    if config.tool_calls is not None:  # the intents are the tools: their templates live under tool_calls
        found = tool_call_issues(config.tool_calls, config.slots)
        if "tool_template" in generator_names:
            found += templates_missing(config.tool_calls)
        return issues + [ConfigIssue(path, message) for path, message in found] + _hook_issues(config, bound)
    for intent, spec in config.intents.items():
        for name, values in spec.slots.items():
            if not values:
                issues.append(
                    ConfigIssue(f"intents.{intent}.slots.{name}", "slot list is empty; give at least one value")
                )
        described_for_llm = uses_llm and bool(spec.description)
        if intent in from_data:
            continue
        if not spec.templates and not spec.examples and not config.sources and not described_for_llm:
            issues.append(ConfigIssue(f"intents.{intent}", "intent is empty: give it templates (and examples)"))
        elif uses_templates and not spec.templates:
            issues.append(
                ConfigIssue(f"intents.{intent}.templates", "the template generator needs at least one template")
            )
    return issues + _template_issues(config) + _hook_issues(config, bound)


def _hook_issues(config: RecipeConfig, bound: dict[str, BoundPlugin]) -> list[ConfigIssue]:
    """What the plugins' ``check_recipe`` hooks find."""
    issues: list[ConfigIssue] = []
    for plugin in bound.values():
        hook = getattr(plugin.params, "check_recipe", None)
        if callable(hook):
            issues += [ConfigIssue(f"{plugin.path}.{where}", message) for where, message in hook(config)]
    return issues


def key_type_issues(node: Any, path: str = "") -> list[ConfigIssue]:
    """Keys that are not text: YAML reads an unquoted ``yes``/``no``/``on``/``off``/``true``/``false`` as a
    boolean, and an intent named by a number (``3:``) is not a name."""
    issues: list[ConfigIssue] = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = path or "<recipe>"
            if isinstance(key, bool):
                spelled = "'yes', 'on' or 'true'" if key else "'no', 'off' or 'false'"
                message = (
                    f"has a key YAML read as the boolean {key} (from an unquoted {spelled.replace(chr(39), '')}); "
                    f"names and labels are text, so quote the key as your data spells it ({spelled})"
                )
                issues.append(ConfigIssue(where, message))
            elif path == "intents" and not isinstance(key, str):
                message = (
                    f"has the key {key!r}, which is not a name (intent names start with a letter); for labels such "
                    "as this one, take the intents from the data (intents_from: sources.NAME) or map the label to "
                    "a name with the source's label_map"
                )
                issues.append(ConfigIssue(where, message))
            else:
                issues += key_type_issues(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            issues += key_type_issues(item, f"{path}[{index}]")
    return issues


def check_recipe(raw: dict[str, Any], source: str) -> ValidatedRecipe:
    """Validate ``raw`` (a composed recipe) completely or raise ``RecipeError`` listing every issue.

    With ``intents_from``, the named sources are read first and their labels become intents (see
    :mod:`framework.config.intents_from`); the returned recipe's ``raw`` holds the expanded intents.
    """
    issues: list[ConfigIssue] = credential_issues(raw) + key_type_issues(raw)
    if issues:
        raise RecipeError(source, issues)
    original = raw
    raw, derived, found = derive_intents(raw, lambda name: _bind_source(original, name))
    if found:
        raise RecipeError(source, found)
    config: RecipeConfig | None = None
    model = recipe_model()
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        issues += issues_from_validation(exc, model)
    bound: dict[str, BoundPlugin] = {}
    for path, section, section_model, kind_registry in _plugin_sections(raw):
        result = bind_plugin(path, section, section_model, kind_registry)
        if isinstance(result, list):
            issues += [i for i in result if i.render() not in {j.render() for j in issues}]
        else:
            bound[path] = result
    if config is not None:
        issues += _target_issues(config)
        issues += _content_issues(config, bound, frozenset(derived.added) if derived else frozenset())
    if issues or config is None:
        raise RecipeError(source, issues)
    validated = ValidatedRecipe(
        source=source,
        raw=raw,
        config=config,
        sources={p.removeprefix("sources."): b for p, b in bound.items() if p.startswith("sources.")},
        generators={p.removeprefix("generate.generators."): b for p, b in bound.items() if p.startswith("generate.")},
        layers={p.removeprefix("validate.layers."): b for p, b in bound.items() if p.startswith("validate.")},
        single={key: bound[key] for key in recipe_sections() if key in bound},
        derived=derived,
    )
    found = [
        ConfigIssue(path, message)
        for stage in target_stages(config.target)
        for path, message in stage.recipe_issues(validated)
    ]
    if found:
        raise RecipeError(source, found)
    return validated


def _target_issues(config: RecipeConfig) -> list[ConfigIssue]:
    """The recipe's target must be registered, and the plugin sections its stages read must be present."""
    try:
        get_target(config.target)
    except UnknownTarget as exc:
        return [ConfigIssue("target", str(exc), config.target, has_value=True)]
    return [
        ConfigIssue(section, f"the {config.target} target's stages need this section; add it (see conf/{section}/)")
        for section in required_sections(config.target)
        if getattr(config, section, None) is None
    ]


def _bind_source(raw: dict[str, Any], name: str) -> BoundPlugin | list[ConfigIssue]:
    """One source of ``raw`` bound to its plugin (for reading its labels before the whole recipe is checked)."""
    return bind_plugin(f"sources.{name}", raw["sources"][name], SourceSection, registry("sources"))
