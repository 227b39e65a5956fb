"""Hostile recipes that try to exhaust time or memory: templates, LLM prompts, YAML and regex rules.

Each case writes a small recipe over ``tiny.yaml`` into ``tmp_path`` and runs the real CLI there: it must be
refused with exit 2 and one paragraph naming the key and the limit, fast and in bounded memory, writing
nothing outside ``outputs/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ASSETS
from tests.security.hostile import assert_refused, run_limited, snapshot

RECIPES = ASSETS / "recipes"
TEMPLATE_KEY = "intents.FindCallers.templates[1]"
PROMPT_KEY = "generate.generators.llm.prompt"

# name: (hostile template, the limit its error names)
TEMPLATES = {
    "string_repetition": ("{{ 'a' * 10**9 }}", "value-size limit"),
    "huge_power": ("{{ 10**(10**9) }}", "integer limit of 64 bits"),
    "huge_int_printed": ("{{ 10**5000 }}", "integer limit of 64 bits"),
    "range_list": ("{{ range(10**9) | list }}", "loop limit of 100000 iterations"),
    "nested_loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
        "limit",
    ),
    "recursive_macro": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "call-depth limit of 50"),
    "center_width": ("{{ 'x' | center(10**9) }}", "value-size limit"),
    "indent_width": ("{{ 'x' | indent(10**9, true) }}", "value-size limit"),
    "format_width": ("{{ '%999999999s' | format('x') }}", "value-size limit"),
    "str_format_width": ("{{ '{:>999999999}'.format('x') }}", "value-size limit"),
    "rendered_length": ("{% for i in range(5000) %}0123456789{% endfor %}", "rendered-length limit of 10000"),
    "doubling_concat": (
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "value-size limit",
    ),
}

PROMPTS = {
    "prompt_string_repetition": ("{{ intent }} {{ 'a' * 10**9 }}", "the prompt exceeds the value-size limit"),
    "prompt_huge_power": ("{{ intent }} {{ 10**(10**9) }}", "the prompt exceeds the integer limit"),
    "prompt_nested_loops": (
        "{{ intent }}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "the prompt exceeds the loop limit",
    ),
}


def write_recipe(tmp_path: Path, body: dict[str, Any] | str, base: str = "tiny", name: str = "hostile") -> Path:
    """``NAME.yaml`` in ``tmp_path`` composed over a copy of the test recipe ``base`` (and ``tiny``)."""
    for asset in {"tiny", base}:
        shutil.copy(RECIPES / f"{asset}.yaml", tmp_path / f"{asset}.yaml")
    text = body if isinstance(body, str) else yaml.safe_dump(body, sort_keys=False, allow_unicode=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"defaults: [{base}, _self_]\n" + text)
    return path


def refused_cleanly(tmp_path: Path, recipe: Path, *needles: str, verb: str = "validate") -> None:
    """Run ``VERB recipe=RECIPE`` in ``tmp_path``: refused per ``assert_refused``; nothing outside outputs/."""
    before = snapshot(tmp_path)
    outcome = run_limited(verb, f"recipe={recipe}", cwd=tmp_path)
    assert_refused(outcome, *needles, limit_s=30)
    assert_wrote_only_outputs(tmp_path, before)


def assert_wrote_only_outputs(root: Path, before: set[str]) -> None:
    created = snapshot(root) - before
    assert all(path == "outputs" or path.startswith("outputs/") for path in created), sorted(created)


@pytest.mark.parametrize(("template", "needle"), list(TEMPLATES.values()), ids=list(TEMPLATES))
def test_hostile_template_is_refused_at_validate(tmp_path: Path, template: str, needle: str) -> None:
    body = {"intents": {"FindCallers": {"templates": ["who calls {{ symbol }}", template]}}}
    recipe = write_recipe(tmp_path, body)
    refused_cleanly(tmp_path, recipe, f"{TEMPLATE_KEY}: template exceeds the", needle)


@pytest.mark.parametrize(("prompt", "needle"), list(PROMPTS.values()), ids=list(PROMPTS))
def test_hostile_llm_prompt_is_refused_at_validate(tmp_path: Path, prompt: str, needle: str) -> None:
    recipe = write_recipe(tmp_path, {"generate": {"generators": {"llm": {"prompt": prompt}}}}, base="tiny_llm")
    refused_cleanly(tmp_path, recipe, f"{PROMPT_KEY}: {needle}")


def alias_bomb(levels: int = 9) -> str:
    lines = ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"lol{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, alias_bomb())
    refused_cleanly(tmp_path, recipe, str(recipe), "lol4: expands to more than 25000 YAML nodes", "alias bomb")


def test_yaml_deep_nesting_is_refused(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "name: " + "[" * 20_000 + "x" + "]" * 20_000 + "\n")
    refused_cleanly(tmp_path, recipe, str(recipe), "nested more than 64 levels deep")


def test_duplicate_key_in_the_recipe_names_file_key_and_lines(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "name: first\nseed: 3\nname: second\n")
    refused_cleanly(tmp_path, recipe, str(recipe), "name: duplicate key 'name' at line 4 (first at line 2)")


def test_duplicate_key_in_an_intent_pack_names_the_pack(tmp_path: Path) -> None:
    (tmp_path / "intents").mkdir()
    pack = tmp_path / "intents" / "mine.yaml"
    pack.write_text(
        "# @package _global_\nintents:\n  Mine:\n    templates: ['mine {{ symbol }}']\n    templates: ['x']\n"
    )
    recipe = write_recipe(tmp_path, "")
    recipe.write_text("defaults: [tiny, {intents: mine}, _self_]\n")
    refused_cleanly(tmp_path, recipe, str(pack), "intents.Mine.templates: duplicate key 'templates' at line 5")


@pytest.mark.parametrize(
    ("pattern", "detail"),
    [(r"\bfind(?=\s)", "(?="), (r"(?<!x)calls", "(?<!"), (r"(\w+) \1", "invalid escape sequence")],
    ids=["lookahead", "lookbehind", "backreference"],
)
def test_regex_re2_cannot_run_is_refused(tmp_path: Path, pattern: str, detail: str) -> None:
    body = {"validate": {"layers": {"rules": {"deny": [{"name": "needs_backtracking", "pattern": pattern}]}}}}
    recipe = write_recipe(tmp_path, body)
    needles = ("validate.layers.rules.deny[0].pattern", "rule 'needs_backtracking'", "cannot run on RE2", detail)
    refused_cleanly(tmp_path, recipe, *needles)


def test_catastrophic_regex_finishes_fast_in_the_validate_stage(tmp_path: Path) -> None:
    pattern = r"^(\w+\s?)*[!]$"  # exponential on a long row for a backtracking engine; linear on RE2
    body = {
        "slots": {"symbol": ["a" * 40 + " " + "b" * 40], "path": ["src/"]},
        "validate": {"layers": {"rules": {"deny": [{"name": "backtracking", "pattern": pattern}]}}},
    }
    recipe = write_recipe(tmp_path, body)
    before = snapshot(tmp_path)
    outcome = run_limited("run", f"recipe={recipe}", "--until", "validate", cwd=tmp_path, timeout=120)
    text = outcome.stdout + outcome.stderr
    assert outcome.returncode in (0, 1), text[-3000:]  # 1: a gate on the rejected share, never a hang
    assert "Traceback" not in text
    assert "validate" in outcome.stdout
    assert outcome.seconds < 90, f"took {outcome.seconds:.0f}s"
    assert_wrote_only_outputs(tmp_path, before)
