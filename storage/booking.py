"""Service bookings and the inbound contacts register.

A booking holds a stretch of a branch's time for one client's car and one service, and
moves requested -> confirmed -> arrived -> completed, or ends cancelled, declined or
no_show; each step keeps its time. Moving a booking to another time makes a new booking
that points at the old one (`rescheduled_from_id`), so the funnel counts one request.

An inbound contact is one call, walk-in or conversation of a client (or someone who is
not a client yet) with the dealer: its channel, purpose, where they heard of us, and what
came of it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base
from storage.types import UTCDateTime


class Booking(Base):
    __tablename__ = "booking"
    __table_args__ = (
        Index("ix_booking_branch_starts", "branch_id", "starts_at"),
        Index("ix_booking_client_starts", "client_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"))
    car_id: Mapped[int | None] = mapped_column(ForeignKey("car.id", ondelete="SET NULL"))
    branch_id: Mapped[int] = mapped_column(ForeignKey("branch.id"))
    service: Mapped[str] = mapped_column(String(32))
    """The `[[service]]` code."""
    service_name: Mapped[str] = mapped_column(String(128))
    """The service's name when booked: the config may rename or drop it later."""
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    comment: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    """bot, staff, api, mini_app, max."""
    state: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    arrived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    declined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    no_show_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rescheduled_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("booking.id", ondelete="SET NULL"), unique=True
    )
    visit_id: Mapped[int | None] = mapped_column(
        ForeignKey("visit.id", ondelete="SET NULL"), index=True
    )
    """The work order that completed the booking."""
    external_ref: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The dealer's system's reference: posting it again answers the same booking."""
    actor: Mapped[str | None] = mapped_column(String(128))
    """Who took the last step: a staff member's name, "client", "api"."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InboundContact(Base):
    __tablename__ = "inbound_contact"
    __table_args__ = (Index("ix_inbound_contact_happened", "happened_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    happened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    channel: Mapped[str] = mapped_column(String(16))
    """call, walk_in, bot, website, api."""
    purpose: Mapped[str] = mapped_column(String(16))
    """service, repair_question, sales, complaint, other."""
    source: Mapped[str | None] = mapped_column(String(64))
    """How they heard of us: one of `[contacts] sources`."""
    outcome: Mapped[str] = mapped_column(String(16))
    """booked, not_booked, information."""
    client_id: Mapped[int | None] = mapped_column(
        ForeignKey("client.id", ondelete="SET NULL"), index=True
    )
    phone: Mapped[str | None] = mapped_column(String(32))
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("booking.id", ondelete="SET NULL"))
    staff: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    external_ref: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
