"""What a message template sees: the client, their car, the company, links, occasion data.

Every context has the common sections (`client`, `car`, `company`, `links`, `today`,
`locale`, `timezone`, `currency`); an occasion adds its own (`bonus`, `maintenance`,
`booking`, `survey`). Sections are plain dicts of plain values: the sandbox renders them
fast and nothing in them leads back to the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from crm.names import FEMALE, MALE, polite_address
from gateway.channels import CONTACTS


@dataclass(frozen=True, slots=True)
class CompanyInfo:
    """The company as messages present it; built from the `[company]` settings."""

    name: str
    phone: str = ""
    address: str = ""
    website: str = ""
    locale: str = "ru"
    timezone: str = "Europe/Moscow"
    currency: str = "RUB"
    booking_url: str | None = None

    def section(self) -> dict[str, str]:
        return {
            "name": self.name,
            "phone": self.phone,
            "address": self.address,
            "website": self.website,
        }


@dataclass(frozen=True, slots=True)
class ClientFacts:
    """The columns of a client a message may use."""

    id: int
    first_name: str | None
    middle_name: str | None
    last_name: str | None
    gender: str | None
    birthday: date | None
    timezone: str | None = None
    telegram_id: int | None = None
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class CarFacts:
    make: str | None
    model: str | None
    year: int | None
    plate: str | None
    vin: str | None
    odometer: int | None


def client_section(client: ClientFacts, today: date, locale: str) -> dict[str, Any]:
    first, middle, last = client.first_name or "", client.middle_name or "", client.last_name or ""
    return {
        "id": client.id,
        "first_name": first,
        "middle_name": middle,
        "last_name": last,
        "full_name": " ".join(part for part in (last, first, middle) if part),
        "name": " ".join(part for part in (first, middle) if part),
        "gender": client.gender if client.gender in (MALE, FEMALE) else None,
        "polite": polite_address(first, middle, client.gender, locale),
        "birthday": client.birthday,
        "age": _age(client.birthday, today),
    }


def car_section(car: CarFacts | None) -> dict[str, Any] | None:
    if car is None:
        return None
    make, model = car.make or "", car.model or ""
    return {
        "make": make,
        "model": model,
        "year": car.year,
        "plate": car.plate or "",
        "vin": car.vin or "",
        "title": " ".join(part for part in (make, model) if part),
        "odometer": car.odometer,
    }


def message_context(
    company: CompanyInfo,
    client: ClientFacts,
    car: CarFacts | None,
    today: date,
    **occasion: Any,
) -> dict[str, Any]:
    """The context of one message: the common sections plus the occasion's own."""
    return {**context_maker(company, today)(client, car), **occasion}


def context_maker(
    company: CompanyInfo,
    today: date,
    unsubscribe: Callable[[int], str] | None = None,
) -> Callable[[ClientFacts, CarFacts | None], dict[str, Any]]:
    """`message_context` for many clients of one mailing: what they share is built once.

    The shared sections are the same dict objects in every context; templates cannot
    change them (the sandbox is immutable), so sharing is safe. `unsubscribe` makes a
    client's personal unsubscribe link from their id (None: messages carry none).
    """
    links = {"booking": company.booking_url, "unsubscribe": None}
    shared = {
        "company": company.section(),
        "links": links,
        "today": today,
        "locale": company.locale,
        "currency": company.currency,
    }

    def make(client: ClientFacts, car: CarFacts | None) -> dict[str, Any]:
        context = {
            **shared,
            "client": client_section(client, today, company.locale),
            "car": car_section(car),
            "timezone": client.timezone or company.timezone,
        }
        if unsubscribe is not None:
            context["links"] = {**links, "unsubscribe": unsubscribe(client.id)}
        return context

    return make


def sample_context(company: CompanyInfo, today: date) -> dict[str, Any]:
    """A context with every section filled: templates are checked against it when saved."""
    zone = ZoneInfo(company.timezone)
    client = ClientFacts(
        id=0,
        first_name="Иван",
        middle_name="Петрович",
        last_name="Смирнов",
        gender=MALE,
        birthday=date(1980, today.month, min(today.day, 28)),
    )
    car = CarFacts("Kia", "Rio", 2019, "А123ВС777", "Z94CB41AAGR323020", 61_250)
    return message_context(
        company,
        client,
        car,
        today,
        maintenance={
            "due_on": today + timedelta(days=14),
            "due_km": 75_000,
            "reason": "km",
        },
        booking={
            "starts_at": datetime.combine(today + timedelta(days=3), time(10, 30), zone),
            "branch": company.name,
            "address": company.address,
            "service": "Техническое обслуживание",
        },
        survey={"link": "https://example.com/survey/SAMPLE", "visit_on": today},
        bonus={
            "amount": Decimal("500.00"),
            "balance": Decimal("1500.00"),
            "expires_on": today + timedelta(days=30),
        },
    )


def reachable_channels(client: ClientFacts, plan: Sequence[str]) -> tuple[str, ...]:
    """The channels of the plan the client has an address for: only those are rendered.

    A text for a channel the client cannot be reached through would never be sent; a
    contact added after the message was queued is used by the next message.
    """
    addresses = {"telegram_id": client.telegram_id, "phone": client.phone, "email": client.email}
    return tuple(channel for channel in plan if addresses.get(CONTACTS.get(channel, "")))


OCCASION_SECTIONS = frozenset({"maintenance", "booking", "survey", "bonus"})
"""Sections only an occasion provides: a campaign to a segment has none of them."""


def _age(birthday: date | None, today: date) -> int | None:
    if birthday is None:
        return None
    return today.year - birthday.year - ((today.month, today.day) < (birthday.month, birthday.day))
