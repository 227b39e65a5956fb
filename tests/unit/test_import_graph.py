"""No import cycles in ``framework/`` (and ``plugins/``, shipped as ``framework.plugins``): module-level imports
only, since an import inside a function runs when it is called, and ``if TYPE_CHECKING:`` blocks never run."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def module_name(path: Path) -> str:
    """``framework/stages/train.py`` -> ``framework.stages.train``; ``plugins/x/y.py`` -> ``framework.plugins.x.y``."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "plugins":
        parts = ["framework", "plugins", *parts[1:]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_by(node: ast.AST, me: str, package: bool) -> set[str]:
    """What one ``import`` statement imports: modules, and ``module.name`` for ``from module import name``."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = me.split(".") if package else me.split(".")[:-1]
    module = node.module or ""
    if node.level:
        module = ".".join([*base[: len(base) - node.level + 1], *([module] if module else [])])
    return {module, *(f"{module}.{alias.name}" for alias in node.names)}


def module_level_imports(tree: ast.Module, me: str, package: bool) -> set[str]:
    """Modules (and ``module.name`` for ``from module import name``) imported when the module is imported."""
    found: set[str] = set()
    statements = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            statements += node.orelse
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for block in ("body", "orelse", "finalbody", "handlers"):
                statements += getattr(node, block, [])
        elif isinstance(node, ast.ExceptHandler):
            statements += node.body
        else:
            found |= imported_by(node, me, package)
    return found


def runtime_imports(tree: ast.Module, me: str, package: bool) -> set[str]:
    """Every import that can run (module level and inside functions), ``if TYPE_CHECKING:`` blocks left out."""
    found: set[str] = set()
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending += node.orelse
            continue
        found |= imported_by(node, me, package)
        pending += list(ast.iter_child_nodes(node))
    return found


def import_graph(strict: bool = False) -> dict[str, set[str]]:
    """Module -> the project modules it imports (``strict``: imports inside functions count too)."""
    paths = [*REPO.joinpath("framework").rglob("*.py"), *REPO.joinpath("plugins").rglob("*.py")]
    modules = {module_name(path): path for path in paths}
    graph = {}
    collect = runtime_imports if strict else module_level_imports
    for name, path in modules.items():
        imported = collect(ast.parse(path.read_text()), name, path.name == "__init__.py")
        graph[name] = {module for module in imported if module in modules and module != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\nimport y\ndef f():\n    import z\n"
    assert module_level_imports(ast.parse(source), "m", False) == {"typing", "typing.TYPE_CHECKING", "y"}


def test_framework_has_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "framework.pipeline.runner" in graph and "framework.plugins.trainers.encoder" in graph
    assert cycles(graph) == []


def test_framework_has_no_import_cycles_through_imports_inside_functions() -> None:
    """Stricter: an import inside a function closes a loop too once the function runs (no lazy-import cycles)."""
    graph = import_graph(strict=True)
    assert "framework.pipeline.targets" in graph["framework.config.check"]  # function-level imports are seen
    assert cycles(graph) == []


PLUGIN_MAY_IMPORT = (
    "framework",  # the package itself (e.g. ``from framework import __version__``)
    "framework.plugin_api",
    "framework.registry",
    "framework.errors",
    "framework.io",
    "framework.redact",
    "framework.models",
    "framework.data",
    "framework.evaluation",
    "framework.llm",
    "framework.runtime",
    "framework.toolcalls",
    "framework.config.schema",
    "framework.plugins",
)


def all_imports(tree: ast.Module, me: str, package: bool) -> set[str]:
    """Every module a file imports, at any depth (inside functions and ``TYPE_CHECKING`` blocks too)."""
    return {module for node in ast.walk(tree) for module in imported_by(node, me, package)}


def test_plugins_import_only_what_plugin_api_allows() -> None:
    """``framework/plugin_api.py`` lists what a plugin may import; no built-in plugin reaches further."""
    allowed = {*PLUGIN_MAY_IMPORT}
    refused = []
    for path in sorted(REPO.joinpath("plugins").rglob("*.py")):
        name = module_name(path)
        for module in all_imports(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            inside = module == "framework" or module.startswith("framework.")
            if inside and not any(module == a or module.startswith(a + ".") for a in allowed):
                refused.append(f"{name} imports {module}")
    assert refused == []
    source = REPO.joinpath("framework", "plugin_api.py").read_text()
    assert all(f"``{a}``" in source for a in allowed - {"framework"}), "plugin_api.py lists what a plugin may import"


def test_registering_the_plugins_imports_no_torch() -> None:
    """Commands that only read recipes (validate, status, plugins) must not pay torch's import (seconds): the
    built-in trainers and exporter register from light modules and import their work when they run."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom framework.registry import load_plugins\nload_plugins()\n"
        "from framework.registry import trainers\n"
        "assert {'encoder', 'causal_lora'} <= {s.name for s in trainers.all()}\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'sklearn') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
