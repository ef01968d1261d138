"""Cell values as 1C and spreadsheets write them: "1 618 406,43", "12.03.2021 0:00:00", "да".

Each parser takes the cell text and returns the value, None for an empty cell, or raises
`CellError` whose message is fit for the rejects file.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from storage.types import CENT


class CellError(ValueError):
    """A cell that cannot be read; the message names the problem, not the column."""


# Spaces of every kind that 1C and Excel put between thousands.
_GROUPING = re.compile(r"[\s\u00a0\u202f\u2009']")
_CURRENCY = re.compile(r"(руб\.?|р\.|₽|rub)$", re.IGNORECASE)
_DMY = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4}|\d{2})$")
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_TIME_TAIL = re.compile(r"[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")

# Two-digit years as POSIX strptime reads them: 69..99 are 1969..1999, 00..68 are 2000s.
_CENTURY_PIVOT = 69

_TRUE = {"1", "да", "д", "yes", "y", "true", "t", "+", "истина", "согласен", "есть"}
_FALSE = {"0", "нет", "н", "no", "n", "false", "f", "-", "ложь", "не согласен", "отказ"}


def parse_date(text: str) -> date | None:
    """DD.MM.YYYY (also with / or -, and two-digit years), ISO YYYY-MM-DD, either with a time
    tail ("12.03.2021 0:00:00", "2021-03-12T00:00:00") that is dropped."""
    value = _TIME_TAIL.sub("", text.strip())
    if not value:
        return None
    try:
        if match := _ISO.match(value):
            year, month, day = (int(part) for part in match.groups())
            return date(year, month, day)
        if match := _DMY.match(value):
            day, month, year = (int(part) for part in match.groups())
            if len(match.group(3)) == 2:
                year += 2000 if year < _CENTURY_PIVOT else 1900
            return date(year, month, day)
    except ValueError:
        raise CellError(f"no such date {text.strip()!r}") from None
    raise CellError(f"not a date {text.strip()!r}: use DD.MM.YYYY or YYYY-MM-DD")


def parse_money(text: str) -> Decimal | None:
    """A sum with decimal comma or point and any thousands grouping, rounded to kopecks.

    "1 618 406,43", "1.618.406,43", "1,618,406.43", "980,5", "12 500 руб." all work. A lone
    separator is always the decimal mark ("1,500" is one and a half), as in Russian
    notation; grouping is by spaces, or by a separator that repeats or precedes the other.
    """
    value = _CURRENCY.sub("", _GROUPING.sub("", text.strip())).strip()
    if not value:
        return None
    negative = value.startswith("-") or (value.startswith("(") and value.endswith(")"))
    value = value.strip("-()")
    if "," in value and "." in value:
        decimal_mark = "," if value.rfind(",") > value.rfind(".") else "."
        grouping = "." if decimal_mark == "," else ","
        value = value.replace(grouping, "").replace(decimal_mark, ".")
    elif value.count(",") > 1 or value.count(".") > 1:
        value = value.replace(",", "").replace(".", "")
    else:
        value = value.replace(",", ".")
    if not re.fullmatch(r"\d+(\.\d+)?|\.\d+", value):
        raise CellError(f"not a sum of money {text.strip()!r}")
    try:
        amount = Decimal(value).quantize(CENT)
    except InvalidOperation:
        raise CellError(f"not a sum of money {text.strip()!r}") from None
    if amount >= Decimal("1e12"):
        raise CellError(f"sum too large {text.strip()!r}")
    return -amount if negative else amount


def parse_int(text: str, *, low: int, high: int) -> int | None:
    """A whole number within [low, high], with thousands grouping allowed ("125 000")."""
    value = _GROUPING.sub("", text.strip())
    if not value:
        return None
    value = re.sub(r"[.,]0+$", "", value)  # "125000,00" from a spreadsheet number format
    if not re.fullmatch(r"-?\d+", value):
        raise CellError(f"not a whole number {text.strip()!r}")
    number = int(value)
    if not low <= number <= high:
        raise CellError(f"{number} is out of range {low}..{high}")
    return number


def parse_bool(text: str) -> bool | None:
    """да/нет, yes/no, 1/0, true/false (any case); empty is "not said" (None)."""
    value = text.strip().casefold()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CellError(f"not yes or no {text.strip()!r}: use да or нет")


def parse_text(text: str, *, max_length: int) -> str | None:
    value = " ".join(text.split())
    if not value:
        return None
    if len(value) > max_length:
        raise CellError(f"longer than {max_length} characters")
    return value
