"""The bots' texts: every message the code asks for has its Russian and English text, and
the catalogs hold nothing the code no longer asks for."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot.i18n import LOCALES, LOCALES_DIR, Catalogs, pick_locale
from bot.texts import Texts

ROOT = Path(__file__).resolve().parents[1]
KEYWORDS = {"_": None, "n_": (1, 2)}


@functools.cache
def asked_for() -> frozenset[str | tuple[str, ...]]:
    found = extract_from_dir(
        ROOT / "bot", method_map=[("**.py", "python")], keywords=KEYWORDS, comment_tags=()
    )
    return frozenset(
        message if isinstance(message, str) else tuple(message) for _, _, message, _, _ in found
    )


def catalog(locale: str) -> dict[str | tuple[str, ...], str | tuple[str, ...]]:
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "bot.po").open("rb") as source:
        read = read_po(source, locale=locale)
    return {
        (m.id if isinstance(m.id, str) else tuple(m.id)): (
            m.string if isinstance(m.string, str) else tuple(m.string)
        )
        for m in read
        if m.id and not m.fuzzy
    }


def test_the_code_asks_for_texts() -> None:
    assert len(asked_for()) > 100


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_has_its_text(locale: str) -> None:
    texts = catalog(locale)
    missing = [m for m in asked_for() if not texts.get(m) or not all(texts[m])]
    assert not missing, f"{locale}: no text for {missing[:5]} ({len(missing)} in all)"


@pytest.mark.parametrize("locale", LOCALES)
def test_no_text_is_left_over(locale: str) -> None:
    stale = set(catalog(locale)) - asked_for()
    assert not stale, f"{locale}: texts no code asks for: {sorted(map(str, stale))[:5]}"


@pytest.mark.parametrize("locale", LOCALES)
def test_a_translation_keeps_the_placeholders(locale: str) -> None:
    import string

    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    wrong = [
        m
        for m, text in catalog(locale).items()
        if isinstance(m, str) and isinstance(text, str) and fields(m) != fields(text)
    ]
    assert not wrong, f"{locale}: placeholders differ in {wrong[:3]}"


def test_catalogs_compile_from_the_po_files_alone() -> None:
    catalogs = Catalogs("ru")
    assert set(catalogs.available_locales) == set(LOCALES)
    ru = Texts("ru", catalogs.locales["ru"])
    assert ru._("💰 Balance") == "💰 Баланс"
    assert not list(LOCALES_DIR.rglob("*.mo")), "no compiled catalog is kept: the .po is the source"


def test_money_and_dates_are_written_as_the_language_writes_them() -> None:
    from datetime import date
    from decimal import Decimal

    catalogs = Catalogs("ru")
    ru, en = (Texts(code, catalogs.locales[code]) for code in ("ru", "en"))
    assert ru.money(Decimal("12300")) == "12\u00a0300\u00a0₽"
    assert en.money(Decimal("12300")).startswith("RUB") or "12,300" in en.money(Decimal("12300"))
    assert ru.date(date(2026, 12, 31)) == "31 декабря"


@pytest.mark.parametrize(
    ("chosen", "messenger", "expected"),
    [
        ("en", "ru", "en"),  # the client's own choice wins
        (None, "en-US", "en"),  # else the messenger's language
        (None, "de", "ru"),  # a language we do not speak: the company's
        (None, None, "ru"),
        ("xx", "en", "en"),  # a stored choice no longer offered is ignored
    ],
)
def test_the_language_is_the_clients_then_the_messengers_then_the_companys(
    chosen: str | None, messenger: str | None, expected: str
) -> None:
    assert pick_locale(chosen, messenger, "ru") == expected


@pytest.mark.parametrize(
    ("days", "russian", "english"),
    [
        (1, "через 1 день", "in 1 day"),
        (3, "через 3 дня", "in 3 days"),
        (5, "через 5 дней", "in 5 days"),
        (11, "через 11 дней", "in 11 days"),
        (21, "через 21 день", "in 21 days"),
        (1000, "через 1\u00a0000 дней", "in 1,000 days"),
    ],
)
def test_plurals_follow_each_languages_rules(days: int, russian: str, english: str) -> None:
    catalogs = Catalogs("ru")
    ru, en = (Texts(code, catalogs.locales[code]) for code in ("ru", "en"))
    assert ru.n_("in {n} day", "in {n} days", days) == russian
    assert en.n_("in {n} day", "in {n} days", days) == english
