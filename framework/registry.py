"""Plugin registries, one per plugin kind that a registered stage kind calls.

The plugin kinds are not listed here: each stage kind names those it calls (``StageDef.sections`` and
``StageDef.plugin_kinds``, see :mod:`framework.pipeline.targets`), and ``from framework.registry import
trainers`` gives the registry of the kind ``trainers``. Recipes name plugins (``template``, ``template.v1``
or ``builtin.template.v1``); they never carry a Python path, so a recipe cannot import arbitrary code.
Built-in plugins live in ``framework.plugins.<kind>`` (one module each, imported on first use). Third-party
plugins arrive through the entry-point group ``intentcraft.<kind>``: loading the entry point imports a
module that registers with the decorator, under the distribution's name as namespace.

Example::

    from framework.registry import validators, PluginParams

    class Params(PluginParams):
        words: list[str]

    @validators.register("keyword", params=Params)
    def keyword(rows, params, ctx):
        ...
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.metadata
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from framework.errors import IntentcraftError
from framework.pipeline.targets import loading
from framework.pipeline.targets import plugin_kinds as plugin_kinds  # re-exported: the kinds stage kinds call

ENTRY_POINT_PREFIX = "intentcraft."
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REF = re.compile(r"^(?:(?P<ns>[a-z][a-z0-9_]*)\.)?(?P<name>[a-z][a-z0-9_]*)(?:\.v(?P<version>\d+))?$")
_namespace: ContextVar[str] = ContextVar("intentcraft_plugin_namespace", default="builtin")


class PluginParams(BaseModel):
    """Base of every plugin's ``Params`` model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class UnknownPlugin(IntentcraftError):
    """A recipe named a plugin that no registry knows."""

    def __init__(self, kind: str, ref: str, known: list[str], detail: str = "") -> None:
        self.kind, self.ref, self.known = kind, ref, known
        suggestion = difflib.get_close_matches(ref, known, n=1, cutoff=0.6)
        hint = f"did you mean '{suggestion[0]}'? " if suggestion else ""
        detail = f" ({detail})" if detail else ""
        super().__init__(f"unknown {kind[:-1]} plugin '{ref}'{detail}; {hint}known: {', '.join(known) or 'none'}")


class UnknownPluginKind(IntentcraftError):
    """A plugin kind that no registered stage kind calls."""

    def __init__(self, kind: str, known: tuple[str, ...]) -> None:
        suggestion = difflib.get_close_matches(kind, known, n=1, cutoff=0.6)
        hint = f"did you mean '{suggestion[0]}'? " if suggestion else ""
        super().__init__(f"no stage kind calls plugins of the kind '{kind}'; {hint}known kinds: {', '.join(known)}")


@dataclass(frozen=True)
class PluginSpec:
    """A registered plugin: its identity, its callable and the model of its params."""

    kind: str
    namespace: str
    name: str
    version: int
    func: Callable[..., object]
    params: type[BaseModel]
    origin: str

    @property
    def id(self) -> str:
        """Canonical versioned name, e.g. ``builtin.template.v1``."""
        return f"{self.namespace}.{self.name}.v{self.version}"

    @property
    def summary(self) -> str:
        """First line of the plugin's docstring."""
        doc = inspect.getdoc(self.func) or ""
        return doc.splitlines()[0] if doc else ""

    def code_digest(self) -> str:
        """SHA-256 of the plugin's module and the private ``_*.py`` helpers beside it.

        It feeds stage fingerprints, so editing a plugin recomputes the stages that use it.
        """
        digest = hashlib.sha256(self.id.encode())
        try:
            module = Path(inspect.getfile(self.func))
        except TypeError:
            return digest.hexdigest()
        helpers = sorted(p for p in module.parent.glob("_*.py") if p.name != "__init__.py")
        for path in [module, *helpers]:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()


@dataclass
class Registry:
    """All plugins of one plugin kind."""

    kind: str
    _specs: dict[str, PluginSpec] = field(default_factory=dict)

    def register(
        self,
        name: str,
        *,
        version: int = 1,
        params: type[BaseModel] = PluginParams,
        namespace: str | None = None,
    ) -> Callable[[Callable[..., object]], Callable[..., object]]:
        """Decorator that registers ``func`` under ``name`` (lower_snake_case) and ``version``."""
        if not _NAME.match(name):
            raise ValueError(f"plugin name {name!r} must be lower_snake_case")
        ns = namespace or _namespace.get()

        def decorate(func: Callable[..., object]) -> Callable[..., object]:
            origin = "builtin" if ns == "builtin" else f"entry point ({ns})"
            spec = PluginSpec(self.kind, ns, name, version, func, params, origin)
            existing = self._specs.get(spec.id)
            if existing is not None and existing.func is not func:
                raise ValueError(f"{self.kind} plugin {spec.id} is registered twice")
            self._specs[spec.id] = spec
            return func

        return decorate

    def all(self) -> list[PluginSpec]:
        """Every plugin of this kind, sorted by id."""
        load_plugins()
        return sorted(self._specs.values(), key=lambda s: s.id)

    def known_names(self) -> list[str]:
        """Short and canonical names a recipe may use."""
        specs = self.all()
        return sorted({s.name for s in specs} | {s.id for s in specs})

    def resolve(self, ref: str) -> PluginSpec:
        """Find the plugin a recipe names; bare names pick the highest version."""
        load_plugins()
        match = _REF.match(str(ref))
        if match is None:
            raise UnknownPlugin(
                self.kind, str(ref), self.known_names(), "names look like 'template' or 'builtin.template.v1'"
            )
        ns, name, version = match["ns"], match["name"], match["version"]
        found = [
            s
            for s in self._specs.values()
            if s.name == name and (ns is None or s.namespace == ns) and (version is None or s.version == int(version))
        ]
        if not found:
            broken = "; ".join(LOAD_ERRORS.get(self.kind, []))
            raise UnknownPlugin(self.kind, str(ref), self.known_names(), broken)
        namespaces = {s.namespace for s in found}
        if len(namespaces) > 1:
            options = ", ".join(sorted(s.id for s in found))
            raise UnknownPlugin(self.kind, str(ref), self.known_names(), f"ambiguous between {options}")
        return max(found, key=lambda s: s.version)


_REGISTRIES: dict[str, Registry] = {}


def registry(kind: str) -> Registry:
    """The registry of one plugin kind a registered stage kind calls (while the stage kinds load, of any kind: a
    package may register its plugins before the stage kind that calls them)."""
    if not _NAME.match(kind) or (not loading() and kind not in plugin_kinds()):
        raise UnknownPluginKind(kind, plugin_kinds())
    return _REGISTRIES.setdefault(kind, Registry(kind))


def registries() -> dict[str, Registry]:
    """Every plugin kind's registry, in :func:`plugin_kinds` order."""
    return {kind: registry(kind) for kind in plugin_kinds()}


def __getattr__(name: str) -> Registry:
    """``from framework.registry import validators``: the registry of a plugin kind, by its name."""
    if name.startswith("_") or not _NAME.match(name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return registry(name)
    except UnknownPluginKind as exc:
        raise AttributeError(str(exc)) from None


_loaded = False
LOAD_ERRORS: dict[str, list[str]] = {}


@contextlib.contextmanager
def plugin_namespace(namespace: str) -> Iterator[None]:
    """Register plugins imported inside this block under ``namespace``."""
    token = _namespace.set(namespace)
    try:
        yield
    finally:
        _namespace.reset(token)


def _import_builtins() -> None:
    for kind in plugin_kinds():
        try:
            package = importlib.import_module(f"framework.plugins.{kind}")
        except ModuleNotFoundError:
            continue
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{package.__name__}.{module.name}")


def _import_entry_points() -> None:
    for kind in plugin_kinds():
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_PREFIX + kind):
            dist = ep.dist.name if ep.dist is not None else ep.module.split(".")[0]
            namespace = re.sub(r"[^a-z0-9_]", "_", dist.lower())
            try:
                with plugin_namespace(namespace):
                    ep.load()
            except Exception as exc:  # a broken third-party plugin must not break every command
                message = f"entry point {ep.name!r} ({ep.value}) of {dist} failed to load: {exc}"
                LOAD_ERRORS.setdefault(kind, []).append(message)


def load_plugins(reload: bool = False) -> None:
    """Import built-in plugin modules and third-party entry points (once per process)."""
    global _loaded
    if _loaded and not reload:
        return
    _loaded = True
    _import_builtins()
    _import_entry_points()
