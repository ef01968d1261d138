"""A CSV export's bytes as lines of text: its encoding, and which lines are not in it.

The encoding is decided once per file: a byte order mark says UTF-8 or UTF-16; without one
the file is UTF-8 when all of it is valid UTF-8 or most of its lines with non-ASCII text are
(see _vote), else Windows-1251 (what 1C writes). A line whose bytes are not text in that
encoding is marked damaged, and its row is rejected: one Windows-1251 line in a UTF-8 file
neither turns the whole file into mojibake nor is stored as mojibake itself. A damaged line
is kept as the other encoding reads it, so that the rejects file shows it legibly.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Encoding:
    codec: str  # a Python codec that neither reads nor writes a byte order mark
    bom: bool  # the file starts with a byte order mark (the rejects file gets one too)


UTF8 = Encoding("utf-8", bom=False)
UTF8_BOM = Encoding("utf-8", bom=True)
UTF16_LE = Encoding("utf-16-le", bom=True)
UTF16_BE = Encoding("utf-16-be", bom=True)
CP1251 = Encoding("cp1251", bom=False)

# Control bytes but tab and line ends: text in either encoding has none; binary data has.
_CONTROL = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_NOT_CONTROL = bytes(byte for byte in range(256) if byte not in _CONTROL)
# Four Windows-1251 Cyrillic letters in a row: rare in random bytes, in Russian text not.
_CYRILLIC_WORD = re.compile(rb"[\xa8\xb8\xc0-\xff]{4}")
# Where str.splitlines cuts a line but csv (and bytes.splitlines) do not, besides controls.
_OTHER_LINE_ENDS = ("\x85", "\u2028", "\u2029")


@dataclass(frozen=True)
class Decoded:
    encoding: Encoding
    # Each line with its end: "\r\n", "\n", or "\r" alone (old Mac exports); the last may have
    # none. These are the lines csv counts, so line numbers agree with it.
    lines: list[str]
    damaged: dict[int, str] = field(default_factory=dict)  # line number (from 1) -> why


def decode(data: bytes) -> Decoded:
    # Old DOS exports end with Ctrl-Z, the end-of-file mark: it is no row.
    data = data.removesuffix(b"\x1a")
    if data.startswith(b"\xef\xbb\xbf"):
        return _by_line(data[3:], UTF8_BOM)
    if data.startswith(b"\xff\xfe"):
        return _utf16(data[2:], UTF16_LE)
    if data.startswith(b"\xfe\xff"):
        return _utf16(data[2:], UTF16_BE)
    # Control bytes are the same characters in UTF-8 and Windows-1251, and nothing else is.
    controls = _has_control(data)
    try:
        return Decoded(UTF8, _split(data.decode("utf-8"), controls=controls))
    except UnicodeDecodeError:
        pass
    utf8, other = _vote(data, controls=controls)
    if utf8 > other:
        return _by_line(data, UTF8)
    if not utf8:  # no line can be UTF-8: the usual 1C export, decoded at once
        try:
            return Decoded(CP1251, _split(data.decode("cp1251"), controls=controls))
        except UnicodeDecodeError:
            pass
    return _by_line(data, CP1251)


def _vote(data: bytes, *, controls: bool) -> tuple[int, int]:
    """How many lines with non-ASCII text are valid UTF-8, and how many are Windows-1251.

    Windows-1251 Cyrillic is hardly ever valid UTF-8 for a whole line, so a sound file's
    lines need no closer look; they are cut roughly here (str.splitlines also cuts at U+2028
    and the like), which a count can afford.

    `controls`: the file holds control bytes, so binary data may be among its lines, and
    only lines that read as text have a say: a line with control bytes has none, and a line
    votes Windows-1251 only with a Cyrillic word in it. Binary data appended to a UTF-8
    export does not make it Windows-1251.
    """
    utf8 = other = 0
    if not controls:
        for line in data.decode("utf-8", errors="replace").splitlines():
            if line.isascii():
                continue
            if "\ufffd" in line:
                other += 1
            else:
                utf8 += 1
        return utf8, other
    for raw in data.splitlines():
        if raw.isascii() or _has_control(raw):
            continue
        if _utf8_or_none(raw) is not None:
            utf8 += 1
        elif _CYRILLIC_WORD.search(raw) and b"\x98" not in raw:  # 0x98 is not Windows-1251
            other += 1
    return utf8, other


def _by_line(data: bytes, encoding: Encoding) -> Decoded:
    """Decode line by line in `encoding` (UTF-8 or Windows-1251), marking the lines not in it."""
    lines: list[str] = []
    damaged: dict[int, str] = {}
    utf8 = encoding.codec == "utf-8"
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        as_utf8 = _utf8_or_none(raw) if utf8 or not raw.isascii() else None
        if utf8:
            if as_utf8 is None:  # shown as Windows-1251 reads it, the usual other encoding
                as_utf8 = raw.decode("cp1251", errors="replace")
                damaged[number] = "not valid UTF-8 like the rest of the file (Windows-1251?)"
            lines.append(as_utf8)
        elif as_utf8 is not None:  # read as Windows-1251 it would be mojibake ("РџС‘С‚СЂ")
            lines.append(as_utf8)
            damaged[number] = "UTF-8, not Windows-1251 like the rest of the file"
        else:
            try:
                lines.append(raw.decode("cp1251"))
            except UnicodeDecodeError:  # byte 0x98 means nothing in Windows-1251
                lines.append(raw.decode("cp1251", errors="replace"))
                damaged[number] = "not valid Windows-1251 like the rest of the file"
    return Decoded(encoding, lines, damaged)


def _utf16(data: bytes, encoding: Encoding) -> Decoded:
    try:
        return Decoded(encoding, _split(data.decode(encoding.codec), controls=True))
    except UnicodeDecodeError:
        pass
    # An odd last byte or a lone surrogate: the line holding it is damaged.
    lines = _split(data.decode(encoding.codec, errors="replace"), controls=True)
    damaged = {n: "not valid UTF-16" for n, line in enumerate(lines, start=1) if "\ufffd" in line}
    return Decoded(encoding, lines, damaged)


def _utf8_or_none(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _has_control(data: bytes) -> bool:
    return bool(data.translate(None, _NOT_CONTROL))


def _split(text: str, *, controls: bool) -> list[str]:
    """Lines cut at "\\r\\n", "\\n" or "\\r" alone, and nowhere else.

    `controls`: the text may hold control characters, where str.splitlines would cut too.
    """
    if controls or any(end in text for end in _OTHER_LINE_ENDS):
        return list(io.StringIO(text, newline=""))  # exact, and three times slower
    return text.splitlines(keepends=True)
