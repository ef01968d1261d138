"""Tiers by spend over a rolling year, and discount cards with their lifecycle."""

from crm.cards.cards import (
    LOST,
    PRODUCED,
    REPLACED,
    STATES,
    WITHDRAWN,
    CardEventInfo,
    CardInfo,
    active_card,
    card_number,
    change_state,
    find_card,
    issue,
    produce,
    replace,
)
from crm.cards.tiers import ISSUED, Standing, Tier, TierLadder, standing, year_window

__all__ = [
    "ISSUED",
    "LOST",
    "PRODUCED",
    "REPLACED",
    "STATES",
    "WITHDRAWN",
    "CardEventInfo",
    "CardInfo",
    "Standing",
    "Tier",
    "TierLadder",
    "active_card",
    "card_number",
    "change_state",
    "find_card",
    "issue",
    "produce",
    "replace",
    "standing",
    "year_window",
]
