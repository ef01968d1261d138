"""The client's booking confirmation, through the outbox like every message.

Queued in the transaction that confirms the booking, as a service message (it goes to
clients who declined advertising too), with the key `booking:<id>:confirmed`: a second
confirmation of the same booking is never sent, and a moved booking, being a new
booking, gets its own. The dispatcher keeps it out of the client's night.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.clock import Moment
from crm.context import CarFacts, CompanyInfo, message_context, reachable_channels
from crm.recipients import client_facts
from crm.templates import TemplateLibrary
from gateway.consent import SERVICE
from gateway.outbox import Recipient, enqueue
from storage.models import Car

if TYPE_CHECKING:
    from crm.booking.bookings import BookingView
    from crm.booking.calendar import BranchHours

TEMPLATE = "booking_confirmation"


@dataclass(frozen=True, slots=True)
class BookingNotices:
    library: TemplateLibrary
    company: CompanyInfo
    plan: tuple[str, ...]


async def send_confirmation(
    session: AsyncSession,
    notices: BookingNotices,
    booking: BookingView,
    branch: BranchHours,
    moment: Moment,
) -> bool:
    """Queue the confirmation; False when the client has no address on the plan."""
    found = await client_facts(session, booking.client_id)
    assert found is not None, "the booking's client exists in the same transaction"
    client, latest = found
    channels = reachable_channels(client, notices.plan)
    if not channels:
        return False
    car = await _car(session, booking.car_id) if booking.car_id is not None else latest
    section = booking_section(branch, notices.company, booking.starts_at, booking.service_name)
    recipient = Recipient(
        booking.client_id,
        key=f"booking:{booking.id}:confirmed",
        context=message_context(notices.company, client, car, moment.today, booking=section),
        branch_id=booking.branch_id,
        channels=channels,
    )
    template = await notices.library.get(session, TEMPLATE)
    await enqueue(session, template, [recipient], plan=notices.plan, kind=SERVICE, now=moment.now)
    return True


def booking_section(
    branch: BranchHours, company: CompanyInfo, starts_at: datetime, service: str
) -> dict[str, Any]:
    """The `booking` section of a message's context (confirmation, reminders): the start on
    the branch's clock, the branch, its address, the service."""
    return {
        "starts_at": branch.local(starts_at),
        "branch": branch.name,
        "address": branch.address or company.address,
        "service": service,
    }


async def _car(session: AsyncSession, car_id: int) -> CarFacts | None:
    row = (
        await session.execute(
            select(Car.make, Car.model, Car.year, Car.plate, Car.vin).where(Car.id == car_id)
        )
    ).first()
    if row is None:
        return None
    return CarFacts(row.make, row.model, row.year, row.plate, row.vin, None)
