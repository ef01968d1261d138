"""/card: the discount card's number, shown as a QR code the desk can scan."""

from __future__ import annotations

import io

import segno

from bot.screens.menu import contact_centre
from bot.screens.ui import Screen, esc
from bot.texts import Texts
from crm.cards import CardInfo
from crm.context import CompanyInfo


def card_caption(t: Texts, card: CardInfo, tier: str) -> str:
    return "\n".join(
        [
            t._("💳 <b>Card {number}</b>").format(number=esc(card.number)),
            t._("Tier: «{tier}»").format(tier=esc(tier)),
            t._("Show this code at the desk to get your discount and bonuses."),
        ]
    )


def no_card(t: Texts, company: CompanyInfo) -> Screen:
    lines = [
        t._("You have no discount card yet."),
        t._(
            "Ask for one at the desk on your next visit: it is free, and bonuses are yours already."
        ),
        "",
        *contact_centre(t, company),
    ]
    return Screen("\n".join(lines))


def card_qr_png(number: str) -> bytes:
    """The card number as a QR code, PNG, large enough to scan from a phone screen."""
    out = io.BytesIO()
    segno.make_qr(number, error="m").save(out, kind="png", scale=10, border=4)
    return out.getvalue()
