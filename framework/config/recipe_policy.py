"""What a recipe and its overrides may ask of Hydra and of the environment: a recipe is data, never code.

Checked on the composed but unresolved config, before anything runs:

- ``hydra.*``: the composed Hydra node must equal the one the library defaults give, except for an
  allow-list (``HYDRA_ALLOWED`` below): a launcher or sweeper named in ``LAUNCHERS``/``SWEEPERS`` with its
  plain settings, ``hydra.sweeper.params`` over recipe keys, ``hydra.job.chdir: false``. Callbacks, logging
  handlers, ``env_set``, run and sweep directories and any other ``_target_`` are refused.
- Resolvers: a recipe value may interpolate other keys (``${name}``) but call no resolver (``${oc.env:X}``
  would copy a secret into the recipe and everything written from it); API keys come only from the
  variable named by ``api_key_env``.
- ``paths.*``: where intentcraft writes is the user's choice (an override on the command line), never a
  recipe's; likewise an ``api_base`` that is not loopback (the user's key goes to it).
- Credentials inside URIs, in any value; an intent defined by two intent packs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from framework.errors import ConfigIssue
from framework.redact import API_BASE_ALLOW_VARIABLE, api_base_permitted, credentials_in

# Hydra's own launchers and sweepers (and the well-kept plugins) a recipe may choose, with the settings it may
# set on them: plain values only, never a path, a callback or a ``_target_``.
LAUNCHERS: dict[str, frozenset[str]] = {
    "basic": frozenset(),
    "joblib": frozenset({"n_jobs", "backend", "prefer", "require", "verbose", "timeout", "pre_dispatch", "batch_size"}),
}
SWEEPERS: dict[str, frozenset[str]] = {"basic": frozenset({"max_batch_size", "params"})}
# Filled in by Hydra for every composition, whatever the recipe says: not compared. (``overrides`` is Hydra's
# too, but a recipe that pre-fills it injects overrides into every sweep job: ``override_list_issues``.)
HYDRA_COMPUTED = frozenset(
    {
        "runtime.choices",
        "runtime.config_sources",
        "runtime.cwd",
        "runtime.version",
        "runtime.version_base",
        "runtime.output_dir",
        "job.config_name",
        "job.override_dirname",
        "overrides",
    }
)
# ``hydra.*`` keys an override on the command line may name (checked again, with their values, once composed).
OVERRIDABLE = ("hydra/launcher", "hydra/sweeper", "hydra.launcher.", "hydra.sweeper.params", "hydra.sweeper.max_batch")
HYDRA_ALLOWED = (
    "hydra.sweeper.params, hydra.sweeper.max_batch_size, a launcher among "
    + ", ".join(f"hydra/launcher={name}" for name in LAUNCHERS)
    + " with its plain settings (hydra.launcher.n_jobs, ...), hydra.job.chdir: false"
)
_PROTECTED_PREFIXES = ("hydra", "paths")


def override_key(override: str) -> str:
    """The key an override ``+a.b=1`` / ``~a.b`` / ``a.b=1`` names: ``a.b``."""
    return override.split("=", 1)[0].lstrip("+~")


def choice_issues(choices: dict[str, Any]) -> list[ConfigIssue]:
    """A launcher or sweeper the recipe chose that is not in the allow-list."""
    issues = []
    for group, allowed in (("hydra/launcher", LAUNCHERS), ("hydra/sweeper", SWEEPERS)):
        choice = choices.get(group)
        if choice not in allowed:
            kind = group.split("/")[1]
            issues.append(ConfigIssue(group, f"'{choice}' is not a {kind} a recipe may choose ({', '.join(allowed)})"))
    return issues


def hydra_issues(hydra: dict[str, Any], reference: dict[str, Any]) -> list[ConfigIssue]:
    """Every ``hydra.*`` key that differs from the library defaults' and is not allow-listed.

    ``reference`` is the Hydra node of the library defaults composed with the same (allowed) launcher and
    sweeper, so a recipe's own ``hydra/launcher/basic.yaml`` that swaps the ``_target_`` is a difference too.
    """
    choices = hydra["runtime"]["choices"]
    settings = {"launcher": LAUNCHERS[choices["hydra/launcher"]], "sweeper": SWEEPERS[choices["hydra/sweeper"]]}
    return list(_differences(hydra, reference, "", settings))


def override_list_issues(hydra: dict[str, Any], given: list[str]) -> list[ConfigIssue]:
    """``hydra.overrides`` must hold exactly the overrides given: anything more came from the recipe, and Hydra
    would apply it to every job of a sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(given)
    expected = {
        "hydra": [o.input_line for o in parsed if o.is_hydra_override()],
        "task": [o.input_line for o in parsed if not o.is_hydra_override()],
    }
    found = hydra.get("overrides", {})
    return [
        ConfigIssue(f"hydra.overrides.{kind}", "a recipe cannot set this Hydra key")
        for kind in ("hydra", "task")
        if found.get(kind) != expected[kind]
    ]


def override_key_issue(override: Any) -> ConfigIssue | None:
    """A parsed command-line override that names a ``hydra.*`` key (or package) a recipe may not set."""
    key = override.key_or_group
    package = override.package or ""
    if package.split(".")[0] == "hydra" or package.startswith("hydra/"):
        return ConfigIssue(override.input_line, "an override cannot place a config under hydra")
    if override.is_hydra_override() and not key.startswith(OVERRIDABLE) and key != "hydra.job.chdir":
        return ConfigIssue(key, f"a recipe cannot set this Hydra key; allowed: {HYDRA_ALLOWED}")
    return None


def _differences(node: Any, reference: Any, path: str, settings: dict[str, frozenset[str]]) -> Iterator[ConfigIssue]:
    """Keys under ``node`` whose values differ from ``reference`` where the allow-list does not permit it."""
    for key in sorted(set(node) | set(reference), key=str):
        where = f"{path}.{key}" if path else str(key)
        if where in HYDRA_COMPUTED:
            continue
        if where.count(".") == 1 and where.split(".")[0] in settings and key in settings[where.split(".")[0]]:
            yield from _plain_setting(f"hydra.{where}", node.get(key))
            continue
        mine, theirs = node.get(key, _ABSENT), reference.get(key, _ABSENT)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            yield from _differences(mine, theirs, where, settings)
        elif mine != theirs:
            yield ConfigIssue(f"hydra.{where}", "a recipe cannot set this Hydra key")


_ABSENT = object()


def _plain_setting(path: str, value: Any) -> Iterator[ConfigIssue]:
    """An allow-listed launcher/sweeper setting: plain values, and sweeps over recipe keys only."""
    if path == "hydra.sweeper.params":
        yield from sweep_param_issues(value)
    elif isinstance(value, dict | list):
        yield ConfigIssue(path, "must be a plain value (a number, a string or true/false)", value, has_value=True)
    elif isinstance(value, str) and "${" in value:
        yield ConfigIssue(path, "must be a plain value, not an interpolation", value, has_value=True)


def sweep_param_issues(params: Any) -> Iterator[ConfigIssue]:
    """``hydra.sweeper.params`` may sweep recipe keys with plain values, never ``hydra.*`` or ``paths.*``."""
    if params is None:
        return
    if not isinstance(params, dict):
        yield ConfigIssue("hydra.sweeper.params", "must map recipe keys to comma-separated values", params, True)
        return
    for key, value in params.items():
        name = override_key(str(key))
        if "@" in name or name.split(".")[0].split("/")[0] in _PROTECTED_PREFIXES:
            yield ConfigIssue(
                f"hydra.sweeper.params.{key}", "a sweep may vary recipe keys only, not hydra.* or paths.*"
            )
        elif isinstance(value, dict | list) or (isinstance(value, str) and "${" in value):
            yield ConfigIssue(f"hydra.sweeper.params.{key}", "must be plain values such as 1e-5,3e-5", value, True)


def resolver_issues(container: Any, path: str = "") -> list[ConfigIssue]:
    """Values that call a resolver (``${oc.env:X}``, ``${oc.decode:...}``); plain ``${key}`` references pass."""
    issues = []
    for where, text in _strings(container, path):
        names = _resolvers(text)
        if not names:
            continue
        if any(name.startswith("oc.env") for name in names):
            message = (
                "reads an environment variable (${oc.env:...}); a recipe never reads the environment: an API key "
                "comes from the variable named by a model's api_key_env, anything else goes in the recipe or an "
                "override"
            )
        else:
            message = f"calls the resolver {', '.join(sorted(set(names)))}; a recipe may only refer to its own keys"
        issues.append(ConfigIssue(where, message))
    return issues


def credential_issues(container: Any) -> list[ConfigIssue]:
    """String values holding credentials (``user:pass@`` URIs, ``key=``/``token=``/``sig=`` query parameters)."""
    issues = []
    for where, text in _strings(container, ""):
        kind = credentials_in(text)
        if kind:
            issues.append(
                ConfigIssue(
                    where,
                    f"holds {kind}; credentials never go in a recipe or an override: put the key in an environment "
                    "variable and name it with api_key_env",
                )
            )
    return issues


def api_base_issues(container: Any, overrides: list[str], path: str = "") -> list[ConfigIssue]:
    """An ``api_base`` set by a recipe gets the user's API key with every request: it must be a loopback
    server, a host the user allows, or an address given on the command line."""
    given = {override_key(o) for o in overrides}
    issues = []
    for where, value in _dotted(container, path):
        if where.rsplit(".", 1)[-1] != "api_base" or not isinstance(value, str) or where in given:
            continue
        if not api_base_permitted(value):
            issues.append(
                ConfigIssue(
                    where,
                    "a recipe may point a model only at a loopback server or a host you allow, since your API key "
                    f"goes with every request; pass the address on the command line ({where}=URL) or allow its "
                    f"host with {API_BASE_ALLOW_VARIABLE}='host.example.com'",
                    value,
                    has_value=True,
                )
            )
    return issues


def _dotted(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(a.b.0.c, value)`` for every leaf, in the dotted form overrides use."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else None
    if items is None:
        yield path, node
        return
    for key, value in items:
        yield from _dotted(value, f"{path}.{key}" if path else str(key))


def outputs_issues(chosen: str, default: str, overrides: list[str]) -> list[ConfigIssue]:
    """``paths.outputs`` may differ from the library default only through a command-line override."""
    by_user = any(override_key(o).split(".")[0] == "paths" for o in overrides)
    if chosen == default or by_user:
        return []
    return [
        ConfigIssue(
            "paths.outputs",
            "a recipe cannot choose where intentcraft writes; pass paths.outputs=DIR on the command line instead",
            chosen,
            has_value=True,
        )
    ]


def pack_overlap_issues(packs: dict[str, list[str]]) -> list[ConfigIssue]:
    """An intent defined by two intent packs, which Hydra would merge into one without a word."""
    owners: dict[str, list[str]] = {}
    for pack, intents in packs.items():
        for intent in intents:
            owners.setdefault(intent, []).append(pack)
    return [
        ConfigIssue(
            f"intents.{intent}",
            f"defined in more than one intent pack ({', '.join(found)}), which would merge them into one intent; "
            "rename one of them, or keep it in one pack and extend it from the recipe (e.g. "
            f"intents.{intent}.examples)",
        )
        for intent, found in owners.items()
        if len(found) > 1
    ]


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


@functools.lru_cache(maxsize=4096)
def _resolvers(text: str) -> tuple[str, ...]:
    """Names of the resolvers ``text`` calls, nested ones included (OmegaConf's own grammar parses it)."""
    if "${" not in text:
        return ()
    from omegaconf import grammar_parser
    from omegaconf.errors import GrammarParseError
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser

    try:
        tree = grammar_parser.parse(text)
    except GrammarParseError:
        return ()  # not an interpolation OmegaConf would run; composition reports it if it matters
    found: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, OmegaConfGrammarParser.InterpolationResolverContext):
            found.append(node.resolverName().getText())
        stack.extend(getattr(node, "children", None) or [])
    return tuple(found)
