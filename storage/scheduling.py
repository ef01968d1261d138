"""What the scheduler keeps: a row per job run, and nightly class snapshots.

`job_run` is what makes a job run once: one row per job and slot (the local day of a
daily job, the UTC start of an interval job's slot), unique, with its state, counts and
error. `class_snapshot` keeps each client's ABC and XYZ class as of a night, so that class
history and BCG moves are read, not recomputed.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base
from storage.outbox import JSON_DOCUMENT
from storage.types import MONEY, UTCDateTime


class JobRun(Base):
    __tablename__ = "job_run"
    __table_args__ = (UniqueConstraint("job", "slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    slot: Mapped[str] = mapped_column(String(32))
    """"2026-11-24" for a daily job; "2026-11-24T06:15Z" for one that runs every N minutes."""
    state: Mapped[str] = mapped_column(String(16))
    """running, done, failed."""
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    """A running run older than its lease is taken over (its process died)."""
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    host: Mapped[str] = mapped_column(String(64))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON_DOCUMENT, default=dict)
    error: Mapped[str | None] = mapped_column(Text)


class ClassSnapshot(Base):
    __tablename__ = "class_snapshot"

    taken_on: Mapped[date] = mapped_column(Date, primary_key=True)
    client_id: Mapped[int] = mapped_column(
        ForeignKey("client.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    abc: Mapped[str | None] = mapped_column(String(1))
    xyz: Mapped[str | None] = mapped_column(String(1))
    revenue: Mapped[Decimal | None] = mapped_column(MONEY)
    """The ABC measure over the analysis window, as of `taken_on`."""
