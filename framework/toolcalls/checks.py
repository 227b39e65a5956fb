"""Checks of a ``tool_calls`` declaration that need more than one key: routing rules that name a tool, and
templates whose arguments or slots do not match the tool they belong to. Each issue is ``(key path, message)``."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

import jinja2
from pydantic import ValidationError

from framework.data.templating import make_environment, template_variables
from framework.toolcalls.schema import ToolCallSchema, describe_errors
from framework.toolcalls.spec import COMPLETE, RUNNING, AnswerTemplate, SlotValue, ToolCallsSpec, ToolTemplate

Issue = tuple[str, str]


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def template_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(path, text)`` of every string inside an argument value (nested lists and mappings included)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from template_strings(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from template_strings(item, f"{path}.{key}")


def _slot_issues(env: jinja2.Environment, path: str, source: str, slots: set[str], where: str) -> list[Issue]:
    try:
        names = template_variables(env, source)
    except jinja2.TemplateSyntaxError as exc:
        return [(path, f"template syntax error: {exc.message} in {source!r}")]
    return [
        (path, f"uses slot '{name}' that is defined neither in slots nor in {where}.slots{_hint(name, sorted(slots))}")
        for name in sorted(names - slots)
    ]


def _render(env: jinja2.Environment, value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return env.from_string(value).render(values).strip()
    if isinstance(value, list):
        return [_render(env, item, values) for item in value]
    if isinstance(value, dict):
        return {key: _render(env, item, values) for key, item in value.items()}
    return value


def _trial_call(
    env: jinja2.Environment,
    schema: ToolCallSchema,
    label: str,
    template: ToolTemplate | AnswerTemplate,
    slots: dict[str, list[SlotValue]],
) -> str | None:
    """Render a template once with each slot's first value and read the call back; what went wrong, if anything."""
    sources = [
        template.query,
        *((template.thought,) if isinstance(template, ToolTemplate) else (template.final_answer,)),
    ]
    sources += [text for _, text in template_strings(getattr(template, "arguments", {}), "")]
    names: set[str] = set().union(*(template_variables(env, source) for source in sources))
    values = {name: slots[name][0] for name in names if slots.get(name)}
    try:
        if isinstance(template, AnswerTemplate):
            call: dict[str, Any] = {"status": COMPLETE, "final_answer": _render(env, template.final_answer, values)}
        else:
            tool_use = {"tool_name": label, "arguments": _render(env, template.arguments, values)}
            call = {"status": RUNNING, "thought": _render(env, template.thought, values), "tool_use": tool_use}
        _render(env, template.query, values)
    except jinja2.exceptions.SecurityError as exc:
        return f"is refused by the sandbox: {exc}"
    except jinja2.TemplateError as exc:
        return f"cannot be rendered with the first value of each slot: {type(exc).__name__}: {exc}"
    try:
        schema.coerce(call)
    except ValidationError as exc:
        return f"renders (with the first value of each slot) a call that fails the schema: {describe_errors(exc)}"
    return None


def _rule_issues(spec: ToolCallsSpec) -> list[Issue]:
    known = spec.labels
    issues = []
    for index, rule in enumerate(spec.rules):
        if rule.use not in known:
            issues.append(
                (
                    f"tool_calls.rules[{index}].use",
                    f"names the tool '{rule.use}', which tool_calls.tools does not declare{_hint(rule.use, known)} "
                    f"(known: {', '.join(known)})",
                )
            )
    return issues


def tool_call_issues(spec: ToolCallsSpec, shared_slots: dict[str, list[str]]) -> list[Issue]:
    """Every cross-key problem of a ``tool_calls`` section."""
    issues = _rule_issues(spec)
    env = make_environment()
    schema = ToolCallSchema(spec)
    for name, tool in spec.tools.items():
        where = f"tool_calls.tools.{name}"
        slots = set(shared_slots) | set(tool.slots)
        for slot, values in tool.slots.items():
            if not values:
                issues.append((f"{where}.slots.{slot}", "slot list is empty; give at least one value"))
        declared = list(tool.arguments)
        required = [arg for arg, arg_spec in tool.arguments.items() if arg_spec.required]
        for index, template in enumerate(tool.templates):
            path = f"{where}.templates[{index}]"
            found = len(issues)
            for arg in template.arguments:
                if arg not in tool.arguments:
                    issues.append(
                        (
                            f"{path}.arguments.{arg}",
                            f"is not an argument of {name}{_hint(arg, declared)} (its arguments: "
                            f"{', '.join(declared) or 'none'}); declare it under {where}.arguments or remove it",
                        )
                    )
            for arg in required:
                if arg not in template.arguments:
                    issues.append(
                        (
                            f"{path}.arguments",
                            f"lacks the required argument '{arg}' of {name}; add arguments.{arg} to the template "
                            f"(or set {where}.arguments.{arg}.required: false)",
                        )
                    )
            for part, source in [("query", template.query), ("thought", template.thought)]:
                issues += _slot_issues(env, f"{path}.{part}", source, slots, where)
            for sub, source in template_strings(template.arguments, f"{path}.arguments"):
                issues += _slot_issues(env, sub, source, slots, where)
            if len(issues) == found:  # a template with a known problem is not rendered as well
                problem = _trial_call(env, schema, name, template, spec.slots_of(name, shared_slots))
                issues += [(path, problem)] if problem else []
    if spec.answer is not None:
        where = "tool_calls.answer"
        slots = set(shared_slots) | set(spec.answer.slots)
        for slot, values in spec.answer.slots.items():
            if not values:
                issues.append((f"{where}.slots.{slot}", "slot list is empty; give at least one value"))
        for index, answer in enumerate(spec.answer.templates):
            path = f"{where}.templates[{index}]"
            found = len(issues)
            issues += _slot_issues(env, f"{path}.query", answer.query, slots, where)
            issues += _slot_issues(env, f"{path}.final_answer", answer.final_answer, slots, where)
            if len(issues) == found:
                problem = _trial_call(env, schema, COMPLETE, answer, spec.slots_of(COMPLETE, shared_slots))
                issues += [(path, problem)] if problem else []
    return issues


def templates_missing(spec: ToolCallsSpec) -> list[Issue]:
    """Labels without templates, for a recipe whose only generator is ``tool_template``."""
    issues = [
        (f"tool_calls.tools.{name}.templates", "the tool_template generator needs at least one template")
        for name, tool in spec.tools.items()
        if not tool.templates
    ]
    if spec.answer is not None and not spec.answer.templates:
        issues.append(
            (
                "tool_calls.answer.templates",
                f"the tool_template generator needs at least one template of a direct answer (or set "
                f"tool_calls.answer: null when every query needs a tool; '{COMPLETE}' is then not an intent)",
            )
        )
    return issues
