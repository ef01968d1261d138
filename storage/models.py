"""The core tables: branches, clients, their cars, visits and odometer readings.

Later features (outbox, bonuses, bookings, surveys, staff) add their own modules and
migrations; nothing here assumes they are absent.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.types import MONEY, UTCDateTime

# Explicit constraint names: Alembic's batch mode on SQLite and PostgreSQL need the same names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Branch(Base):
    """A service centre of the dealer group; visits, bookings, staff and campaigns belong to one."""

    __tablename__ = "branch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BranchDepartment(Base):
    """A department name as the dealer's system writes it, mapped to a branch.

    `key` is the name case-folded with white space collapsed, so "Сервис  север" finds
    "Сервис Север".
    """

    __tablename__ = "branch_department"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    branch_id: Mapped[int] = mapped_column(ForeignKey("branch.id", ondelete="CASCADE"), index=True)


class Client(Base):
    __tablename__ = "client"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    last_name: Mapped[str | None] = mapped_column(String(128))
    first_name: Mapped[str | None] = mapped_column(String(128))
    middle_name: Mapped[str | None] = mapped_column(String(128))
    gender: Mapped[str | None] = mapped_column(String(8))
    birthday: Mapped[date | None] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(String(16), unique=True)
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    timezone: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    """The language the client chose in a bot ("ru", "en"); None: their messenger's, else
    the company's."""
    source: Mapped[str | None] = mapped_column(String(32))
    """Where the client first came from when we know: "bot" for one who wrote to the bot."""
    referral_code: Mapped[str | None] = mapped_column(String(16), unique=True)
    """The short code the client shares with friends (`t.me/<bot>?start=ref_<code>`); made
    the first time it is asked for."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    cars: Mapped[list[Car]] = relationship(back_populates="owner")
    tags: Mapped[list[ClientTag]] = relationship(cascade="all, delete-orphan")
    consents: Mapped[list[ClientConsent]] = relationship(cascade="all, delete-orphan")

    @property
    def full_name(self) -> str:
        parts = (self.last_name, self.first_name, self.middle_name)
        return " ".join(p for p in parts if p)


class ClientAlias(Base):
    """Another external id of a client: the id of a duplicate that was merged into it.

    References in later imports (a car's client_id) resolve through aliases too.
    """

    __tablename__ = "client_alias"

    external_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ClientTag(Base):
    __tablename__ = "client_tag"

    client_id: Mapped[int] = mapped_column(
        ForeignKey("client.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class ClientConsent(Base):
    """The client's current word on one channel for one purpose, with when and how it was given.

    `purpose` is "service" or "advertising"; `channel` is a channel name ("telegram", "sms",
    "email", and any channel added later). A missing row means: service messages allowed,
    advertising not.
    """

    __tablename__ = "client_consent"

    client_id: Mapped[int] = mapped_column(
        ForeignKey("client.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(32))


class ConsentEvent(Base):
    """Every change of a client's word, with where it came from: the history behind
    `client_consent`, and how a campaign counts the opt-outs it caused."""

    __tablename__ = "consent_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(32))
    campaign_id: Mapped[int | None] = mapped_column(Integer, index=True)
    """The campaign whose message carried the link or was answered; no foreign key, so
    this module stays free of the outbox's tables."""
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class AppSecret(Base):
    """Secrets the installation makes for itself on first use (the key that signs
    unsubscribe links), shared by every process through the database."""

    __tablename__ = "app_secret"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Car(Base):
    __tablename__ = "car"
    __table_args__ = (Index("ix_car_vin", "vin"), Index("ix_car_plate", "plate"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    client_id: Mapped[int | None] = mapped_column(
        ForeignKey("client.id", ondelete="SET NULL"), index=True
    )
    vin: Mapped[str | None] = mapped_column(String(17))
    plate: Mapped[str | None] = mapped_column(String(16))
    make: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(64))
    year: Mapped[int | None] = mapped_column(SmallInteger)
    service_interval_km: Mapped[int | None] = mapped_column(Integer)
    service_interval_months: Mapped[int | None] = mapped_column(SmallInteger)
    # Sold by this dealer (a flag from the dealer's system), when no sale visit records it.
    sold_here: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    owner: Mapped[Client | None] = relationship(back_populates="cars")


class Visit(Base):
    """A work order: the client came to a branch, maybe with a car, and paid `amount`."""

    __tablename__ = "visit"
    __table_args__ = (
        Index("ix_visit_client_id_visited_on", "client_id", "visited_on"),
        Index("ix_visit_car_id_visited_on", "car_id", "visited_on"),
        # Covering: ABC, XYZ and reports over a period read these columns from the index.
        Index("ix_visit_visited_on_cover", "visited_on", "client_id", "amount", "margin"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id", ondelete="CASCADE"))
    car_id: Mapped[int | None] = mapped_column(ForeignKey("car.id", ondelete="SET NULL"))
    branch_id: Mapped[int] = mapped_column(ForeignKey("branch.id"), index=True)
    department: Mapped[str | None] = mapped_column(String(128))
    visited_on: Mapped[date] = mapped_column(Date)
    odometer: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    margin: Mapped[Decimal | None] = mapped_column(MONEY)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SavedSegment(Base):
    """A segment staff saved under a name: a segment or an expression, with its parameters."""

    __tablename__ = "saved_segment"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    definition: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OdometerReading(Base):
    """What the odometer showed on a day; a visit's reading is linked to it (one per visit)."""

    __tablename__ = "odometer_reading"
    __table_args__ = (Index("ix_odometer_reading_car_id_read_on", "car_id", "read_on"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    car_id: Mapped[int] = mapped_column(ForeignKey("car.id", ondelete="CASCADE"))
    read_on: Mapped[date] = mapped_column(Date)
    km: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(8))
    visit_id: Mapped[int | None] = mapped_column(
        ForeignKey("visit.id", ondelete="CASCADE"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
