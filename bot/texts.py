"""What a screen writes with: one language's catalog, and numbers, money and dates in it.

Screens call `t._("...")` and `t.n_("...", "...", n)`; `tests/test_bot_texts.py` extracts
those calls with Babel and fails when a message lacks its Russian or English text.
"""

from __future__ import annotations

import gettext
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from gateway.formatting import date_text, money_text, number_text


@dataclass(frozen=True, slots=True)
class Texts:
    """One client's language: `locale` is "ru" or "en"."""

    locale: str
    catalog: gettext.NullTranslations

    def _(self, message: str) -> str:
        return self.catalog.gettext(message)

    def n_(self, singular: str, plural: str, n: int | Decimal) -> str:
        """The form for `n`; `{n}` in the text is the number as the language writes it."""
        count = int(n) if isinstance(n, Decimal) and n == n.to_integral_value() else n
        form = self.catalog.ngettext(singular, plural, int(count))
        return form.replace("{n}", number_text(count, self.locale))

    def money(self, amount: Decimal | int, *, cents: bool = False) -> str:
        return money_text(amount, self.locale, cents=cents)

    def date(self, day: date, style: str = "d MMMM") -> str:
        return date_text(day, self.locale, style)

    def number(self, value: int | Decimal | float) -> str:
        return number_text(value, self.locale)
