"""Text a caller chose, made fit for a log line.

Whatever arrives over HTTP (a path segment, a form field, a provider's id or phone) goes
into a log line only through `loggable`: escaped like `repr`, so a newline or a control
character cannot end the line and forge the next one (or drive a terminal), and cut short,
so one request cannot flood the log. Cyrillic and other printable text stays readable.
"""

from __future__ import annotations

LIMIT = 60
"""Characters of a caller's text kept in a log line."""


def loggable(value: object, limit: int = LIMIT) -> str:
    """`value` as text, quoted and escaped as `repr` escapes it (\\n, \\x1b, \\u2028...):
    at most `limit` of its characters, and a longer one says how long it was, so
    `loggable("a" * 1000, 3)` is `'aaa'… (1000 chars)`. The limit counts the characters
    before escaping, so a line's length stays bounded whatever the text holds."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} chars)"
