"""What no cell may hold, whatever its column: a control character, text an earlier program
decoded wrongly, or more characters than any value we store."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# Far above any value we store (names and ids fit 128), and short enough that a cell parser
# (the phone matcher scans the whole text) never spends long on one cell.
CELL_MAX = 4096
# Control characters but tab (a space to the cell parsers, which fold whitespace), and the
# replacement character, the mark of bytes that some program could not decode.
_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ufffd]")
# The same but line breaks, which end every line of a file rather than sit in a cell.
_FORBIDDEN_IN_LINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


def cell_problem(cells: Mapping[str, str]) -> tuple[str, str] | None:
    """The first cell, in column order, that is longer than CELL_MAX or holds a control
    character (NUL, a line break...) or U+FFFD, and why; None when every cell is sound."""
    for column, text in cells.items():
        if len(text) > CELL_MAX:
            return column, f"cell too long: {len(text)} characters, at most {CELL_MAX}"
        if found := _FORBIDDEN.search(text):
            return column, _why(found.group())
    return None


def suspect_lines(lines: Sequence[str]) -> set[int]:
    """The numbers (from 1) of the lines where a cell may have a problem. A row within one
    line that is not among them has none: in a sound file no row needs a look of its own."""
    longest = max(map(len, lines), default=0)
    if longest <= CELL_MAX and _FORBIDDEN_IN_LINE.search("".join(lines)) is None:
        return set()
    return {
        number
        for number, line in enumerate(lines, start=1)
        if len(line) > CELL_MAX or _FORBIDDEN_IN_LINE.search(line)
    }


def _why(char: str) -> str:
    if char in "\r\n":
        return "a line break inside the cell: is a quote left open?"
    if char == "\ufffd":
        return "U+FFFD in the cell: the text was damaged by a wrong encoding before this export"
    return f"control character U+{ord(char):04X} in the cell: binary data?"
