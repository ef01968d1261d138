"""Template filters a Russian marketer needs: plural forms, dates, times, money, numbers.

Each reads the message's `locale` and `timezone` from the template context, so one template
speaks Russian to a Moscow client and shows a Vladivostok client's booking in Vladivostok
time. Each refuses a value of the wrong kind before Babel sees it: Babel would turn a list
into text to read it as a number, and a template can make a list of any length (the
sandbox wraps Jinja's own filters for that, and adds these as they are).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_time
from babel.numbers import format_currency, format_decimal
from jinja2 import pass_context
from jinja2.runtime import Context

# CLDR's plural categories in their canonical order; a locale uses some of them.
_CATEGORIES = ("zero", "one", "two", "few", "many", "other")


@cache
def _locale(code: str) -> Locale:
    return Locale.parse(code)


def _locale_of(ctx: Context) -> Locale:
    return _locale(str(ctx.get("locale") or "ru"))


def _expect(value: Any, kinds: type | tuple[type, ...], filter_name: str, what: str) -> None:
    if not isinstance(value, kinds):
        raise TypeError(f"{filter_name} expects {what}, not {type(value).__name__}")


def _local(ctx: Context, value: datetime) -> datetime:
    zone = ctx.get("timezone")
    return value.astimezone(ZoneInfo(str(zone))) if zone and value.tzinfo else value


@pass_context
def plural(ctx: Context, n: int | Decimal | float, *forms: str, number: bool = True) -> str:
    """`5|plural("бонус", "бонуса", "бонусов")` -> "5 бонусов".

    Forms follow the locale's CLDR categories in order: Russian one/few/many ("1 бонус",
    "2 бонуса", "5 бонусов"), English one/other. A fraction takes Russian's "few" form
    ("1,5 бонуса"), as Russian grammar has it.
    """
    if not forms:
        raise ValueError("plural needs the word forms, e.g. plural('бонус', 'бонуса', 'бонусов')")
    if isinstance(n, Decimal) and n == n.to_integral_value():
        n = int(n)  # money columns read back as 350.00, which CLDR would call a fraction
    locale = _locale_of(ctx)
    tags = [tag for tag in _CATEGORIES if tag in locale.plural_form.tags or tag == "other"]
    by_tag = dict(zip(tags, forms, strict=False))
    word = by_tag.get(locale.plural_form(abs(n)), forms[1] if len(forms) > 1 else forms[0])  # type: ignore[arg-type]
    return f"{format_decimal(n, locale=locale)}\u00a0{word}" if number else word


@pass_context
def date_filter(ctx: Context, value: date | datetime | None, style: str = "d MMMM") -> str:
    """`d|date` -> "12 февраля"; "long" -> "12 февраля 2027 г."; or any CLDR pattern.

    A datetime is shown as its date in the message's time zone, which may not be UTC's.
    """
    if value is None:
        return ""
    _expect(value, date, "date", "a date")
    if isinstance(value, datetime):
        value = _local(ctx, value)
    return format_date(value, style, locale=_locale_of(ctx))


@pass_context
def time_filter(ctx: Context, value: datetime | time | None, pattern: str = "HH:mm") -> str:
    """`dt|time` -> "10:30", in the client's time zone."""
    if value is None:
        return ""
    _expect(value, (datetime, time), "time", "a time")
    if isinstance(value, datetime):
        value = _local(ctx, value).timetz()
    return format_time(value, pattern, locale=_locale_of(ctx))


@pass_context
def money(ctx: Context, amount: Decimal | int | None, cents: bool = True) -> str:
    """`amount|money` -> "1 500,00 ₽"; `money(cents=False)` -> "1 500 ₽"."""
    if amount is None:
        return ""
    _expect(amount, (int, float, Decimal), "money", "a number")
    currency = str(ctx.get("currency") or "RUB")
    return money_text(amount, str(ctx.get("locale") or "ru"), currency=currency, cents=cents)


def money_text(
    amount: Decimal | int | float, locale: str, *, currency: str = "RUB", cents: bool = True
) -> str:
    """Money as the `money` filter writes it, for code that is not a template (the bots)."""
    where = _locale(locale)
    if cents:
        return format_currency(amount, currency, locale=where)
    return format_currency(
        amount, currency, format="#,##0\u00a0¤", currency_digits=False, locale=where
    )


def date_text(value: date, locale: str, style: str = "d MMMM") -> str:
    """A date as the `date` filter writes it, for code that is not a template."""
    return format_date(value, style, locale=_locale(locale))


def number_text(value: int | Decimal | float, locale: str) -> str:
    """A number as the `number` filter writes it ("15 000")."""
    return format_decimal(value, locale=_locale(locale))


@pass_context
def number(ctx: Context, value: int | Decimal | float | None) -> str:
    """`15000|number` -> "15 000"."""
    if value is None:
        return ""
    _expect(value, (int, float, Decimal), "number", "a number")
    return format_decimal(value, locale=_locale_of(ctx))


FILTERS: Mapping[str, Callable[..., Any]] = {
    "plural": plural,
    "date": date_filter,
    "time": time_filter,
    "money": money,
    "number": number,
}
