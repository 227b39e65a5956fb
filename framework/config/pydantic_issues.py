"""Convert pydantic validation errors into ``ConfigIssue`` lines with did-you-mean hints."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from framework.errors import ConfigIssue

_MISSING = object()


def _unwrap(annotation: Any) -> Any:
    """Strip Optional / Union-with-None to the one model type inside, if any."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(inner[0]) if len(inner) == 1 else annotation
    return annotation


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at ``loc`` (None when it is not a model)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = _field_by_key(current, str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _field_by_key(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """The keys a model accepts, by their YAML spelling."""
    return [field.alias or name for name, field in model.model_fields.items()]


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` — did you mean 'x'?`` or an empty string."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def join_path(prefix: str, loc: tuple[Any, ...]) -> str:
    """``prefix`` + dotted ``loc`` (list indices as ``[i]``)."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def issues_from_validation(
    exc: ValidationError, model: type[BaseModel], prefix: str = "", owner: str = "", beside: tuple[str, ...] = ()
) -> list[ConfigIssue]:
    """One issue per pydantic error, with the key path, the value and did-you-mean for unknown keys.

    ``owner`` names what the keys belong to (e.g. ``plugin builtin.quality.v1``) in unknown-key messages;
    ``beside`` are the other keys valid at the top of the same mapping (a plugin section's own keys).
    """
    issues = []
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = join_path(prefix, loc)
        if error["type"] == "extra_forbidden":
            owning_model = _model_at(model, loc[:-1])
            choices = allowed_keys(owning_model) if owning_model else []
            choices += [key for key in beside if len(loc) == 1 and key not in choices]
            hint = did_you_mean(str(loc[-1]), choices)
            known = f" (known keys: {', '.join(choices)})" if choices and not hint else ""
            label = f"unknown key for {owner}" if owner else "unknown key"
            issues.append(ConfigIssue(path, f"{label}{hint}{known}"))
            continue
        if error["type"] == "missing":
            issues.append(ConfigIssue(path, "required key is missing"))
            continue
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input", _MISSING)
        if error["type"] == "string_type" and isinstance(value, bool):
            message += "; YAML reads yes/no/on/off/true/false as booleans, so quote the value"
        issues.append(
            ConfigIssue(path, message, value, has_value=value is not _MISSING and not isinstance(value, dict))
        )
    return issues
