"""The Jinja sandbox templates run in: no way out, and no gigabytes, and no endless loop.

Jinja's ImmutableSandboxedEnvironment keeps a template from reaching outside (no
`__class__`, no changing a dict). This one also keeps it within `gateway.limits`:

* nothing is computed while compiling: Jinja folds constants, so `{{ '*' * 10**9 }}` was
  built (and written into the compiled code) before any check could look;
* `*`, `+`, `%` and `**` go through `call_binop`, which measures before computing;
* `~`, captured output (`{% set %}…{% endset %}`, macros) and every printed value are
  measured before they are joined or turned into text;
* Jinja's filters are wrapped: those that can multiply their input are measured first,
  all are checked after; `pprint`, `tojson`, `urlize` and `lipsum()` are not offered;
* methods of plain values (text, numbers, dates, lists, dicts) are an allow-list, and the
  text methods that pad, replace, join or format are measured first;
* every `{% for %}` step and every call checks the rendering's deadline.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, timedelta
from datetime import time as clock_time
from decimal import Decimal
from time import monotonic
from typing import Any, cast

from jinja2 import StrictUndefined, meta, nodes, pass_context, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter, sync_do_join
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway.limits import (
    COLLECTIONS,
    MAX_SECONDS,
    MAX_TEXT,
    LimitExceeded,
    check_binop,
    checked,
    format_size,
    join_size,
    need_items,
    need_text,
    percent_size,
    replace_size,
    text_size,
)

LOOP_GUARD = "<loop guard>"
"""The filter every `{% for %}` iterates through (a name no template can write)."""


class RenderContext(Context):
    """A template context that knows when its rendering must stop.

    The clock starts at the first loop step or call, not when the context is made: a
    message without loops pays nothing for the deadline, and one cannot run long without.
    """

    deadline: float | None = None

    def tick(self) -> None:
        now = monotonic()
        if self.deadline is None:
            self.deadline = now + MAX_SECONDS
        elif now > self.deadline:
            raise LimitExceeded(
                f"rendering takes more than the {MAX_SECONDS:g} s a message may take: "
                "a loop or a macro runs too long"
            )

    def derived(self, locals: dict[str, Any] | None = None) -> Context:
        # A scoped block renders in a derived context: it keeps the deadline.
        context = cast(RenderContext, super().derived(locals))
        context.deadline = self.deadline
        return context


class _Timed:
    """An iterable that checks the deadline at every step; `len()` still works for `loop`."""

    __slots__ = ("_context", "_items")

    def __init__(self, items: Iterable[Any], context: RenderContext) -> None:
        self._items = items
        self._context = context

    def __len__(self) -> int:
        return len(self._items)  # type: ignore[arg-type]  # TypeError for an iterator, as Jinja expects

    def __iter__(self) -> Iterator[Any]:
        tick = self._context.tick
        for item in self._items:
            tick()
            yield item


@pass_context
def _loop_guard(context: Context, items: Iterable[Any]) -> Iterable[Any]:
    return _Timed(items, context) if isinstance(context, RenderContext) else items


class _Buffer(list[str]):
    """Captured output (a macro's, `{% set %}…{% endset %}`'s), measured as it is written."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, item: str) -> None:
        self.size += len(item)
        if self.size > MAX_TEXT:
            need_text(self.size)
        super().append(item)

    def extend(self, items: Iterable[str]) -> None:
        for item in items:
            self.append(item)


class _CodeGenerator(CodeGenerator):
    environment: Sandbox
    _context_names: frozenset[str] = frozenset()

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        # Names read from the context and never set by the template, in any block or scope:
        # `{% set client = [...] %}` in one block must not pass for the context's `client`.
        assigned = {name.name for name in node.find_all(nodes.Name) if name.ctx != "load"}
        self._context_names = frozenset(meta.find_undeclared_variables(node)) - assigned
        super().visit_Template(node, frame)

    def _output_child_pre(
        self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo
    ) -> None:
        super()._output_child_pre(node, frame, self._finalize_for(node, finalize))

    def _output_child_post(
        self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo
    ) -> None:
        super()._output_child_post(node, frame, self._finalize_for(node, finalize))

    def _finalize_for(
        self, node: nodes.Expr, finalize: CodeGenerator._FinalizeInfo
    ) -> CodeGenerator._FinalizeInfo:
        """No measuring for what is text already, or the application's own data: a value
        of the context (made of short texts, numbers, dates), or a filter that makes text.
        Most of what a message prints is one of these, and it is printed a million times."""
        if isinstance(node, nodes.Filter):
            plain = node.name in self.environment.text_filters
        else:
            while isinstance(node, nodes.Getattr | nodes.Getitem):
                node = node.node
            plain = isinstance(node, nodes.Name) and node.name in self._context_names
        return finalize._replace(src=None) if plain else finalize

    def buffer(self, frame: Frame) -> None:
        # A loop inside `{% set x %}` or a macro writes into this buffer, not to the output
        # `MessageTemplate` measures: it must stop at the bound too.
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.new_buffer()")

    def _output_child_to_const(
        self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo
    ) -> str:
        # Only literal text is computed while compiling. Folding an expression here would
        # build its value (and then its repr, in the compiled code) before any bound looks.
        if not isinstance(node, nodes.TemplateData | nodes.Const):
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)

    def visit_Output(self, node: nodes.Output, frame: Frame) -> None:
        # Jinja records the template line of printed values only; literal text would count
        # as the line before it. Recorded here, a problem in the text can name its line.
        self.newline(node)
        super().visit_Output(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b` is measured before it is joined: two texts within the bound can make one
        # past it, and a list in it turns into the text of every item.
        if frame.eval_ctx.volatile:
            markup = "context.eval_ctx.autoescape"
        else:
            markup = repr(bool(frame.eval_ctx.autoescape))
        self.write("environment.join_parts((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write(f"), {markup})")


def _finalize(value: Any) -> Any:
    """Every printed value: a list is measured before it is turned into text."""
    if value.__class__ is not str and isinstance(value, COLLECTIONS):
        need_text(text_size(value))
    return value


class Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox with the bounds, and a fast path for the plain dicts contexts are made of.

    Looking a key up in a dict is what Jinja falls back to anyway after the attribute
    lookup fails; trying the key first skips raising and catching an AttributeError for
    every `{{ client.name }}`, which is most of the cost of rendering 100 000 messages.
    """

    intercepted_binops = frozenset({"*", "+", "%", "**"})
    code_generator_class = _CodeGenerator
    context_class = RenderContext

    def __init__(self, filters: Mapping[str, Callable[..., Any]], **options: Any) -> None:
        """`filters` are the application's own, added as they are: each must keep within the
        bounds by itself and make text (gateway.formatting's turn a number or a date into a
        short text)."""
        super().__init__(undefined=StrictUndefined, optimized=False, finalize=_finalize, **options)
        # Filler text: lipsum(10**6) is tens of megabytes. (A message's context carries no
        # globals at all, being shared; this is for whatever else the sandbox compiles.)
        del self.globals["lipsum"]
        self.filters = {
            name: _bounded_filter(name, function)
            for name, function in self.filters.items()
            if name not in _NOT_OFFERED
        }
        self.filters["join"] = _bounded_filter("join", _join)
        self.filters.update(filters)
        self.text_filters = _TEXT_FILTERS | frozenset(filters)
        self.filters[LOOP_GUARD] = _loop_guard
        tests = cast(dict[str, Callable[..., Any]], self.tests)
        for name in ("lower", "upper"):  # these tests look at str(value)
            tests[name] = _measuring_test(tests[name])

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and not attribute.startswith("_"):
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def call(
        __self,  # Jinja's own spelling: a call may pass `self` or `context` as keywords
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if isinstance(__context, RenderContext):
            __context.tick()  # a macro that calls itself twice runs for ever without a loop
        args = _checked_arguments(__obj, args, kwargs)
        return checked(super().call(__context, __obj, *args, **kwargs))

    def join_parts(self, parts: tuple[Any, ...], markup: bool) -> str:
        """`a ~ b ~ c`, once the parts are known to fit."""
        size = 0
        for part in parts:
            size += text_size(part, MAX_TEXT - size)
        need_text(size)
        return markup_join(parts) if markup else str_join(parts)

    def new_buffer(self) -> list[str]:
        return _Buffer()

    def concat(self, parts: Iterable[str]) -> str:
        """Output joined in one piece (captured, or a whole template): measured first."""
        pieces = parts if isinstance(parts, list) else list(parts)
        need_text(sum(map(len, pieces)))
        return "".join(pieces)


# Methods of plain values a template may call; others (encode, translate, to_bytes, ...)
# are refused. Those of text that pad, replace, join or format are measured first.
_SAFE_METHODS = frozenset(
    {
        # text
        *("capitalize", "casefold", "count", "endswith", "find", "index", "isalnum"),
        *("isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower"),
        *("isnumeric", "isprintable", "isspace", "istitle", "isupper", "lower", "lstrip"),
        *("partition", "removeprefix", "removesuffix", "rfind", "rindex", "rpartition"),
        *("rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase"),
        *("title", "upper", "striptags", "unescape", "escape"),
        # numbers
        *("as_integer_ratio", "bit_count", "bit_length", "conjugate", "is_integer"),
        *("quantize", "normalize", "to_integral_value"),
        # dates and times
        *("astimezone", "ctime", "date", "isocalendar", "isoformat", "isoweekday"),
        *("replace", "strftime", "time", "timestamp", "timetz", "toordinal"),
        *("total_seconds", "tzname", "utcoffset", "weekday"),
        # lists, dicts, sets
        *("copy", "get", "items", "keys", "values", "difference", "intersection"),
        *("isdisjoint", "issubset", "issuperset", "symmetric_difference", "union"),
    }
)
_MEASURED_TEXT_METHODS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join", "format", "format_map"}
)
_PLAIN_VALUES = (
    str,
    bytes,
    int,
    float,
    Decimal,
    date,
    clock_time,
    timedelta,
    list,
    tuple,
    dict,
    set,
    frozenset,
    range,
)


def _checked_arguments(
    function: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[Any, ...]:
    """The arguments to call `function` with, once the call is known to stay in bounds."""
    method = getattr(function, "__wrapped__", function)  # Jinja wraps str.format
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, _PLAIN_VALUES):
        return args  # a macro, loop.cycle, range(), namespace(), ...
    name = getattr(method, "__name__", "")
    if isinstance(owner, str) and name in _MEASURED_TEXT_METHODS:
        return _measure_text_method(owner, name, args, kwargs)
    if name not in _SAFE_METHODS:
        raise SecurityError(f"{type(owner).__name__}.{name}() is not available in templates")
    return args


def _measure_text_method(
    text: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[Any, ...]:
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill") and isinstance(first, int):
        need_text(first)
    elif name == "expandtabs":
        tab = kwargs.get("tabsize", 8) if first is None else first
        if isinstance(tab, int):
            need_text(len(text) + text.count("\t") * tab)
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        count = args[2] if len(args) > 2 and isinstance(args[2], int) else None
        need_text(replace_size(text, args[0], _text(args[1]), count))
    elif name == "join" and first is not None:
        items = list(first)  # an iterator is read once: measured and joined from a list
        need_text(join_size(items, text))
        return (items, *args[1:])
    elif name == "format":
        need_text(format_size(text, args, kwargs))
    elif name == "format_map" and isinstance(first, Mapping):
        need_text(format_size(text, (), first))
    return args


def _text(value: Any) -> str:
    need_text(text_size(value))
    return str(value)


# Jinja's filters that make text or a number, never a list.
_TEXT_FILTERS = frozenset(
    {
        *("abs", "capitalize", "center", "count", "e", "escape", "filesizeformat", "float"),
        *("forceescape", "format", "indent", "int", "join", "length", "lower", "replace"),
        *("round", "safe", "string", "striptags", "title", "trim", "truncate", "upper"),
        *("urlencode", "wordcount", "wordwrap", "xmlattr"),
    }
)

# Filters a client message has no use for, whose output is hard to bound in advance.
_NOT_OFFERED = frozenset({"pprint", "tojson", "urlize"})

# Filters that do not turn their value into text: a long list passes through them.
_STRUCTURAL = frozenset(
    {
        *("attr", "batch", "count", "d", "default", "dictsort", "first", "groupby"),
        *("items", "join", "last", "length", "list", "map", "max", "min", "random"),
        *("reject", "rejectattr", "reverse", "select", "selectattr", "slice", "sort"),
        *("sum", "unique"),
    }
)


def _center(value: Any, width: Any = 80, *_: Any) -> None:
    if isinstance(width, int):
        need_text(width)


def _indent(text: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    text = text if isinstance(text, str) else ""
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    need_text(len(text) + (text.count("\n") + 1) * pad)


def _wordwrap(
    text: Any, width: Any = 79, breaks: Any = True, wrap: Any = None, *_: Any, **kw: Any
) -> None:
    wrap = kw.get("wrapstring", wrap)
    if isinstance(text, str) and wrap is not None:
        need_text(len(text) * max(text_size(wrap), 1))


def _replace(text: Any, old: Any, new: Any, count: Any = None) -> None:
    count = count if isinstance(count, int) else None
    need_text(replace_size(_text(text), _text(old), _text(new), count))


def _format(template: Any, *args: Any, **kwargs: Any) -> None:
    need_text(percent_size(_text(template), kwargs or args))


def _count_of_parts(value: Any, count: Any = None, *_: Any, **kwargs: Any) -> None:
    count = kwargs.get("linecount", kwargs.get("slices", count))
    if isinstance(count, int):
        need_items(count)


def _numbers_only(value: Any, attribute: Any = None, start: Any = 0) -> None:
    if not isinstance(start, int | float | Decimal):
        raise LimitExceeded("sum adds numbers: a start that is a list or a text is not allowed")


_MEASURE_FIRST: Mapping[str, Callable[..., None]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "format": _format,
    "batch": _count_of_parts,
    "slice": _count_of_parts,
    "sum": _numbers_only,
}


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    """Jinja's `join`, measured first: a list can hold one long text a thousand times."""
    items = list(value)
    if attribute is not None:
        getter = make_attrgetter(eval_ctx.environment, attribute)
        items = [getter(item) for item in items]
    need_text(join_size(items, _text(d)))
    return sync_do_join(eval_ctx, items, d)


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Jinja's filter `name`, its value measured when it is a list it would turn into text,
    its arguments when it can multiply its input, and its result."""
    measure = _MEASURE_FIRST.get(name)
    textual = name not in _STRUCTURAL
    # Jinja marks filters that take the context, eval context or environment first.
    skip = 0 if getattr(function, "jinja_pass_arg", None) is None else 1

    @functools.wraps(function)  # keeps Jinja's mark, so Jinja passes the same first argument
    def bounded(*args: Any, **kwargs: Any) -> Any:
        value = args[skip]  # Jinja always passes the value filtered
        if textual and value.__class__ is not str and isinstance(value, COLLECTIONS):
            need_text(text_size(value))
        if measure is not None:
            # Wrong arguments: the filter itself says so, in its own words.
            with contextlib.suppress(TypeError):
                measure(*args[skip:], **kwargs)
        result = function(*args, **kwargs)
        return result if result.__class__ is str and len(result) <= MAX_TEXT else checked(result)

    return bounded


def _measuring_test(test: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(test)
    def measured(value: Any, *args: Any) -> Any:
        if isinstance(value, COLLECTIONS):
            need_text(text_size(value))
        return test(value, *args)

    return measured
