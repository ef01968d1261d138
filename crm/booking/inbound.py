"""The inbound contacts register: every call, walk-in or conversation about the service.

Seed 001's register, kept by the program: a contact has a channel (call, walk_in, bot,
website, api), a purpose (service, repair_question, sales, complaint, other), where the
person heard of us (one of `[contacts] sources`), an optional campaign, the member of
staff who took it, the client (found by phone, or created as a potential client), and
what came of it (booked, not_booked, information). The funnel counts them: "К-т записи =
записавшиеся / позвонившие на сервис".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from crm.clock import Moment
from crm.contacts import ContactError, normalize_phone
from crm.errors import Conflict, DomainError, NotFound
from crm.names import NAME_PART_MAX, split_full_name
from storage.booking import Booking, InboundContact
from storage.bulk import table_of
from storage.models import Branch, Client
from storage.outbox import Campaign

CALL, WALK_IN, BOT, WEBSITE, API = "call", "walk_in", "bot", "website", "api"
CHANNELS = (CALL, WALK_IN, BOT, WEBSITE, API)
SERVICE, REPAIR_QUESTION, SALES, COMPLAINT, OTHER = (
    "service",
    "repair_question",
    "sales",
    "complaint",
    "other",
)
PURPOSES = (SERVICE, REPAIR_QUESTION, SALES, COMPLAINT, OTHER)
BOOKED, NOT_BOOKED, INFORMATION = "booked", "not_booked", "information"
OUTCOMES = (BOOKED, NOT_BOOKED, INFORMATION)
CLIENT_SOURCE = "contact"
"""`client.source` of a potential client the register created."""
NOTE_MAX = 2000
FUTURE_SLACK = timedelta(minutes=5)
"""A contact's time may run this far ahead of ours (the other system's clock)."""


@dataclass(frozen=True, slots=True)
class ContactInput:
    channel: str
    purpose: str
    outcome: str
    phone: str | None = None
    client_id: int | None = None
    name: str | None = None
    """For a potential client made from the phone: "Фамилия Имя Отчество"."""
    source: str | None = None
    campaign_id: int | None = None
    staff: str | None = None
    branch: str | None = None
    booking_id: int | None = None
    note: str | None = None
    external_ref: str | None = None
    happened_at: datetime | None = None
    """When it happened (with its offset); None: now."""


@dataclass(frozen=True, slots=True)
class ContactView:
    id: int
    happened_at: datetime
    channel: str
    purpose: str
    outcome: str
    source: str | None
    client_id: int | None
    phone: str | None
    branch: str | None
    campaign_id: int | None
    booking_id: int | None
    staff: str | None
    note: str | None
    external_ref: str | None
    created: bool = True
    """False: the `external_ref` was recorded before; this is that contact."""


async def record_contact(
    session: AsyncSession,
    data: ContactInput,
    moment: Moment,
    *,
    sources: Sequence[str],
    region: str = "RU",
) -> ContactView:
    """Record one contact in the caller's transaction. A phone with no client behind it
    makes a potential client; an `external_ref` recorded before answers that contact."""
    _one_of(data.channel, CHANNELS, "channel")
    _one_of(data.purpose, PURPOSES, "purpose")
    _one_of(data.outcome, OUTCOMES, "outcome")
    source = None if data.source is None else " ".join(data.source.split()) or None
    if source is not None and source not in sources:
        raise DomainError(
            f"unknown source {source!r}: use one of {', '.join(sources)}",
            field="source",
            code="unknown_source",
        )
    ref = _ref(data.external_ref)
    if ref is not None:
        found = await session.scalar(
            select(InboundContact).where(InboundContact.external_ref == ref)
        )
        if found is not None:
            return await _view(session, found, created=False)
    happened = _happened(data.happened_at, moment)
    note = _note(data.note)
    phone = None
    if data.phone is not None and data.phone.strip():
        try:
            phone = normalize_phone(data.phone, region)
        except ContactError as exc:
            raise DomainError(str(exc), field="phone") from None
    client_id = data.client_id
    if client_id is not None:
        if await session.get(Client, client_id) is None:
            raise NotFound("no such client", field="client")
    elif phone is not None:
        client_id, _ = await client_for_phone(session, phone, moment, name=data.name)
    branch_id = None
    if data.branch is not None:
        branch_id = await session.scalar(select(Branch.id).where(Branch.code == data.branch))
        if branch_id is None:
            raise NotFound(f"no branch {data.branch!r}", field="branch")
    if data.campaign_id is not None and await session.get(Campaign, data.campaign_id) is None:
        raise NotFound(f"no campaign {data.campaign_id}", field="campaign")
    if data.booking_id is not None:
        owner = await session.scalar(select(Booking.client_id).where(Booking.id == data.booking_id))
        if owner is None or (client_id is not None and owner != client_id):
            raise NotFound(f"no booking {data.booking_id} of this client", field="booking")
    row = InboundContact(
        happened_at=happened,
        channel=data.channel,
        purpose=data.purpose,
        source=source,
        outcome=data.outcome,
        client_id=client_id,
        phone=phone,
        branch_id=branch_id,
        campaign_id=data.campaign_id,
        booking_id=data.booking_id,
        staff=(data.staff or "").strip()[:128] or None,
        note=note,
        external_ref=ref,
        created_at=moment.now,
    )
    session.add(row)
    await session.flush()
    return await _view(session, row, created=True)


async def client_for_phone(
    session: AsyncSession,
    phone: str,
    moment: Moment,
    *,
    name: str | None = None,
    source: str = CLIENT_SOURCE,
) -> tuple[int, bool]:
    """The client with this phone (E.164), or a new potential client: (id, created).
    Two callers creating the same number at once make one client."""
    found = await session.scalar(select(Client.id).where(Client.phone == phone))
    if found is not None:
        return found, False
    person = split_full_name(name or "")
    values = {
        "phone": phone,
        "last_name": _part(person.last_name),
        "first_name": _part(person.first_name),
        "middle_name": _part(person.middle_name),
        "source": source,
        "created_at": moment.now,
        "updated_at": moment.now,
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(table_of(Client))
        .values(values)
        .on_conflict_do_nothing(index_elements=["phone"])
        .returning(table_of(Client).c.id)
    )
    made = await session.scalar(statement)
    if made is not None:
        return made, True
    found = await session.scalar(select(Client.id).where(Client.phone == phone))
    if found is None:  # pragma: no cover - the conflicting row is committed or ours
        raise Conflict(f"phone {phone} is being added by someone else", field="phone")
    return found, False


async def _view(session: AsyncSession, row: InboundContact, *, created: bool) -> ContactView:
    code = None
    if row.branch_id is not None:
        code = await session.scalar(select(Branch.code).where(Branch.id == row.branch_id))
    return ContactView(
        id=row.id,
        happened_at=row.happened_at,
        channel=row.channel,
        purpose=row.purpose,
        outcome=row.outcome,
        source=row.source,
        client_id=row.client_id,
        phone=row.phone,
        branch=code,
        campaign_id=row.campaign_id,
        booking_id=row.booking_id,
        staff=row.staff,
        note=row.note,
        external_ref=row.external_ref,
        created=created,
    )


def _one_of(value: str, allowed: Sequence[str], field: str) -> None:
    if value not in allowed:
        raise DomainError(
            f"unknown {field} {value!r}: use one of {', '.join(allowed)}", field=field
        )


def _happened(value: datetime | None, moment: Moment) -> datetime:
    if value is None:
        return moment.now
    if value.tzinfo is None or value.utcoffset() is None:
        raise DomainError("the time needs its UTC offset", field="happened_at")
    if value > moment.now + FUTURE_SLACK:
        raise DomainError(f"{value.isoformat()} is in the future", field="happened_at")
    return value.astimezone(UTC)


def _note(text: str | None) -> str | None:
    if text is None:
        return None
    cleaned = "".join(ch for ch in text if ch == "\n" or ch.isprintable()).strip()
    if len(cleaned) > NOTE_MAX:
        raise DomainError(f"the note is longer than {NOTE_MAX} characters", field="note")
    return cleaned or None


def _ref(text: str | None) -> str | None:
    if text is None:
        return None
    ref = text.strip()
    if not ref or len(ref) > 64 or not ref.isprintable():
        raise DomainError("external_ref must be 1 to 64 printable characters", field="external_ref")
    return ref


def _part(text: str | None) -> str | None:
    return None if text is None else text[:NAME_PART_MAX]
