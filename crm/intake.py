"""Clients and cars pushed one at a time by the dealer's system (the integration API).

The same rules as the CSV import, for one record: a client is found by its external id,
then by an alias a merge left, then by phone. A phone match on a client without an
external id adopts it (a client who first came through the bot); a phone that belongs to a
client with another external id is a Conflict, not a silent merge. Fields left out are
left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bonuses import record_referral
from crm.cards import active_card, card_number, issue, replace
from crm.cars import CarError, normalize_plate, normalize_vin
from crm.clock import Moment
from crm.consent import ADVERTISING, ALL_CHANNELS
from crm.contacts import ContactError, normalize_email, normalize_phone
from crm.errors import Conflict, DomainError, NotFound
from crm.names import (
    NAME_PART_MAX,
    GenderError,
    gender_from_patronymic,
    parse_gender,
    split_full_name,
    too_long,
)
from storage.bonuses import DiscountCard
from storage.models import Car, Client, ClientAlias, ClientConsent

API = "api"  # the source and actor recorded for what the dealer's system changed


@dataclass(frozen=True, slots=True)
class ClientKey:
    """One way to name a client: by phone, card number or external id (exactly one)."""

    phone: str | None = None
    card: str | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClientInput:
    full_name: str | None = None
    phone: str | None = None
    email: str | None = None
    birthday: date | None = None
    gender: str | None = None
    consent_ads: bool | None = None
    card: str | None = None
    referred_by: ClientKey | None = None


@dataclass(frozen=True, slots=True)
class CarInput:
    owner: str | None = None  # the owner's external id
    vin: str | None = None
    plate: str | None = None
    make: str | None = None
    model: str | None = None
    year: int | None = None
    service_interval_km: int | None = None
    service_interval_months: int | None = None
    sold_here: bool | None = None


async def find_client(
    session: AsyncSession, key: ClientKey, *, region: str = "RU", field: str | None = None
) -> int:
    """The client's id by phone, card (any card they ever held) or external id (or alias).

    `field` names the input the key came from, for the error."""
    given = [name for name in ("phone", "card", "external_id") if getattr(key, name)]
    if len(given) != 1:
        raise DomainError("give exactly one of phone, card, external_id", field=field or "query")
    if key.phone:
        phone = _phone(key.phone, region, field or "phone")
        found = await session.scalar(select(Client.id).where(Client.phone == phone))
        what = f"phone {phone}"
    elif key.card:
        number = card_number(key.card)
        found = await session.scalar(
            select(DiscountCard.client_id).where(DiscountCard.number == number)
        )
        what = f"card {number}"
    else:
        assert key.external_id is not None
        found = await client_by_external_id(session, key.external_id)
        what = f"external id {key.external_id!r}"
    if found is None:
        raise NotFound(f"no client with {what}", field=field)
    return found


async def find_client_by_any(session: AsyncSession, text: str, *, region: str = "RU") -> int:
    """The client staff mean by `text`: an external id, else a phone, else a card number,
    else `#N` or `N`: the client's id in autoloyal (as segment listings show it)."""
    text = text.strip()
    found = await client_by_external_id(session, text)
    if found is not None:
        return found
    for key in (ClientKey(phone=text), ClientKey(card=text)):
        try:
            return await find_client(session, key, region=region)
        except DomainError:  # no such client, or the text is not a phone / card number
            continue
    own_id = text.removeprefix("#")
    if own_id.isdecimal() and len(own_id) < 10:
        found = await session.scalar(select(Client.id).where(Client.id == int(own_id)))
        if found is not None:
            return found
    raise NotFound(f"no client with external id, phone, card or id {text!r}", field="client")


async def client_by_external_id(session: AsyncSession, external_id: str) -> int | None:
    found = await session.scalar(select(Client.id).where(Client.external_id == external_id))
    if found is None:
        found = await session.scalar(
            select(ClientAlias.client_id).where(ClientAlias.external_id == external_id)
        )
    return found


async def require_client(session: AsyncSession, external_id: str, *, field: str = "client") -> int:
    found = await client_by_external_id(session, external_id)
    if found is None:
        raise NotFound(f"no client with external id {external_id!r}", field=field)
    return found


async def upsert_client(
    session: AsyncSession,
    external_id: str,
    data: ClientInput,
    moment: Moment,
    *,
    region: str = "RU",
) -> tuple[int, bool]:
    """Create or update the client the dealer's system knows as `external_id`; return
    (client id, created)."""
    values = _client_values(data, region)
    client_id = await client_by_external_id(session, external_id)
    if client_id is None and values.get("phone"):
        owner = (
            await session.execute(
                select(Client.id, Client.external_id).where(Client.phone == values["phone"])
            )
        ).first()
        if owner is not None and owner.external_id is not None:
            raise Conflict(
                f"phone {values['phone']} belongs to client {owner.external_id!r}", field="phone"
            )
        if owner is not None:
            client_id = owner.id
            values["external_id"] = external_id
    created = client_id is None
    if client_id is None:
        client = Client(
            external_id=external_id, created_at=moment.now, updated_at=moment.now, **values
        )
        session.add(client)
        await session.flush()
        client_id = client.id
    elif values:
        await _check_phone_free(session, client_id, values.get("phone"))
        await session.execute(
            update(Client).where(Client.id == client_id).values(**values, updated_at=moment.now)
        )
    if data.consent_ads is not None:
        await _set_advertising_consent(session, client_id, data.consent_ads, moment)
    if data.card is not None:
        await _give_card(session, client_id, data.card, moment)
    if data.referred_by is not None:
        referrer = await find_client(session, data.referred_by, region=region, field="referred_by")
        await record_referral(session, client_id, referrer, moment)
    return client_id, created


def _client_values(data: ClientInput, region: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if data.full_name is not None:
        name = split_full_name(data.full_name)
        if name.is_empty:
            raise DomainError("the name is empty", field="full_name")
        if too_long(name):
            raise DomainError(
                f"a name part is longer than {NAME_PART_MAX} characters", field="full_name"
            )
        values |= {
            "last_name": name.last_name,
            "first_name": name.first_name,
            "middle_name": name.middle_name,
        }
        if data.gender is None and (gender := gender_from_patronymic(name.middle_name)):
            values["gender"] = gender
    if data.phone is not None:
        values["phone"] = _phone(data.phone, region, "phone")
    if data.email is not None:
        try:
            values["email"] = normalize_email(data.email)
        except ContactError as exc:
            raise DomainError(str(exc), field="email") from None
    if data.birthday is not None:
        if not date(1900, 1, 1) <= data.birthday:
            raise DomainError(f"{data.birthday} is not a birthday", field="birthday")
        values["birthday"] = data.birthday
    if data.gender is not None:
        try:
            values["gender"] = parse_gender(data.gender)
        except GenderError as exc:
            raise DomainError(str(exc), field="gender") from None
    return values


def _phone(text: str, region: str, field: str) -> str:
    try:
        return normalize_phone(text, region)
    except ContactError as exc:
        raise DomainError(str(exc), field=field) from None


async def _check_phone_free(session: AsyncSession, client_id: int, phone: str | None) -> None:
    if phone is None:
        return
    owner = (
        await session.execute(
            select(Client.id, Client.external_id).where(
                Client.phone == phone, Client.id != client_id
            )
        )
    ).first()
    if owner is not None:
        who = repr(owner.external_id) if owner.external_id else f"#{owner.id}"
        raise Conflict(f"phone {phone} belongs to client {who}", field="phone")


async def _set_advertising_consent(
    session: AsyncSession, client_id: int, granted: bool, moment: Moment
) -> None:
    row = await session.get(ClientConsent, (client_id, ALL_CHANNELS, ADVERTISING))
    if row is None:
        session.add(
            ClientConsent(
                client_id=client_id,
                channel=ALL_CHANNELS,
                purpose=ADVERTISING,
                granted=granted,
                changed_at=moment.now,
                source=API,
            )
        )
    elif row.granted != granted:
        row.granted, row.changed_at, row.source = granted, moment.now, API
    await session.flush()


async def _give_card(session: AsyncSession, client_id: int, number: str, moment: Moment) -> None:
    """The card the dealer's system says the client has: issued, or put in place of the
    card they held before."""
    number = card_number(number)
    held = await active_card(session, client_id)
    if held is not None and held.number != number:
        await replace(
            session,
            held.number,
            number,
            reason="replaced by the dealer's system",
            actor=API,
            now=moment.now,
        )
    else:
        await issue(session, number, client_id, actor=API, now=moment.now)


async def upsert_car(
    session: AsyncSession, external_id: str, data: CarInput, moment: Moment
) -> tuple[int, bool]:
    """Create or update the car the dealer's system knows as `external_id`; a new car needs
    its owner. Return (car id, created)."""
    values: dict[str, Any] = {}
    for name in ("vin", "plate"):
        raw = getattr(data, name)
        if raw is not None:
            try:
                values[name] = (normalize_vin if name == "vin" else normalize_plate)(raw)
            except CarError as exc:
                raise DomainError(str(exc), field=name) from None
    for name in ("make", "model", "year", "service_interval_km", "service_interval_months",
                 "sold_here"):  # fmt: skip
        value = getattr(data, name)
        if value is not None:
            values[name] = value.strip() if isinstance(value, str) else value
    if data.year is not None and not 1900 <= data.year <= moment.today.year + 1:
        raise DomainError(f"{data.year} is not a model year", field="year")
    if data.owner is not None:
        values["client_id"] = await require_client(session, data.owner, field="owner")
    car_id = await session.scalar(select(Car.id).where(Car.external_id == external_id))
    if car_id is None:
        if "client_id" not in values:
            raise DomainError("a new car needs its owner", field="owner")
        car = Car(external_id=external_id, created_at=moment.now, updated_at=moment.now, **values)
        session.add(car)
        await session.flush()
        return car.id, True
    if values:
        await session.execute(
            update(Car).where(Car.id == car_id).values(**values, updated_at=moment.now)
        )
    return car_id, False


async def require_car(session: AsyncSession, external_id: str) -> int:
    """The id of the car with this external id; NotFound otherwise."""
    car_id = await session.scalar(select(Car.id).where(Car.external_id == external_id))
    if car_id is None:
        raise NotFound(f"no car with external id {external_id!r}", field="car")
    return car_id
