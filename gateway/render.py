"""Message templates: one Jinja2 source per occasion, a block per channel, rendered in a sandbox.

A template offers a channel only when it has that channel's blocks (`telegram`; `sms`;
e-mail needs `subject` and `email_text`, and `email_html` adds an HTML part). Rendering runs
in Jinja2's ImmutableSandboxedEnvironment with StrictUndefined, so a misspelt name is an
error and not an empty hole in a thousand messages. The `telegram` and `email_html` blocks
are HTML: values put into them are escaped, the template's own tags are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from gateway import formatting

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


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with a fast path for the plain dicts our contexts are made of.

    Looking a key up in a dict is what Jinja falls back to anyway after the attribute
    lookup fails; trying the key first skips raising and catching an AttributeError for
    every `{{ client.name }}`, which is most of the cost of rendering 100 000 messages.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and not attribute.startswith("_"):
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def _environment() -> _Sandbox:
    """Autoescaping on: `_compile` turns it off inside the plain-text blocks."""
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(formatting.FILTERS)
    return env


_HTML_ENV = _environment()
_EMAIL_LAYOUT = _HTML_ENV.from_string(
    (resources.files("templates") / "_email_layout.html").read_text(encoding="utf-8")
)
"""Wraps every `email_html` block: the company's header and footer, the unsubscribe link."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message rendered for the channels asked for: {channel: {part: text}}.

    Telegram and SMS have one part, `text`; e-mail has `subject`, `text` and maybe `html`.
    """

    content: dict[str, dict[str, str]]


class MessageTemplate:
    """A compiled template: which channels it offers, what occasion data it needs."""

    def __init__(self, name: str, source: str, origin: str) -> None:
        self.name = name
        self.source = source
        self.origin = origin
        ast = _parse(name, source)
        self.blocks = tuple(block.name for block in ast.find_all(nodes.Block))
        _check_blocks(name, ast)
        _check_forbidden(name, ast)
        self.names = frozenset(_undeclared(ast))
        self.needs = self.names - COMMON_SECTIONS
        self.channels = tuple(
            channel
            for channel, parts in CHANNEL_BLOCKS.items()
            if all(part in self.blocks for part in parts)
        )
        self._template = _compile(name, ast)

    def render(self, context: Mapping[str, Any], channels: Iterable[str]) -> Rendered:
        """Render the blocks of `channels` (each must be offered) with one context."""
        wanted = tuple(channels)
        missing = [channel for channel in wanted if channel not in self.channels]
        if missing:
            raise TemplateProblem(self.name, f"has no block for {', '.join(missing)}")
        ctx = self._template.new_context(dict(context), shared=True)
        content: dict[str, dict[str, str]] = {}
        for channel in wanted:
            if channel == "email":
                part = {
                    "subject": _LINE_BREAKS.sub(" ", self._block(ctx, "subject")),
                    "text": self._block(ctx, "email_text"),
                }
                if "email_html" in self.blocks:
                    body = Markup(self._block(ctx, "email_html"))
                    part["html"] = _EMAIL_LAYOUT.render(context, body=body, subject=part["subject"])
                content[channel] = part
            else:
                content[channel] = {"text": self._block(ctx, channel)}
        return Rendered(content)

    def _block(self, ctx: Any, block: str) -> str:
        try:
            text = "".join(self._template.blocks[block](ctx))
        except Exception as exc:
            # Whatever a template and one client's data can raise (a missing name, 1/0, a
            # date filter given a string) is that template's problem, reported with its line.
            raise TemplateProblem(self.name, _reason(exc), _line_of(exc, self._template)) from None
        text = text.strip()
        if " \n" in text or "\t\n" in text:
            text = _TRAILING_SPACE.sub("\n", text)
        return _BLANK_LINES.sub("\n\n", text) if "\n\n\n" in text else text


def check_template(template: MessageTemplate, context: Mapping[str, Any]) -> Rendered:
    """Render every offered channel against `context` (a sample with every section)."""
    if not template.channels:
        raise TemplateProblem(
            template.name,
            "offers no channel: add a telegram or sms block, or subject and email_text",
        )
    return template.render(context, template.channels)


def _parse(name: str, source: str) -> nodes.Template:
    try:
        return _HTML_ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(name, exc.message or "syntax error", exc.lineno) from None


def _compile(name: str, ast: nodes.Template) -> Template:
    """One compiled template for every block: HTML blocks escape what they print, the text
    blocks are wrapped in `{% autoescape false %}`, so one context serves all channels."""
    for block in list(ast.find_all(nodes.Block)):
        if block.name not in HTML_BLOCKS:
            plain = [nodes.Keyword("autoescape", nodes.Const(False), lineno=block.lineno)]
            block.body = [nodes.ScopedEvalContextModifier(plain, block.body, lineno=block.lineno)]
    try:
        code = _HTML_ENV.compile(ast, name=None, filename=_FILENAME)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(name, exc.message or "syntax error", exc.lineno) from None
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
