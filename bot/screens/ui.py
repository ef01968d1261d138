"""The building blocks of a screen: text in the HTML subset both messengers read, inline
buttons that carry callback data or open a link, and the main menu's keys."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class MenuKey(StrEnum):
    """The main menu's buttons, in the order they show."""

    BALANCE = "balance"
    CARD = "card"
    CARS = "cars"
    BOOK = "book"
    SETTINGS = "settings"
    HELP = "help"


@dataclass(frozen=True, slots=True)
class Button:
    text: str
    data: str | None = None
    """Callback data, packed by a factory of bot/callbacks.py (at most 64 bytes)."""
    url: str | None = None


Rows = Sequence[Sequence[Button]]


@dataclass(frozen=True, slots=True)
class Screen:
    """One message: `text` is HTML (escape what came from people with `esc`)."""

    text: str
    buttons: Rows = ()
    menu: bool = False
    """Show the main menu keyboard under the message (replacing any other)."""
    ask_contact: str | None = None
    """Instead of the menu, one keyboard button that shares the phone, with this label."""
    remove_keyboard: bool = False


def esc(text: str | None) -> str:
    """Text people wrote (names, comments, car models), safe inside a screen's HTML."""
    return html.escape(text or "", quote=False)


def grid(buttons: Sequence[Button], per_row: int) -> list[list[Button]]:
    return [list(buttons[i : i + per_row]) for i in range(0, len(buttons), per_row)]
