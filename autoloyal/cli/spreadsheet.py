"""CSV for people: every `--format csv` the command line prints goes through `CsvWriter`.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula (and a leading tab
or carriage return can hide one), so a client named `=HYPERLINK(...)` or `=cmd|' /C calc'!A0`
must not leave a segment export as it is.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_SIGNED_NUMBER = re.compile(r"[+-]\d+(?:[.,]\d+)?")


def safe_cell(value: Any) -> Any:
    """The cell as a spreadsheet should show it.

    Only text is neutralised (OWASP's rule: a `'` before a cell that starts with `=`, `+`, `-`,
    `@`, tab or carriage return), because text is what comes from clients, staff and imported
    files. A value we typed ourselves is written as it is: a negative amount (`Decimal("-150")`)
    or count is a number, not a formula, and so is text that is only a signed number, such as
    a phone in E.164 (`+79035254560`). None is an empty cell; dates are ISO `YYYY-MM-DD`.
    """
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str) and _may_run(value):
        return "'" + value
    return value


def _may_run(text: str) -> bool:
    return text.startswith(FORMULA_STARTS) and not _SIGNED_NUMBER.fullmatch(text)


class CsvWriter:
    """`csv.writer` with every cell passed through `safe_cell`; the header row too."""

    def __init__(self, stream: TextIO) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        self._writer.writerows([safe_cell(value) for value in row] for row in rows)
