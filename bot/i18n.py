"""The bots' texts in Russian and English: gettext catalogs read from the .po files.

The .po files under bot/locales are the only source: they are compiled in memory with Babel
when a bot starts (a few milliseconds), so a fresh clone runs without a compile step and a
stale .mo can never shadow an edited .po. aiogram's i18n loads compiled catalogs only;
`Catalogs` hands it the compiled ones.
"""

from __future__ import annotations

import gettext
from collections.abc import Iterable
from io import BytesIO
from pathlib import Path

from aiogram.utils.i18n import I18n
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "bot"
LOCALES = ("ru", "en")
"""The languages a client may choose, the company's default first."""


def compile_catalog(po_file: Path) -> gettext.GNUTranslations:
    """One .po file as the translations gettext reads from a .mo file."""
    with po_file.open("rb") as source:
        catalog = read_po(source, locale=po_file.parents[1].name)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


class Catalogs(I18n):
    """aiogram's I18n over catalogs compiled from the .po files at start."""

    def __init__(self, default_locale: str = "ru", path: Path = LOCALES_DIR) -> None:
        super().__init__(path=path, default_locale=default_locale, domain=DOMAIN)

    def find_locales(self) -> dict[str, gettext.GNUTranslations]:
        found = {}
        for folder in sorted(self.path.iterdir()):
            po_file = folder / "LC_MESSAGES" / f"{self.domain}.po"
            if po_file.is_file():
                found[folder.name] = compile_catalog(po_file)
        return found


def pick_locale(
    chosen: str | None, messenger: str | None, default: str, known: Iterable[str] = LOCALES
) -> str:
    """The client's choice, else their messenger's language ("en-US" counts as "en"), else
    the company's."""
    available = tuple(known)
    if chosen in available:
        return chosen
    if messenger:
        base = messenger.replace("_", "-").split("-")[0].lower()
        if base in available:
            return base
    return default if default in available else available[0]
