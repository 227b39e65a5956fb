"""Resource limits of the template sandbox (``framework.data.templating``): every limit refuses, fast and cleanly."""

from __future__ import annotations

import time
from dataclasses import replace

import jinja2
import pytest

from framework.config.check import check_recipe
from framework.config.compose import RecipeRef, compose_recipe
from framework.data.templating import (
    DEFAULT_LIMITS,
    PROMPT_LIMITS,
    RenderLimits,
    TemplateLimitError,
    TemplateRenderError,
    make_environment,
)
from framework.errors import RecipeError
from tests.conftest import TINY

# (template, words the error must contain): each goes past exactly the limit it names.
HOSTILE = {
    "string_repetition": ("{{ 'a' * 10**9 }}", "value-size limit of 100000"),
    "list_repetition": ("{{ [1, 2] * 10**8 }}", "value-size limit of 100000"),
    "nested_repetition": ("{{ [[1] * 10000] * 10000 }}", "value-size limit of 100000"),
    "huge_power": ("{{ 10**(10**9) }}", "integer limit of 64 bits"),
    "huge_int_printed": ("{{ 10**5000 }}", "integer limit of 64 bits"),
    "huge_product": ("{{ 2**40 * 2**40 }}", "integer limit of 64 bits"),
    "huge_int_filter": ("{{ ('9' * 4000) | int }}", "integer limit of 64 bits"),
    "range_list": ("{{ range(10**9) | list }}", "loop limit of 100000 iterations"),
    "nested_loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "loop limit of 100000 iterations",
    ),
    "nested_string_loops": (
        "{% for a in 'x' * 1000 %}{% for b in 'y' * 1000 %}{% endfor %}{% endfor %}",
        "loop limit of 100000 iterations",
    ),
    "recursive_macro": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "call-depth limit of 50"),
    "fan_out_macro": ("{% macro f(n) %}{{ f(n - 1) }}{{ f(n - 1) }}{% endmacro %}{{ f(40) }}", "call-depth limit"),
    "center_width": ("{{ 'x' | center(10**9) }}", "value-size limit"),
    "indent_width": ("{{ 'x\ny' | indent(10**9, true) }}", "value-size limit"),
    "wordwrap_wrapstring": ("{{ ('a' * 1000) | wordwrap(1, wrapstring='b' * 1000) }}", "value-size limit"),
    "format_filter_width": ("{{ '%999999999s' | format('x') }}", "value-size limit"),
    "percent_width": ("{{ '%999999999s' % 'x' }}", "value-size limit"),
    "percent_star_width": ("{{ '%*d' % (10**9, 1) }}", "value-size limit"),
    "str_format_width": ("{{ '{:>999999999}'.format('x') }}", "value-size limit"),
    "str_format_nested_spec": ("{{ '{:{w}}'.format('x', w=10**9) }}", "value-size limit"),
    "str_ljust": ("{{ 'x'.ljust(10**9) }}", "value-size limit"),
    "replace_amplifies": ("{{ ('a' * 1000) | replace('a', 'b' * 1000) }}", "value-size limit"),
    "join_amplifies": ("{{ range(1000) | join('x' * 1000) }}", "value-size limit"),
    "batch_fill": ("{{ [1] | batch(10**9, 'x') | list }}", "value-size limit"),
    "slice_count": ("{{ [1] | slice(10**9) | list }}", "value-size limit"),
    "doubling_concat": (
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "value-size limit",
    ),
    "doubling_list": (
        "{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "value-size limit",
    ),
    "aliased_literals": (
        "{% set a = [[1] * 100] * 100 %}{% set b = [a, a, a, a, a, a, a, a, a, a] %}"
        "{% set c = [b, b, b, b, b, b, b, b, b, b] %}{{ c | length }}",
        "value-size limit",
    ),
    "sum_flattens": ("{{ ([[1] * 1000] * 100) | sum(start=[]) }}", "value-size limit"),
    "tojson_indent": ("{{ [[[1]]] | tojson(indent=20000000) }}", "tojson indent limit of 16"),
    "rendered_length": ("{% for i in range(2000) %}0123456789{% endfor %}", "rendered-length limit of 10000"),
    "emitted_in_set_block": (
        "{% set x %}{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}{% endset %}{{ x | length }}",
        "emitted-text limit of 100000",
    ),
}

HONEST = {
    "who calls {{ symbol }}": "who calls main",
    "{{ ['show', 'list'] | random }} every caller": "list every caller",
    "{% for i in range(3) %}{{ loop.index }}/{{ loop.length }} {% endfor %}": "1/3 2/3 3/3 ",
    "{% for k, v in {'a': 1} | dictsort %}{{ k }}={{ v }}{% endfor %}": "a=1",
    "{{ ['a', 'b'] | join(', ') }}|{{ 'x' | center(5) }}|{{ '%5.2f' | format(3.14159) }}": "a, b|  x  | 3.14",
    "{{ '{} {}'.format(1, 'a') }} {{ 2**63 }} {{ 7 // 2 }} {{ 10 ** -2 }}": "1 a 9223372036854775808 3 0.01",
    "{% macro m(x=[1, 2]) %}{{ x | length }}{% endmacro %}{{ m() }}{% set a, b = 1, 2 %}{{ a ~ b }}": "212",
    "{% filter upper %}abc{% endfilter %}{% for i in [] %}{% else %}none{% endfor %}": "ABCnone",
    "{{ 'x' * 10000 }}": "x" * 10000,
    "{% for i in range(100000) %}{% endfor %}{{ range(5) | sum }}": "10",
    "{{ 'a\nb' | indent(2, true) }} {{ 'a b c' | wordwrap(3) }}": "  a\n  b a b\nc",
    "{{ 'abc' | replace('b', 'xx') }} {{ 'ab' | truncate(10) }}": "axxc ab",
    "{{ {'a': [1]} | tojson(indent=2) }}": '{\n  "a": [\n    1\n  ]\n}',
}


def render(source: str, limits: RenderLimits = DEFAULT_LIMITS, **values: object) -> str:
    env = make_environment(limits=limits)
    return env.from_string(source).render(symbol="main", **values)


@pytest.mark.parametrize(("source", "needle"), list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_template_is_refused_fast_naming_the_limit(source: str, needle: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match=needle.replace("(", r"\(")) as caught:
        render(source)
    assert time.monotonic() - started < 3.0
    assert str(caught.value).startswith("template exceeds the ")
    assert isinstance(caught.value, jinja2.TemplateError)


@pytest.mark.parametrize(("source", "expected"), list(HONEST.items()))
def test_honest_templates_render_as_before(source: str, expected: str) -> None:
    assert render(source) == expected


def test_time_limit_stops_a_slow_render() -> None:
    limits = replace(DEFAULT_LIMITS, max_seconds=0.2, max_iterations=10**9, max_call_depth=10**6)
    source = "{% for i in range(10**8) %}{% for j in range(10**8) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateLimitError, match=r"time limit of 0.2 s per render"):
        render(source, limits)
    assert time.monotonic() - started < 2.0


def test_each_render_gets_a_fresh_budget() -> None:
    env = make_environment(limits=replace(DEFAULT_LIMITS, max_iterations=10))
    template = env.from_string("{% for i in range(8) %}{% endfor %}ok")
    assert [template.render() for _ in range(5)] == ["ok"] * 5


def test_limits_are_configurable() -> None:
    assert render("{{ 'x' * 20 }}", replace(DEFAULT_LIMITS, max_output_chars=20)) == "x" * 20
    with pytest.raises(TemplateLimitError, match="rendered-length limit of 19 characters"):
        render("{{ 'x' * 20 }}", replace(DEFAULT_LIMITS, max_output_chars=19))
    assert PROMPT_LIMITS.max_output_chars > DEFAULT_LIMITS.max_output_chars


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ 1 + 'a' }}", "TypeError"),
        ("{{ 2.0 ** 10000 }}", "OverflowError"),
        ("{% include 'other' %}", "TypeError"),
    ],
)
def test_python_errors_become_template_errors(source: str, needle: str) -> None:
    with pytest.raises(TemplateRenderError, match=needle):
        render(source)


def test_deeply_nested_source_is_a_syntax_error() -> None:
    env = make_environment()
    with pytest.raises(jinja2.TemplateSyntaxError, match="nested too deeply"):
        env.from_string("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")


def test_lists_cannot_be_mutated() -> None:
    with pytest.raises(jinja2.exceptions.SecurityError):
        render("{% set l = [1] %}{{ l.append(2) }}")


def test_validate_names_the_template_key_and_the_limit() -> None:
    raw = compose_recipe(RecipeRef(TINY, ()))
    raw["intents"]["FindCallers"]["templates"][1] = "{{ 'a' * 10**9 }}"
    with pytest.raises(RecipeError) as caught:
        check_recipe(raw, str(TINY))
    text = caught.value.render()
    assert "intents.FindCallers.templates[1]: template exceeds the value-size limit of 100000" in text


def test_bytes_are_out_of_reach() -> None:
    """``str.encode`` would make bytes, which no size check on strings would see: the sandbox refuses it."""
    with pytest.raises(jinja2.exceptions.SecurityError, match="encode"):
        render("{{ ('a'.encode() * 200000000) | length }}")
