"""Cell values as 1C and spreadsheets write them: "1 618 406,43", "12.03.2021 0:00:00", "да".

Each parser takes the cell text and returns the value, None for an empty cell, or raises
`CellError` whose message is fit for the rejects file.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from storage.types import CENT


class CellError(ValueError):
    """A cell that cannot be read; the message names the problem, not the column."""


# Spaces of every kind that 1C and Excel put between thousands.
_GROUPING = re.compile(r"[\s\u00a0\u202f\u2009']")
_CURRENCY = re.compile(r"(руб\.?|р\.|₽|rub)$", re.IGNORECASE)
_DMY = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4}|\d{2})$")
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_TIME_TAIL = re.compile(r"[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")

_TRUE = {"1", "да", "д", "yes", "y", "true", "t", "+", "истина", "согласен", "есть"}
_FALSE = {"0", "нет", "н", "no", "n", "false", "f", "-", "ложь", "не согласен", "отказ"}


def parse_date(text: str, *, today: date | None = None) -> date | None:
    """DD.MM.YYYY (also with / or -), ISO YYYY-MM-DD, either with a time tail
    ("12.03.2021 0:00:00", "2021-03-12T00:00:00") that is dropped.

    A two-digit year is the latest such year not after `today` ("12.03.65" is 1965, "01.02.24"
    is 2024); without `today` it is refused, since no century can be assumed.
    """
    value = _TIME_TAIL.sub("", text.strip())
    if not value:
        return None
    if match := _ISO.match(value):
        year, month, day = (int(part) for part in match.groups())
    elif match := _DMY.match(value):
        day, month, year = (int(part) for part in match.groups())
        if len(match.group(3)) == 2:
            year = _full_year(year, today, text)
    else:
        raise CellError(f"not a date {text.strip()!r}: use DD.MM.YYYY or YYYY-MM-DD")
    try:
        return date(year, month, day)
    except ValueError:
        raise CellError(f"no such date {text.strip()!r}") from None


def _full_year(short: int, today: date | None, text: str) -> int:
    if today is None:
        raise CellError(f"two-digit year in {text.strip()!r}: write the year in full")
    year = today.year - today.year % 100 + short
    return year if year <= today.year else year - 100


def parse_money(text: str) -> Decimal | None:
    """A sum with decimal comma or point and any thousands grouping, rounded half up to kopecks
    as accounting does.

    "1 618 406,43", "1.618.406,43", "1,618,406.43", "980,5", "12 500 руб." all work. A lone
    separator is the decimal mark ("1,500" is one and a half), as in Russian notation. A
    separator that repeats, or precedes the other one, must group digits by three: "12.03.2021"
    is a date, not twelve million roubles, and is refused.
    """
    value = _CURRENCY.sub("", _GROUPING.sub("", text.strip())).strip()
    if not value:
        return None
    negative = value.startswith("-") or (value.startswith("(") and value.endswith(")"))
    whole, fraction = _split_number(value.strip("-()"), text, "a sum of money")
    amount = Decimal(f"{whole or 0}.{fraction or 0}").quantize(CENT, rounding=ROUND_HALF_UP)
    if amount >= Decimal("1e12"):
        raise CellError(f"sum too large {text.strip()!r}")
    return -amount if negative else amount


def parse_int(text: str, *, low: int, high: int) -> int | None:
    """A whole number within [low, high] ("125 000", "125,000", "125000,00" are all 125000).

    In a whole-number column a separator before exactly three digits groups thousands, and a
    zero tail ("125000,00") is a spreadsheet's number format; anything else is refused.
    """
    value = _GROUPING.sub("", text.strip())
    if not value:
        return None
    negative = value.startswith("-")
    value = re.sub(r"[.,]0{1,2}$", "", value.lstrip("-"))
    whole, fraction = _split_number(value, text, "a whole number", single_groups=True)
    if fraction or not whole:
        raise CellError(f"not a whole number {text.strip()!r}")
    number = -int(whole) if negative else int(whole)
    if not low <= number <= high:
        raise CellError(f"{number} is out of range {low}..{high}")
    return number


def _split_number(
    value: str, text: str, what: str, *, single_groups: bool = False
) -> tuple[str, str]:
    """Digits before and after the decimal mark of "1.618.406,43"-like text, grouping removed.

    `single_groups`: a lone separator before exactly three digits groups them (whole numbers).
    """
    marks = [char for char in value if char in ",."]
    whole, fraction = value, ""
    if len(set(marks)) == 2:
        decimal_mark = marks[-1]
        if marks.count(decimal_mark) > 1:
            raise CellError(f"not {what} {text.strip()!r}")
        whole, fraction = value.rsplit(decimal_mark, 1)
        whole = _ungroup(whole, marks[0], text, what)
    elif len(marks) > 1 or (single_groups and marks and re.search(r"[.,]\d{3}$", value)):
        whole = _ungroup(value, marks[0], text, what)
    elif marks:
        whole, fraction = value.split(marks[0])
    if not (whole or fraction) or not (whole + fraction).isdigit():
        raise CellError(f"not {what} {text.strip()!r}")
    return whole, fraction


def _ungroup(value: str, separator: str, text: str, what: str) -> str:
    groups = value.split(separator)
    if not (1 <= len(groups[0]) <= 3 and all(len(group) == 3 for group in groups[1:])):
        raise CellError(f"not {what} {text.strip()!r}")
    return "".join(groups)


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
