"""The bonus ledger, discount cards and referrals.

The ledger is append-only. A movement is one event on a client's account (an accrual, a
redemption, an expiry...) with its signed total. A credit opens a lot, which is what
expires; every movement is split into postings against lots, so a lot's remainder is the
sum of its postings and a balance is the sum of the postings on lots still alive. No
balance is stored anywhere, so none can drift from the ledger.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base
from storage.types import MONEY, UTCDateTime


class BonusMovement(Base):
    """One event on a client's bonus account, with its signed total.

    `external_ref` makes a movement idempotent: the dealer's system (or a job) names it,
    and the same reference never moves bonuses twice. `work_order` ties a redemption to the
    bill it paid; `bill` is that bill's amount. `actor` and `reason` record who adjusted
    an account by hand, and why.
    """

    __tablename__ = "bonus_movement"
    __table_args__ = (
        Index("ix_bonus_movement_client_id_id", "client_id", "id"),
        Index("ix_bonus_movement_work_order", "work_order"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    external_ref: Mapped[str | None] = mapped_column(String(160), unique=True)
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visit.id", ondelete="SET NULL"))
    work_order: Mapped[str | None] = mapped_column(String(64))
    bill: Mapped[Decimal | None] = mapped_column(MONEY)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BonusLot(Base):
    """Bonuses credited together, spent oldest first, usable until `expires_on` (exclusive).

    `expires_on` is a date in the company's time zone; None never expires.
    """

    __tablename__ = "bonus_lot"
    __table_args__ = (Index("ix_bonus_lot_client_id_expires_on", "client_id", "expires_on"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"))
    movement_id: Mapped[int] = mapped_column(ForeignKey("bonus_movement.id"), unique=True)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    earned_on: Mapped[date] = mapped_column(Date)
    expires_on: Mapped[date | None] = mapped_column(Date, index=True)


class BonusPosting(Base):
    """The part of a movement that fell on one lot: +amount when the lot is opened, -x for
    each redemption, adjustment or expiry that took from it."""

    __tablename__ = "bonus_posting"
    __table_args__ = (Index("ix_bonus_posting_client_id_lot_id", "client_id", "lot_id", "amount"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    movement_id: Mapped[int] = mapped_column(ForeignKey("bonus_movement.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("bonus_lot.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"))
    amount: Mapped[Decimal] = mapped_column(MONEY)


class DiscountCard(Base):
    """A plastic (or virtual) card: its number, where it is in its life, who holds it.

    `tier` pins a tier to the card (a gold card handed to a VIP); None means the holder's
    spend decides. `replaced_by_id` points from a replaced card to the card that took its
    place.
    """

    __tablename__ = "discount_card"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("client.id"), index=True)
    tier: Mapped[str | None] = mapped_column(String(64))
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("discount_card.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CardEvent(Base):
    """One step of a card's life: the state it entered, when, why, by whom, and its holder."""

    __tablename__ = "card_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("discount_card.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("client.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(128), default="")
    happened_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Referral(Base):
    """A client who came on another client's recommendation; both earn on the first paid visit."""

    __tablename__ = "referral"

    referred_id: Mapped[int] = mapped_column(ForeignKey("client.id"), primary_key=True)
    referrer_id: Mapped[int] = mapped_column(ForeignKey("client.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
