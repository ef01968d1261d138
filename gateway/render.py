"""Message templates: one Jinja2 source per occasion, a block per channel, rendered in a sandbox.

A template offers a channel only when it has that channel's blocks (`telegram`; `sms`;
e-mail needs `subject` and `email_text`, and `email_html` adds an HTML part). Rendering runs
in Jinja2's ImmutableSandboxedEnvironment with StrictUndefined, so a misspelt name is an
error and not an empty hole in a thousand messages. The `telegram` and `email_html` blocks
are HTML: values put into them are escaped, the template's own tags are not.

Rendering is bounded (gateway.limits, gateway.sandbox): no value a template makes may pass
MAX_TEXT characters, a block's output is measured as it is produced and dropped once past
that, and each channel's text is held to what the channel takes (`Limits`); so a template
that asks for too much is a TemplateProblem with its line, at save and for every message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import GeneratorType
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from markupsafe import Markup

from gateway import formatting, telegram_html
from gateway.limits import DEFAULT_LIMITS, MAX_SOURCE, MAX_TEXT, Limits, grouped
from gateway.sandbox import LOOP_GUARD, RenderContext, Sandbox
from gateway.sms_length import fits, sms_length

BLOCKS = ("subject", "telegram", "sms", "email_text", "email_html")
HTML_BLOCKS = frozenset({"telegram", "email_html"})
CHANNEL_BLOCKS: Mapping[str, tuple[str, ...]] = {
    "telegram": ("telegram",),
    "sms": ("sms",),
    "email": ("subject", "email_text"),
}
COMMON_SECTIONS = frozenset(
    {"client", "car", "company", "links", "today", "timezone", "locale", "currency"}
)
"""Names every message context has; anything else a template uses is occasion data."""

_FILENAME = "<template>"
_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
# Only plain white space: the no-break spaces the filters put in "1 500 ₽" must stay.
_LINE_BREAKS = re.compile(r"[ \t\r\n]+")


class TemplateProblem(Exception):
    """A template cannot be used; says which template, which line and why."""

    def __init__(self, name: str, reason: str, line: int | None = None) -> None:
        self.name = name
        self.reason = reason
        self.line = line
        where = f"{name}, line {line}" if line else name
        super().__init__(f"{where}: {reason}")


_HTML_ENV = Sandbox(
    formatting.FILTERS,
    autoescape=True,  # `_compile` turns it off inside the plain-text blocks
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)
_EMAIL_LAYOUT = _HTML_ENV.from_string(
    (resources.files("templates") / "_email_layout.html").read_text(encoding="utf-8")
)
"""Wraps every `email_html` block: the company's header and footer, the unsubscribe link."""


def _layout(context: dict[str, Any]) -> str:
    """The e-mail layout around a body already within its bound. The layout is our own, so
    it is joined as it is; `Template.render` would measure it again for every e-mail."""
    return "".join(_EMAIL_LAYOUT.root_render_func(_EMAIL_LAYOUT.new_context(context)))


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message rendered for the channels asked for: {channel: {part: text}}.

    Telegram and SMS have one part, `text`; e-mail has `subject`, `text` and maybe `html`.
    """

    content: dict[str, dict[str, str]]


class MessageTemplate:
    """A compiled template: which channels it offers, what occasion data it needs.

    `limits` bound every rendering of it, one message or a hundred thousand.
    """

    def __init__(
        self, name: str, source: str, origin: str, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.name = name
        self.source = source
        self.origin = origin
        self.limits = limits
        self._fits = {block: limits.certainly_fits(block) for block in BLOCKS}
        self._lines: dict[int, int] = {}
        if len(source) > MAX_SOURCE:
            raise TemplateProblem(
                name,
                f"the template is {grouped(len(source))} characters long; "
                f"at most {grouped(MAX_SOURCE)}",
            )
        try:
            ast = _parse(name, source)
            self.blocks = tuple(block.name for block in ast.find_all(nodes.Block))
            _check_blocks(name, ast)
            _check_forbidden(name, ast)
            _check_names(name, ast)
            _check_telegram_tags(name, ast)
            self.names = frozenset(_undeclared(ast))
            self._template = _compile(name, ast)
        except RecursionError:
            raise TemplateProblem(name, "the template nests too deeply") from None
        self.needs = self.names - COMMON_SECTIONS
        self.channels = tuple(
            channel
            for channel, parts in CHANNEL_BLOCKS.items()
            if all(part in self.blocks for part in parts)
        )

    def render(self, context: Mapping[str, Any], channels: Iterable[str]) -> Rendered:
        """Render the blocks of `channels` (each must be offered) with one context."""
        wanted = tuple(channels)
        missing = [channel for channel in wanted if channel not in self.channels]
        if missing:
            raise TemplateProblem(self.name, f"has no block for {', '.join(missing)}")
        ctx: RenderContext = self._template.new_context(dict(context), shared=True)  # type: ignore[assignment]
        content: dict[str, dict[str, str]] = {}
        for channel in wanted:
            if channel == "email":
                part = {
                    "subject": self._block(ctx, "subject"),
                    "text": self._block(ctx, "email_text"),
                }
                if "email_html" in self.blocks:
                    body = Markup(self._block(ctx, "email_html"))
                    part["html"] = _layout({**context, "body": body, "subject": part["subject"]})
                content[channel] = part
            else:
                content[channel] = {"text": self._block(ctx, channel)}
        return Rendered(content)

    def check_telegram(self, context: Mapping[str, Any]) -> None:
        """Refuse a `telegram` block Telegram would refuse, naming the line of the problem."""
        pieces = self._pieces(self._context(context), "telegram")
        problem = telegram_html.first_problem("".join(chunk for chunk, _ in pieces))
        if problem is not None:
            offset, reason = problem
            raise TemplateProblem(self.name, reason, _line_in(pieces, offset))

    def _context(self, context: Mapping[str, Any]) -> RenderContext:
        ctx = self._template.new_context(dict(context), shared=True)
        return ctx  # type: ignore[return-value]  # the sandbox's context_class

    def _chunks(self, ctx: RenderContext, block: str) -> GeneratorType[str, None, None]:
        return self._template.blocks[block](ctx)  # type: ignore[return-value]  # a generator

    def _block(self, ctx: RenderContext, block: str) -> str:
        chunks: GeneratorType[str, None, None] = self._template.blocks[block](ctx)  # type: ignore[assignment]
        parts: list[str] = []
        size = 0
        try:
            # Measured as it comes: a loop printing a long value stops at the bound, it never
            # builds the hundred megabytes it asks for.
            for chunk in chunks:
                size += len(chunk)
                if size > MAX_TEXT:
                    break
                parts.append(chunk)
        except Exception as exc:
            # Whatever a template and one client's data can raise (a missing name, 1/0, a
            # date filter given a string, a bound) is that template's problem, with its line.
            raise TemplateProblem(self.name, _reason(exc), _line_of(exc, self._template)) from None
        if size > MAX_TEXT:
            raise TemplateProblem(
                self.name,
                f"the {block} block makes more than {grouped(MAX_TEXT)} characters",
                self._line_now(chunks),
            )
        text = "".join(parts).strip()
        if " \n" in text or "\t\n" in text:
            text = _TRAILING_SPACE.sub("\n", text)
        if "\n\n\n" in text:
            text = _BLANK_LINES.sub("\n\n", text)
        if block == "subject":
            text = _LINE_BREAKS.sub(" ", text)
        if len(text) > self._fits[block]:
            excess = self._excess(block, text)
            if excess is not None:
                reason, offset = excess
                raise TemplateProblem(self.name, reason, _line_in(self._pieces(ctx, block), offset))
        return text

    def _excess(self, block: str, text: str) -> tuple[str, int] | None:
        """Why `text` is too long for its channel, and about where it passes; None if it fits."""
        limits = self.limits
        if block == "telegram":
            limit = limits.telegram_chars
            if (length := telegram_html.visible_length(text)) > limit:
                return (
                    f"the Telegram text is {grouped(length)} characters without its tags, "
                    f"more than the {grouped(limit)} Telegram takes",
                    telegram_html.visible_offset(text, limit),
                )
        elif block == "sms":
            if not fits(text, limits.sms_parts):
                parts = sms_length(text)
                return (
                    f"the SMS takes {parts}, more than [sms] max_parts = {limits.sms_parts}",
                    limits.sms_parts * parts.per_segment,
                )
        else:
            limit = limits.subject_chars if block == "subject" else limits.email_chars
            if len(text) > limit:
                return (
                    f"the {_WHAT[block]} is {grouped(len(text))} characters, "
                    f"more than {grouped(limit)}",
                    limit,
                )
        return None

    def _pieces(self, ctx: RenderContext, block: str) -> list[tuple[str, int | None]]:
        """The block's output again, piece by piece, each with the line that printed it."""
        chunks = self._chunks(ctx, block)
        pieces: list[tuple[str, int | None]] = []
        size = 0
        try:
            for chunk in chunks:
                size += len(chunk)
                if size > MAX_TEXT:
                    break
                pieces.append((chunk, self._line_now(chunks)))
        except Exception as exc:
            raise TemplateProblem(self.name, _reason(exc), _line_of(exc, self._template)) from None
        return pieces

    def _line_now(self, chunks: GeneratorType[str, None, None]) -> int | None:
        """The template line a paused block is printing."""
        frame = chunks.gi_frame
        if frame is None:
            return None
        line = self._lines.get(frame.f_lineno)
        if line is None:  # Jinja looks it up line by line: once per line of code is enough
            line = self._lines[frame.f_lineno] = self._template.get_corresponding_lineno(
                frame.f_lineno
            )
        return line


_WHAT = {"subject": "e-mail subject", "email_text": "e-mail text", "email_html": "e-mail HTML"}


def _line_in(pieces: list[tuple[str, int | None]], offset: int) -> int | None:
    """The line of the character at `offset` of the output `pieces` make up."""
    for chunk, line in pieces:
        if offset < len(chunk):
            return None if line is None else line + chunk.count("\n", 0, offset)
        offset -= len(chunk)
    return pieces[-1][1] if pieces else None


def check_template(template: MessageTemplate, context: Mapping[str, Any]) -> Rendered:
    """Render every offered channel against `context` (a sample with every section)."""
    if not template.channels:
        raise TemplateProblem(
            template.name,
            "offers no channel: add a telegram or sms block, or subject and email_text",
        )
    rendered = template.render(context, template.channels)
    if "telegram" in template.channels:
        template.check_telegram(context)
    return rendered


def _parse(name: str, source: str) -> nodes.Template:
    try:
        return _HTML_ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(name, exc.message or "syntax error", exc.lineno) from None


def _compile(name: str, ast: nodes.Template) -> Template:
    """One compiled template for every block: HTML blocks escape what they print, the text
    blocks are wrapped in `{% autoescape false %}`, so one context serves all channels.
    Every loop iterates through the sandbox's guard, which stops it at the deadline."""
    for block in list(ast.find_all(nodes.Block)):
        if block.name not in HTML_BLOCKS:
            plain = [nodes.Keyword("autoescape", nodes.Const(False), lineno=block.lineno)]
            block.body = [nodes.ScopedEvalContextModifier(plain, block.body, lineno=block.lineno)]
    for loop in list(ast.find_all(nodes.For)):
        loop.iter = nodes.Filter(loop.iter, LOOP_GUARD, [], [], None, None, lineno=loop.lineno)
    try:
        code = _HTML_ENV.compile(ast, name=None, filename=_FILENAME)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(name, exc.message or "syntax error", exc.lineno) from None
    except SyntaxError:  # Python's own limit, e.g. on nested brackets in the compiled code
        raise TemplateProblem(name, "the template nests too deeply") from None
    return _HTML_ENV.template_class.from_code(_HTML_ENV, code, _HTML_ENV.make_globals(None))


def _check_blocks(name: str, ast: nodes.Template) -> None:
    seen: set[str] = set()
    for block in ast.find_all(nodes.Block):
        if block.name not in BLOCKS:
            raise TemplateProblem(
                name, f"unknown block {block.name!r}: use {', '.join(BLOCKS)}", block.lineno
            )
        seen.add(block.name)
    for node_type, what in (
        (nodes.Extends, "extends"),
        (nodes.Include, "include"),
        (nodes.Import, "import"),
        (nodes.FromImport, "from ... import"),
    ):
        for found in ast.find_all(node_type):
            raise TemplateProblem(
                name, f"{what} is not allowed: a template stands on its own", found.lineno
            )


def _check_forbidden(name: str, ast: nodes.Template) -> None:
    """Refuse what the sandbox would refuse at render time, before anyone sends anything.

    Names starting with an underscore lead out of the sandbox (`''.__class__.__mro__`);
    the render-time sandbox stops them too, but only on the branch that runs, so a
    template would pass a test render and fail on the one client whose data takes the
    other branch.
    """
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Test)):
        for attribute in _attributes_named(node):
            if attribute is None or attribute.startswith("_"):
                shown = "a computed attribute" if attribute is None else repr(attribute)
                raise TemplateProblem(
                    name, f"access to {shown} is not allowed in templates", node.lineno
                )


def _check_names(name: str, ast: nodes.Template) -> None:
    """Every filter and test must exist, also in a branch the sample client does not take."""
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        is_filter = isinstance(node, nodes.Filter)
        known = _HTML_ENV.filters if is_filter else _HTML_ENV.tests
        if node.name not in known:
            kind = "filter" if is_filter else "test"
            raise TemplateProblem(name, f"there is no {kind} named {node.name!r}", node.lineno)


def _check_telegram_tags(name: str, ast: nodes.Template) -> None:
    """The tags written in the `telegram` block must be Telegram's, in every branch.

    Only the tag names: a tag may be split around a value (`<a href="{{ link }}">`), so its
    attributes and the balance are checked on the sample rendering (`check_telegram`).
    """
    for block in ast.find_all(nodes.Block):
        if block.name != "telegram":
            continue
        for data in block.find_all(nodes.TemplateData):
            for tag in telegram_html.START_TAG.finditer(data.data):
                if tag[2].lower() not in telegram_html.TAGS:
                    line = data.lineno + data.data.count("\n", 0, tag.start())
                    raise TemplateProblem(name, telegram_html.unknown_tag(tag[2].lower()), line)


# Filters whose first argument names an attribute to read from each item.
_ATTRIBUTE_FILTERS = frozenset({"attr", "groupby", "selectattr", "rejectattr"})


def _attributes_named(node: nodes.Node) -> list[str | None]:
    """Attribute names a node reads; None for one computed at render time."""
    if isinstance(node, nodes.Getattr):
        return [node.attr]
    if isinstance(node, nodes.Getitem):
        arg = node.arg
        return [arg.value] if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else []
    assert isinstance(node, nodes.Filter | nodes.Test)
    named: list[nodes.Expr] = [kw.value for kw in node.kwargs if kw.key == "attribute"]
    if node.name in _ATTRIBUTE_FILTERS and node.args:
        named.append(node.args[0])
    return [
        value.value if isinstance(value, nodes.Const) and isinstance(value.value, str) else None
        for value in named
    ]


def _undeclared(ast: nodes.Template) -> set[str]:
    from jinja2 import meta

    return meta.find_undeclared_variables(ast)


def _reason(exc: Exception) -> str:
    if isinstance(exc, SecurityError):
        return f"not allowed: {exc}"
    if isinstance(exc, RecursionError):
        return "a macro or a loop calls itself too deeply"
    if isinstance(exc, MemoryError):
        return "out of memory"
    message = str(exc)
    return message.replace("'dict object' has no attribute", "no such name:")


def _line_of(exc: BaseException, template: Template) -> int | None:
    """The template line the error was raised on, from the compiled code's debug info."""
    line = None
    trace = exc.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == _FILENAME:
            line = template.get_corresponding_lineno(trace.tb_lineno)
        trace = trace.tb_next
    return line
