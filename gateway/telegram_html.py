"""Telegram's HTML subset, as the Bot API's "Formatting options" define it.

The Bot API refuses a whole message whose HTML has a tag outside the subset, a tag left
open, or a stray `<` or `&`; so a template's `telegram` block is checked when it is saved.
The subset: b, strong, i, em, u, ins, s, strike, del, tg-spoiler, span class="tg-spoiler",
a href, tg-emoji emoji-id, code, pre (a language as `<pre><code class="language-x">`),
blockquote (optionally `expandable`). Entities: &lt; &gt; &amp; &quot; and numeric ones.
Nesting: nothing inside code or pre (but pre's own code), no blockquote or link inside one
of its own kind.
"""

from __future__ import annotations

import html
import re

TAGS = (
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "tg-spoiler",
    "span",
    "a",
    "tg-emoji",
    "code",
    "pre",
    "blockquote",
)

_TOKEN = re.compile(
    r"<(?P<close>/)?(?P<name>[a-zA-Z][\w-]*)"
    r"(?P<attrs>(?:\s+[^\s=/>]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?)*)"
    r"\s*(?P<solo>/)?>"
    r"|(?P<lt><)"
    r"|(?P<amp>&)(?!(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);)"
)
_ATTRIBUTE = re.compile(r"([^\s=/>]+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+)))?")
_TAG = re.compile(r"<[^>]*>")
START_TAG = re.compile(r"<(/?)([a-zA-Z][\w-]*)")
"""The name of a tag in a piece of a template's literal text (which may hold half a tag)."""


def first_problem(text: str) -> tuple[int, str] | None:
    """Where and why Telegram would refuse `text` (the first problem), or None."""
    opened: list[tuple[str, int]] = []
    counts: dict[str, int] = {}  # of each tag open: a nesting check must not walk the stack
    for token in _TOKEN.finditer(text):
        at = token.start()
        if token["lt"]:
            return at, "a '<' that starts no tag: write &lt; for the character"
        if token["amp"]:
            return at, (
                "an '&' Telegram cannot read: write &amp; for the character; "
                "of named entities it knows only &lt; &gt; &amp; &quot;"
            )
        name = token["name"].lower()
        if name not in TAGS:
            return at, unknown_tag(name)
        if token["close"]:
            if token["attrs"] or token["solo"]:
                return at, f"</{name}> takes no attributes"
            if not opened or opened[-1][0] != name:
                inner = f"<{opened[-1][0]}> is still open" if opened else "nothing is open"
                return at, f"</{name}> closes nothing here: {inner}"
            opened.pop()
            counts[name] -= 1
            continue
        if token["solo"]:
            return at, f"<{name}/>: Telegram's tags are written <{name}>…</{name}>"
        parent = opened[-1][0] if opened else None
        problem = _attribute_problem(name, token["attrs"], parent) or _nesting_problem(
            name, parent, counts
        )
        if problem:
            return at, problem
        opened.append((name, at))
        counts[name] = counts.get(name, 0) + 1
    if opened:
        name, at = opened[-1]
        return at, f"<{name}> is not closed"
    return None


def unknown_tag(name: str) -> str:
    lines = name in ("br", "p", "div")
    hint = " (a new line in the template is a new line in the message)" if lines else ""
    return f"<{name}> is not in Telegram's HTML{hint}: use {', '.join(TAGS)}"


def _attribute_problem(name: str, attributes: str, parent: str | None) -> str | None:
    found = {
        match[1].lower(): next((value for value in match.groups()[1:] if value is not None), None)
        for match in _ATTRIBUTE.finditer(attributes)
    }
    required = {"a": "href", "span": "class", "tg-emoji": "emoji-id"}.get(name)
    optional = {"code": "class", "blockquote": "expandable"}.get(name)
    for attribute in found:
        if attribute not in (required, optional):
            return f"<{name}> cannot have {attribute}= in Telegram"
    if required is not None and not found.get(required):
        return f'<{name}> needs {required}="…"'
    if name == "span" and found["class"] != "tg-spoiler":
        return '<span> is only for spoilers: <span class="tg-spoiler">'
    if name == "tg-emoji" and not (found["emoji-id"] or "").isdigit():
        return "<tg-emoji> needs a numeric emoji-id"
    if name == "code" and "class" in found:
        if not (found["class"] or "").startswith("language-"):
            return '<code> takes only class="language-…"'
        if parent != "pre":
            return '<code class="language-…"> is only for a code block: <pre><code …>'
    if name == "blockquote" and found.get("expandable") is not None:
        return "<blockquote expandable> takes no value"
    return None


def _nesting_problem(name: str, parent: str | None, counts: dict[str, int]) -> str | None:
    # Nothing opens inside code, and only code inside pre: code and pre are only ever the
    # innermost tags, so looking at the parent is enough.
    if parent == "code":
        return f"<{name}> inside <code>: Telegram shows code as it is written"
    if parent == "pre" and name != "code":
        return f"<{name}> inside <pre>: a code block holds text, or one <code>"
    if name == "blockquote" and counts.get(name):
        return "a <blockquote> inside a <blockquote>"
    if name == "a" and counts.get(name):
        return "a link inside a link"
    return None


def visible_length(text: str) -> int:
    """The length Telegram limits: the text without tags, entities read, in UTF-16 units."""
    return _units(html.unescape(_TAG.sub("", text)))


def visible_offset(text: str, limit: int) -> int:
    """About where in `text` the visible length passes `limit` (for naming a line)."""
    count = position = 0
    for tag in [*_TAG.finditer(text), None]:
        end = len(text) if tag is None else tag.start()
        units = _units(html.unescape(text[position:end]))
        if count + units > limit:
            return position + (limit - count) * (end - position) // units
        count += units
        position = end if tag is None else tag.end()
    return len(text)


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
