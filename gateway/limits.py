"""How much a template may build, send and take: checked before a value is made, not after.

Staff write templates, and a template is a small program: `{{ 'x' * 10**9 }}` asks for a
gigabyte. Every operation that can make a value much larger than its inputs (repeating,
padding, replacing, joining, formatting, raising to a power) is measured from its inputs
first and refused past a bound, so no bound is ever checked on a value already too big to
hold. Operations whose result is at most a few times their inputs are checked after, which
stops a chain of them from growing without end. What one message may send is bounded per
channel (`Limits`).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2.utils import Namespace

from gateway.sms_length import SURE_PER_PART

MAX_TEXT = 524_288
"""Characters in any text a template makes: one value, a captured block, a block's output."""
MAX_ITEMS = 100_000
"""Items in any list a template makes (as many as Jinja's sandboxed range() allows)."""
MAX_INT_BITS = 65_536
"""Bits in an integer a template computes (about 20 000 digits)."""
MAX_SOURCE = 100_000
"""Characters in a template's source; the built-in ones are about 5 000."""
MAX_SECONDS = 2.0
"""The time one message's loops and calls may take: a runaway loop stops here."""

_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))
COLLECTIONS: tuple[type[Any], ...] = (list, tuple, dict, set, frozenset, *_VIEWS, Namespace)
"""What `str()` turns into text item by item (concrete classes: an ABC is slow to test)."""
_SCALAR_SIZE = 32
"""What a date, a float, a Decimal or a Jinja object takes as text, at most (near enough)."""


class LimitExceeded(Exception):
    """A template asked for more than a bound allows; the message names the bound."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one message may be, per channel.

    Telegram's 4 096 characters are counted after its HTML is read (a tag counts nothing,
    `&amp;` one) in UTF-16 code units, as Telegram measures entities: an emoji counts 2,
    which is never less than Telegram's own count. SMS are counted in parts as the phone
    splits them. The bounds apply to the template's own text: the opt-out line added to
    advertising comes on top.
    """

    sms_parts: int = 6
    telegram_chars: int = 4096
    subject_chars: int = 300
    email_chars: int = 262_144
    """Each of `email_text` and `email_html` (the HTML before the layout wraps it)."""

    def certainly_fits(self, block: str) -> int:
        """A length in characters under which a block's text needs no measuring.

        Telegram: no character is more than 2 UTF-16 units, and tags and entities count
        less than they take. SMS: see `sms_length.SURE_PER_PART`.
        """
        if block == "telegram":
            return self.telegram_chars // 2
        if block == "sms":
            return SURE_PER_PART * self.sms_parts
        return self.subject_chars if block == "subject" else self.email_chars


DEFAULT_LIMITS = Limits()


def grouped(number: int) -> str:
    """9812 -> "9 812", as Russian readers group digits."""
    return f"{number:,}".replace(",", " ")


def need_text(size: int) -> None:
    if size > MAX_TEXT:
        raise LimitExceeded(
            f"this would make a text of {grouped(size)} characters; "
            f"a template may make at most {grouped(MAX_TEXT)}"
        )


def need_items(count: int) -> None:
    if count > MAX_ITEMS:
        raise LimitExceeded(
            f"this would make a list of {grouped(count)} items; "
            f"a template may make at most {grouped(MAX_ITEMS)}"
        )


def need_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise LimitExceeded(f"this would make a number of about {grouped(bits * 3 // 10)} digits")


def text_size(value: Any, budget: int = MAX_TEXT) -> int:
    """How long `str(value)` would be, give or take a small factor; stops once past `budget`.

    A list can hold one long text a thousand times at the cost of a thousand references, so
    the walk goes through every item, shared or not, and stops as soon as the sum passes
    the budget: it costs at most `budget` steps, whatever the structure.
    """
    if isinstance(value, str):
        return len(value)
    size = 0
    stack: list[Any] = [value]
    while stack:
        item: Any = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, int):
            size += item.bit_length() // 3 + 2
        elif isinstance(item, dict):
            size += 2 + len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, Namespace):
            # Its repr shows its attributes, which live in a private dict.
            size += 16
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        elif isinstance(item, COLLECTIONS):
            size += 2 + len(item)
            stack.extend(item)
        else:
            size += _SCALAR_SIZE
        if size > budget:
            return size
    return size


def checked(value: Any) -> Any:
    """`value` if it is within the bounds; for results that cannot be measured in advance."""
    if value.__class__ is str:
        if len(value) > MAX_TEXT:
            need_text(len(value))
    elif isinstance(value, str | bytes):
        need_text(len(value))
    elif isinstance(value, list | tuple | dict | set | frozenset):
        need_items(len(value))
    elif isinstance(value, int):
        need_bits(value.bit_length())
    return value


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse `left <operator> right` if its result would be past a bound."""
    if operator == "*":
        if isinstance(left, int) and not isinstance(right, int):
            left, right = right, left
        if isinstance(right, int):
            if isinstance(left, str):
                need_text(len(left) * right)
            elif isinstance(left, list | tuple):
                need_items(len(left) * right)
            elif isinstance(left, int):
                need_bits(left.bit_length() + right.bit_length())
    elif operator == "+":
        if isinstance(left, str) and isinstance(right, str):
            need_text(len(left) + len(right))
        elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
            need_items(len(left) + len(right))
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            need_bits(int(right * math.log2(abs(left))) + 1)
    elif operator == "%" and isinstance(left, str):
        need_text(percent_size(left, right))


# What follows a printf-style conversion's `%` and its `(key)`: flags, width, precision (a
# `*` takes them from the values). Matched at a known place, never searched for.
_PERCENT_SPEC = re.compile(r"[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")


def percent_size(template: str, args: Any) -> int:
    """At most how long `template % args` is: every conversion may print the longest value.

    The template is read once, left to right, as Python reads it: a search for conversions
    would go over the rest of a long template again from every `%(` left open.
    """
    values = list(args.values()) if isinstance(args, Mapping) else args
    values = values if isinstance(values, list | tuple) else [values]
    longest = max((text_size(value) for value in values), default=0)
    stars = max((abs(value) for value in values if isinstance(value, int)), default=0)
    size = len(template)
    start = template.find("%")
    while start != -1 and size <= MAX_TEXT:
        at = _after_key(template, start + 1)
        if at is None:
            break  # a key left open: Python refuses the whole template
        spec = _PERCENT_SPEC.match(template, at)
        assert spec is not None  # every part of it may be empty
        width, precision = spec.groups()
        size += longest + _number(width, stars) + _number(precision, stars)
        start = template.find("%", spec.end() + 1)  # past the conversion's letter (or `%`)
    return size


def _after_key(template: str, at: int) -> int | None:
    """Where a conversion goes on after its `(key)`, brackets in the key nested as Python
    nests them; `at` itself if it has no key; None if the key is never closed."""
    if not template.startswith("(", at):
        return at
    depth, at = 1, at + 1
    while depth:
        close = template.find(")", at)
        if close == -1:
            return None
        depth += template.count("(", at, close) - 1
        at = close + 1
    return at


# The width and precision of a str.format spec: [[fill]align][sign][z][#][0][width][,][.prec]
_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[_,]?(?:\.(\d*))?[a-zA-Z%]?", re.DOTALL)


def format_size(template: str, args: Iterable[Any], kwargs: Mapping[str, Any]) -> int:
    """At most how long `template.format(*args, **kwargs)` is; a nested `{}` is refused."""
    values = [*args, *kwargs.values()]
    longest = max((text_size(value) for value in values), default=0)
    size = len(template)
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is None:
            continue
        if spec and "{" in spec:
            raise LimitExceeded("a format field inside a format spec is not allowed in templates")
        match = _SPEC.fullmatch(spec or "")
        width, precision = match.groups() if match else ("", "")
        size += longest + _number(width, 0) + _number(precision, 0)
        if size > MAX_TEXT:
            break
    return size


def _number(text: str | None, star: int) -> int:
    if not text:
        return 0
    return star if text == "*" else int(text)


def replace_size(text: str, old: str, new: str, count: int | None = None) -> int:
    """Exactly how long `text.replace(old, new, count)` is."""
    found = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def join_size(items: list[Any], separator: str) -> int:
    size = len(separator) * max(len(items) - 1, 0)
    for item in items:
        size += text_size(item, MAX_TEXT - size)
        if size > MAX_TEXT:
            break
    return size
