"""Limits on the YAML that Hydra and OmegaConf load for a recipe: alias bombs, deep nesting, duplicate keys.

OmegaConf loads every YAML file (recipe, intent packs, library defaults) with the loader class that
``omegaconf._utils.get_yaml_loader`` returns. ``install_yaml_limits`` swaps that function for one that
returns a subclass of the same loader, which checks the composed node graph *before* any Python object
is constructed:

- the expanded size: every node counted once per use, so an alias is counted each time it is used
  ("billion laughs" is refused in microseconds, not after filling the memory);
- the nesting depth;
- duplicate keys in one mapping, named with their lines;

and turns any YAML error into one ``RecipeError`` naming the file, the key and the line (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from framework.errors import ConfigIssue, RecipeError

_MERGE_TAG = "tag:yaml.org,2002:merge"
_HINT = "Fix the YAML file and run again."


@dataclass(frozen=True)
class YamlLimits:
    """Bounds on one YAML file; the defaults are far above what an honest recipe needs.

    Attributes:
        max_nodes: Scalars, lists and mappings in the file once every alias is expanded where it is
            used (25,000; the largest shipped pack has about 1,100, and Hydra needs about 4 s to compose
            25,000). Long lists of examples belong in a source (CSV, JSONL), not in YAML.
        max_depth: Levels of nesting (64; the shipped files have 5).
    """

    max_nodes: int = 25_000
    max_depth: int = 64


DEFAULT_YAML_LIMITS = YamlLimits()


class _Refused(Exception):
    """A limit was passed at ``path``/``line``; turned into a ``RecipeError`` by the loader."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path if len(path) <= 80 else path[:77] + "..."
        self.message = message


class _Walk:
    """Expanded size and height of each node, memoised by identity (an anchor's subtree is walked once)."""

    def __init__(self, limits: YamlLimits) -> None:
        self.limits = limits
        self.seen: dict[int, tuple[int, int]] = {}
        self.active: set[int] = set()

    def measure(self, node: yaml.Node, path: str, depth: int) -> tuple[int, int]:
        """``(expanded nodes, height)`` of ``node``; raises ``_Refused`` past a limit."""
        key = id(node)
        if key in self.active:
            raise _Refused(
                path, f"an alias refers to a node that contains it (line {_line(node)}); YAML here is a tree"
            )
        size, height = self.seen.get(key) or self._measure_new(node, path, depth)
        if depth + height > self.limits.max_depth:
            raise _Refused(path, f"nested more than {self.limits.max_depth} levels deep (line {_line(node)})")
        return size, height

    def _measure_new(self, node: yaml.Node, path: str, depth: int) -> tuple[int, int]:
        if depth > self.limits.max_depth:
            raise _Refused(path, f"nested more than {self.limits.max_depth} levels deep (line {_line(node)})")
        self.active.add(id(node))
        size, height = 1, 0
        for child, child_path in _children(node, path):
            child_size, child_height = self.measure(child, child_path, depth + 1)
            size, height = size + child_size, max(height, child_height + 1)
            if size > self.limits.max_nodes:
                raise _Refused(
                    path,
                    f"expands to more than {self.limits.max_nodes} YAML nodes once its aliases are expanded "
                    f"(line {_line(node)}); an anchor is copied each time an alias uses it, so nested aliases "
                    "multiply (an alias bomb): write the values out or use fewer aliases",
                )
        self.active.discard(id(node))
        self.seen[id(node)] = (size, height)
        return size, height


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _children(node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
    """Child nodes with their key paths; a mapping's duplicate keys are refused here."""
    if isinstance(node, yaml.SequenceNode):
        return [(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
    if not isinstance(node, yaml.MappingNode):
        return []
    first_line: dict[tuple[str, str], int] = {}
    children: list[tuple[yaml.Node, str]] = []
    for key_node, value_node in node.value:
        name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
            ident = (key_node.tag, name)
            if ident in first_line:
                raise _Refused(
                    _join(path, name),
                    f"duplicate key '{name}' at line {_line(key_node)} (first at line {first_line[ident]}); "
                    "a key may appear once in a mapping: keep one of them",
                )
            first_line[ident] = _line(key_node)
        children += [(key_node, path), (value_node, _join(path, name))]
    return children


@cache
def _limited_loader(base: type, limits: YamlLimits) -> type:
    """``base`` (OmegaConf's loader) checking the node graph before construction."""

    class LimitedLoader(base):
        def get_single_node(self) -> yaml.Node | None:
            node = super().get_single_node()
            if node is not None:
                try:
                    _Walk(limits).measure(node, "", 0)
                except _Refused as exc:
                    raise RecipeError(str(self.name), [ConfigIssue(exc.path, exc.message)], hint=_HINT) from None
            return node

        def get_single_data(self) -> Any:
            try:
                return super().get_single_data()
            except RecursionError:
                issue = ConfigIssue("", f"nested more than {limits.max_depth} levels deep")
            except yaml.MarkedYAMLError as exc:
                issue = _syntax_issue(exc)
            raise RecipeError(str(self.name), [issue], hint=_HINT)

    return LimitedLoader


def _syntax_issue(exc: yaml.MarkedYAMLError) -> ConfigIssue:
    """A YAML error as an issue at its line (the problem and its context in one sentence)."""
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = " ".join(part for part in (exc.context, exc.problem) if part)
    return ConfigIssue(where, f"invalid YAML: {what}")


def install_yaml_limits(limits: YamlLimits = DEFAULT_YAML_LIMITS) -> None:
    """Make every YAML file OmegaConf (hence Hydra) loads from now on go through the limits; idempotent."""
    import omegaconf._utils as omegaconf_utils

    current = omegaconf_utils.get_yaml_loader
    original = getattr(current, "__wrapped__", current)

    def get_yaml_loader() -> type:
        return _limited_loader(_base_loader(original), limits)

    get_yaml_loader.__wrapped__ = original  # type: ignore[attr-defined]
    omegaconf_utils.get_yaml_loader = get_yaml_loader


@cache
def _base_loader(original: Any) -> type:
    """OmegaConf's loader class, built once (``get_yaml_loader`` builds a new class on every call)."""
    return original()
