"""The one jinja2 sandbox that renders recipe templates and prompts, under resource limits.

Templates come from recipes, which may come from someone else: they render in an immutable
``SandboxedEnvironment`` (no attribute access to dunder internals, no imports, no mutation of lists and
dicts) with ``StrictUndefined`` so a missing slot is an error rather than an empty string.

A template is data, so it must not exhaust the machine either. Every render runs against a budget set by
``RenderLimits``: rendered length (streamed, stops at the limit), text emitted including macro and
``{% set %}`` bodies, the size of every string or collection a template builds (checked before repetition,
concatenation, formatting and padding are computed), integer size (checked before ``**`` and ``*``), loop
iterations, nested calls (macros calling themselves) and wall time. Going past one raises
``TemplateLimitError`` naming the limit; any other failure while rendering is a ``TemplateRenderError``.
"""

from __future__ import annotations

import random
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import wraps
from itertools import islice
from typing import Any

import jinja2
import jinja2.runtime
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

_TIME_CHECK_EVERY = 4096
MAX_JSON_INDENT = 16


@dataclass(frozen=True)
class RenderLimits:
    """Bounds on one render; the defaults are far above what an honest template needs.

    Attributes:
        max_output_chars: Characters one render may return (10,000).
        max_emitted_chars: Characters one render may write in all, macro bodies and ``{% set %}`` blocks
            included (100,000).
        max_value_size: Size of any string (characters) or collection (items, nested ones counted) a template
            builds, checked before it is built (100,000).
        max_int_bits: Bits of any integer an operator takes or gives, i.e. ``|n| < 2**64`` (64).
        max_iterations: Loop iterations in one render, all ``for`` loops together; also the longest
            ``range()`` (100,000).
        max_call_depth: Calls nested in one another, e.g. a macro calling itself (50).
        max_seconds: Wall time of one render (2.0).
    """

    max_output_chars: int = 10_000
    max_emitted_chars: int = 100_000
    max_value_size: int = 100_000
    max_int_bits: int = 64
    max_iterations: int = 100_000
    max_call_depth: int = 50
    max_seconds: float = 2.0


DEFAULT_LIMITS = RenderLimits()
PROMPT_LIMITS = RenderLimits(max_output_chars=100_000, max_emitted_chars=1_000_000)
"""LLM prompts may carry many examples: ten times the rendered length of a row template."""


class TemplateLimitError(jinja2.TemplateError):
    """A render went past one of ``RenderLimits``; the message names the limit."""

    def __init__(self, limit: str, detail: str = "") -> None:
        self.limit = limit
        super().__init__(f"template exceeds the {limit}" + (f" ({detail})" if detail else ""))


class TemplateRenderError(jinja2.TemplateError):
    """Rendering failed inside Python (a type error, division by zero, ...): the template's fault."""


class _Budget:
    """What one render has used so far."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.iterations = 0
        self.emitted = 0
        self.depth = 0

    def check_time(self) -> None:
        """Stop the render once its wall time is spent."""
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"time limit of {self.limits.max_seconds:g} s per render")

    def tick(self) -> None:
        """Count one loop iteration."""
        self.iterations += 1
        if self.iterations > self.limits.max_iterations:
            raise TemplateLimitError(f"loop limit of {self.limits.max_iterations} iterations per render")
        self.check_time()

    def emit(self, chars: int) -> None:
        """Count text written anywhere in the render."""
        self.emitted += chars
        if self.emitted > self.limits.max_emitted_chars:
            raise TemplateLimitError(f"emitted-text limit of {self.limits.max_emitted_chars} characters per render")


def _size(value: Any, limit: int, budget: _Budget | None = None) -> int:
    """Characters of strings plus items of collections, counted through nesting; stops past ``limit``."""
    total, steps, stack = 0, 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        steps += 1
        if budget is not None and steps % _TIME_CHECK_EVERY == 0:
            budget.check_time()
        if isinstance(item, (str, bytes, bytearray)):
            total += len(item)
        elif isinstance(item, Namespace):
            stack.append(item._Namespace__attrs)
        elif isinstance(item, dict):
            total += len(item)
            stack.extend(islice(item.keys(), limit))
            stack.extend(islice(item.values(), limit))
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += len(item)
            stack.extend(x for x in islice(item, limit) if isinstance(x, (str, dict, list, tuple, set, Namespace)))
    return total


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBER = re.compile(r"\d+")


def _percent_widths(fmt: str) -> int:
    """Sum of the widths and precisions in a ``%`` format; a ``*`` width is refused."""
    total = 0
    for match in _PERCENT_SPEC.finditer(fmt):
        if "*" in (match[1] or "", match[2] or ""):
            raise TemplateLimitError("value-size limit", "a '*' width in a % format is not allowed")
        total += int(match[1] or 0) + int(match[2] or 0)
    return total


def _brace_widths(fmt: str) -> int:
    """Sum of the numbers in ``str.format`` specs; a nested ``{}`` in a spec is refused."""
    total = 0
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if spec and "{" in spec:
            raise TemplateLimitError("value-size limit", "a nested {} in a format spec is not allowed")
        total += sum(int(n) for n in _NUMBER.findall(spec or ""))
    return total


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox plus a per-render budget (see ``RenderLimits``); templates it compiles render under it."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, limits: RenderLimits = DEFAULT_LIMITS, **options: Any) -> None:
        super().__init__(**options)
        self.limits = limits
        self._local = threading.local()

    # --- the budget of the render in progress -------------------------------------------------------------

    @property
    def budget(self) -> _Budget:
        """The budget of this thread's render (a fresh one when a template is run outside ``render``)."""
        current = getattr(self._local, "budget", None)
        if current is None:
            current = self._local.budget = _Budget(self.limits)
        return current

    def start_budget(self) -> _Budget | None:
        """Give this thread a fresh budget; returns the previous one for ``restore_budget``."""
        previous = getattr(self._local, "budget", None)
        self._local.budget = _Budget(self.limits)
        return previous

    def restore_budget(self, previous: _Budget | None) -> None:
        """Put back the budget ``start_budget`` replaced."""
        self._local.budget = previous

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """The sandbox's rule, and no ``str.encode``: bytes would slip past the size checks on strings."""
        if attr == "encode" and isinstance(obj, str):
            return False
        return super().is_safe_attribute(obj, attr, value)

    # --- size checks -----------------------------------------------------------------------------------------

    def refuse_size(self, size: int, what: str) -> None:
        """Raise when ``size`` is beyond the value-size limit."""
        if size > self.limits.max_value_size:
            limit = self.limits.max_value_size
            raise TemplateLimitError(
                f"value-size limit of {limit} characters or items", f"{what} would have size {size}"
            )

    def refuse_int(self, value: int, what: str) -> None:
        """Raise when ``value`` has more bits than the integer limit."""
        if not isinstance(value, bool) and isinstance(value, int) and value.bit_length() > self.limits.max_int_bits:
            bits = self.limits.max_int_bits
            raise TemplateLimitError(f"integer limit of {bits} bits (2**{bits})", f"{what} has more bits")

    def size_of(self, value: Any) -> int:
        """``_size`` of ``value`` under this render's budget."""
        return _size(value, self.limits.max_value_size, self.budget)

    def check_value(self, value: Any, what: str = "a value") -> Any:
        """Refuse a too-large integer, string or collection; returns ``value``."""
        if isinstance(value, int):
            self.refuse_int(value, what)
        elif isinstance(value, (str, bytes, bytearray, dict, list, tuple, set, frozenset, Namespace)):
            self.refuse_size(self.size_of(value), what)
        return value

    def text(self, value: Any) -> str:
        """``str(value)`` once its size is known to be bounded."""
        self.check_value(value)
        return str(value)

    # --- operators, calls and str.format ---------------------------------------------------------------------

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        """Every arithmetic operator: refuse results beyond the limits before computing them."""
        self.budget.check_time()
        self._precheck_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        return self.check_value(result, f"the result of {operator!r}")

    def _precheck_binop(self, operator: str, left: Any, right: Any) -> None:
        for operand in (left, right):
            self.refuse_int(operand, f"an operand of {operator!r}")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            self.refuse_int(1 << min((left.bit_length() - 1) * right, self.limits.max_int_bits + 1), "a power")
        elif operator == "*":
            self._precheck_repeat(left, right)
            self._precheck_repeat(right, left)
        elif operator == "+" and isinstance(left, (str, list, tuple)) and type(left) is type(right):
            self.refuse_size(self.size_of(left) + self.size_of(right), "a concatenation")
        elif operator == "%" and isinstance(left, str):
            self.precheck_format(left, right, _percent_widths(left))

    def _precheck_repeat(self, sequence: Any, times: Any) -> None:
        if isinstance(sequence, (str, bytes, bytearray, list, tuple)) and isinstance(times, int):
            self.refuse_size(self.size_of(sequence) * max(times, 0), f"a repetition {times} times")

    def precheck_format(self, fmt: str, values: Any, widths: int) -> None:
        """Refuse a format whose text, widths and values add up past the value-size limit."""
        self.refuse_size(len(fmt) + widths + self.size_of(values), "a formatted string")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format``/``format_map``: bound the widths in the specs and the result."""
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt: str = value.__self__

        @wraps(wrapper)
        def bounded(*args: Any, **kwargs: Any) -> str:
            self.precheck_format(fmt, (args, kwargs), _brace_widths(fmt))
            return self.check_value(wrapper(*args, **kwargs), "a formatted string")

        return bounded

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call from a template: time, nesting depth, string methods that grow text, result size."""
        budget = __self.budget
        budget.check_time()
        _precheck_str_method(__self, __obj, args)
        budget.depth += 1
        try:
            if budget.depth > __self.limits.max_call_depth:
                raise TemplateLimitError(f"call-depth limit of {__self.limits.max_call_depth} nested calls")
            result = super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1
        return __self.check_value(result, "a call's result")

    # --- compilation: guard loops, output, concatenation and literals ----------------------------------------

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        try:
            return super()._parse(source, name, filename)
        except RecursionError:
            raise jinja2.TemplateSyntaxError("the template is nested too deeply", 1, name, filename) from None

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        try:
            guarded = _Guard().visit(source)
            return super()._generate(guarded, name, filename, defer_init)
        except RecursionError:
            raise jinja2.TemplateSyntaxError("the template is nested too deeply", 1, name, filename) from None

    def _compile(self, source: str, filename: str) -> Any:
        try:
            return super()._compile(source, filename)
        except (RecursionError, SyntaxError, MemoryError):
            raise jinja2.TemplateSyntaxError("the template is nested too deeply", 1, None, filename) from None


class LimitedTemplate(jinja2.Template):
    """A template whose ``render`` streams under the environment's budget."""

    environment: LimitedEnvironment

    def render(self, *args: Any, **kwargs: Any) -> str:
        """Render under ``RenderLimits``; stops as soon as the rendered text passes its limit."""
        env = self.environment
        previous = env.start_budget()
        try:
            return _collect(self.generate(*args, **kwargs), env.limits.max_output_chars)
        except jinja2.TemplateError:
            raise
        except RecursionError:
            raise TemplateLimitError(f"call-depth limit of {env.limits.max_call_depth} nested calls") from None
        except MemoryError:
            raise TemplateLimitError("memory available to a render") from None
        except Exception as exc:  # whatever a recipe's template raises is the template's fault
            raise TemplateRenderError(f"{type(exc).__name__}: {exc}") from None
        finally:
            env.restore_budget(previous)


LimitedEnvironment.template_class = LimitedTemplate


def _collect(pieces: Iterator[str], limit: int) -> str:
    parts, length = [], 0
    for piece in pieces:
        length += len(piece)
        if length > limit:
            raise TemplateLimitError(f"rendered-length limit of {limit} characters")
        parts.append(piece)
    return "".join(parts)


def _precheck_str_method(env: LimitedEnvironment, func: Any, args: tuple[Any, ...]) -> None:
    """Bound string methods whose result can be much longer than the string: padding, replace, join."""
    owner = getattr(func, "__self__", None)
    if not isinstance(owner, str) or not args:
        return
    name = getattr(func, "__name__", "")
    if name in {"ljust", "rjust", "center", "zfill"} and isinstance(args[0], int):
        env.refuse_size(max(len(owner), args[0]), f"str.{name}")
    elif name == "expandtabs" and isinstance(args[0], int):
        env.refuse_size(len(owner) + owner.count("\t") * args[0], "str.expandtabs")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        env.refuse_size(_replaced_size(owner, args[0], args[1]), "str.replace")
    elif name == "join":
        env.refuse_size(sum(env.size_of(item) + len(owner) for item in _bounded(args[0], env)), "str.join")
    elif name == "translate":
        raise TemplateLimitError("value-size limit", "str.translate is not allowed in templates")


def _replaced_size(text: str, old: str, new: str) -> int:
    hits = len(text) + 1 if not old else text.count(old)
    return len(text) + hits * max(len(new) - len(old), 0)


def _bounded(iterable: Any, env: LimitedEnvironment) -> Iterator[Any]:
    """Items of ``iterable``, refusing more than the value-size limit of them."""
    for count, item in enumerate(iterable, 1):
        if count > env.limits.max_value_size:
            env.refuse_size(count, "a sequence")
        yield item


def _wrap(node: nodes.Expr, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class _Guard(NodeTransformer):
    """Route loops, output, ``~`` and literals through the budget filters (``_loop``, ``_emit`` ...).

    ``generic_visit`` rewrites a node's children in place and returns the node itself, so each visitor
    goes on with ``node`` (typed as its own class) rather than with the returned ``Node``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        assert isinstance(node.iter, nodes.Expr)
        node.iter = _wrap(node.iter, "_loop")
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_wrap(child, "_emit") for child in node.nodes]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _wrap(nodes.List(node.nodes, lineno=node.lineno), "_concat")

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _wrap(node, "_sized")

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return _wrap(node, "_sized")

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        return _wrap(node, "_sized") if node.ctx == "load" else node


def _env(context: jinja2.runtime.Context) -> LimitedEnvironment:
    env = context.environment
    assert isinstance(env, LimitedEnvironment)
    return env


@jinja2.pass_context
def _loop(context: jinja2.runtime.Context, iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _env(context).budget
    for item in iterable:
        budget.tick()
        yield item


@jinja2.pass_context
def _emit(context: jinja2.runtime.Context, value: Any) -> str:
    env = _env(context)
    text = env.text(value)
    env.budget.emit(len(text))
    return text


@jinja2.pass_context
def _concat(context: jinja2.runtime.Context, parts: list[Any]) -> str:
    env = _env(context)
    texts = [env.text(part) for part in parts]
    env.refuse_size(sum(map(len, texts)), "a '~' concatenation")
    return "".join(texts)


@jinja2.pass_context
def _sized(context: jinja2.runtime.Context, value: Any) -> Any:
    return _env(context).check_value(value, "a literal")


def _bounded_filters(env: LimitedEnvironment) -> dict[str, Callable[..., Any]]:
    """Filters whose result can be far larger than their input, with the growth checked first."""

    def center(value: Any, width: int = 80) -> str:
        text = env.text(value)
        env.refuse_size(max(len(text), width), "center")
        return text.center(width)

    def indent(value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
        text = env.text(value)
        pad = len(width) if isinstance(width, str) else width
        env.refuse_size(len(text) + pad * (text.count("\n") + 1), "indent")
        return jinja2.filters.do_indent(text, width, first, blank)

    def wordwrap(
        value: Any,
        width: int = 79,
        break_long_words: bool = True,
        wrapstring: str | None = None,
        break_on_hyphens: bool = True,
    ) -> str:
        text = env.text(value)
        joiner = wrapstring if wrapstring is not None else env.newline_sequence
        env.refuse_size(len(text) * (1 + len(joiner)), "wordwrap")
        return jinja2.filters.do_wordwrap(env, text, width, break_long_words, wrapstring, break_on_hyphens)

    def format_(value: Any, *args: Any, **kwargs: Any) -> str:
        fmt = env.text(value)
        values = kwargs or args
        env.precheck_format(fmt, values, _percent_widths(fmt))
        return env.check_value(fmt % values, "format")

    def join(value: Any, d: str = "", attribute: str | int | None = None) -> str:
        items = _bounded(value, env)
        if attribute is not None:
            items = map(jinja2.filters.make_attrgetter(env, attribute), items)
        parts, total = [], 0
        for item in items:
            parts.append(env.text(item))
            total += len(parts[-1]) + len(d)
            env.refuse_size(total, "join")
        return d.join(parts)

    def replace(value: Any, old: str, new: str, count: int | None = None) -> str:
        text = env.text(value)
        env.refuse_size(_replaced_size(text, str(old), str(new)), "replace")
        return text.replace(str(old), str(new), -1 if count is None else count)

    def sum_(iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0) -> Any:
        items = _bounded(iterable, env)
        if attribute is not None:
            items = map(jinja2.filters.make_attrgetter(env, attribute), items)
        total = start
        for item in items:
            total = env.call_binop(None, "+", total, item)  # type: ignore[arg-type]
        return total

    def slice_(value: Iterable[Any], slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
        env.refuse_size(slices, "slice")
        # jinja2 annotates ``value`` as a Collection, but sync_do_slice only calls list(value) on it
        return jinja2.filters.sync_do_slice(value, slices, fill_with)  # type: ignore[arg-type]

    def batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
        env.refuse_size(linecount, "batch")
        return jinja2.filters.do_batch(value, linecount, fill_with)

    @jinja2.pass_eval_context
    def tojson(eval_ctx: jinja2.nodes.EvalContext, value: Any, indent: int | None = None) -> Any:
        if indent is not None and not 0 <= int(indent) <= MAX_JSON_INDENT:
            raise TemplateLimitError(f"tojson indent limit of {MAX_JSON_INDENT}", f"indent={indent}")
        env.check_value(value, "tojson's input")
        return jinja2.filters.do_tojson(eval_ctx, value, indent)

    return {
        "tojson": tojson,
        "center": center,
        "indent": indent,
        "wordwrap": wordwrap,
        "format": format_,
        "join": join,
        "replace": replace,
        "sum": sum_,
        "slice": slice_,
        "batch": batch,
    }


def _checked(env: LimitedEnvironment, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with its result's size checked (keeps jinja's pass_context marks)."""

    @wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        return env.check_value(func(*args, **kwargs), f"the result of the {name} filter")

    return checked


def make_environment(rng: random.Random | None = None, limits: RenderLimits = DEFAULT_LIMITS) -> LimitedEnvironment:
    """A sandboxed environment with ``limits``, whose ``random`` filter draws from ``rng`` (deterministic).

    Reseed ``rng`` before each render to make every row reproducible on its own.
    """
    env = LimitedEnvironment(limits, undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
    chooser = rng or random.Random(0)

    @jinja2.pass_context  # also stops jinja from folding ``[...] | random`` into a constant at compile time
    def seeded_random(context: jinja2.runtime.Context, values: Iterable[object]) -> object:
        items = list(_bounded(values, env))
        if not items:
            raise jinja2.UndefinedError("random filter got an empty sequence")
        return chooser.choice(items)

    def bounded_range(*args: int) -> range:
        numbers = range(*args)
        if len(numbers) > limits.max_iterations:
            raise TemplateLimitError(f"loop limit of {limits.max_iterations} iterations per render", "range()")
        return numbers

    env.filters.update(_bounded_filters(env))
    env.filters["random"] = seeded_random
    env.filters = {name: _checked(env, name, func) for name, func in env.filters.items()}
    env.filters.update({"_loop": _loop, "_emit": _emit, "_concat": _concat, "_sized": _sized})
    env.globals["range"] = bounded_range
    env.globals.pop("lipsum", None)  # it draws from the global random module
    return env


def template_variables(env: jinja2.Environment, source: str) -> set[str]:
    """Names a template reads from its context (its slots)."""
    return set(meta.find_undeclared_variables(env.parse(source))) - set(env.globals)
