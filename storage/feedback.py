"""What clients tell us about a visit: survey answers, and the complaints low answers open.

One answer per visit, whatever the number of taps or channels; a complaint is one per
visit too, and moves open -> taken -> resolved with who and when.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base
from storage.types import UTCDateTime


class SurveyAnswer(Base):
    """A client's rating of one visit: CSAT 1-5, then NPS 0-10, then an optional comment."""

    __tablename__ = "survey_answer"

    visit_id: Mapped[int] = mapped_column(
        ForeignKey("visit.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"), index=True)
    csat: Mapped[int | None] = mapped_column(SmallInteger)
    nps: Mapped[int | None] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    step: Mapped[str] = mapped_column(String(16))
    """What the client answers next: "nps", "comment", or "done"."""
    channel: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Complaint(Base):
    """A low rating staff must answer: opened by the survey, taken and resolved by staff."""

    __tablename__ = "complaint"
    __table_args__ = (Index("ix_complaint_state_opened_at", "state", "opened_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"), index=True)
    branch_id: Mapped[int | None] = mapped_column(ForeignKey("branch.id"), index=True)
    csat: Mapped[int | None] = mapped_column(SmallInteger)
    nps: Mapped[int | None] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    taken_by: Mapped[str | None] = mapped_column(String(128))
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(Text)


class TelegramFile(Base):
    """A file Telegram already holds (a card's QR code), by what it shows: sent again by its
    file_id instead of uploading it anew."""

    __tablename__ = "telegram_file"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
