"""Segments by who the clients are: everyone, birthdays, and a filter of many conditions."""

from __future__ import annotations

from calendar import isleap
from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, exists, func, literal, select, true
from sqlalchemy.orm import aliased

from crm.bonuses.ledger import live
from crm.cars import same_name
from crm.clock import years_before
from crm.consent import ADVERTISING, ALL_CHANNELS
from crm.names import parse_gender
from crm.segments.analysis import cents
from crm.segments.base import (
    Column,
    Param,
    Range,
    SegmentContext,
    SegmentSpec,
    SegmentSQL,
    a_date,
    choice,
    client_columns,
    roubles,
    span,
    whole,
    words,
    yes_no,
)
from gateway.channels import CONTACTS
from storage.bonuses import BonusLot, BonusPosting
from storage.models import Car, Client, ClientConsent, ClientTag, Visit
from storage.sqlfunc import days_between, month_day, year_of

CHANNEL_NAMES = ("telegram", "sms", "email")


def contact_columns() -> list[ColumnElement[Any]]:
    return [
        Client.email.label("email"),
        Client.telegram_id.is_not(None).label("telegram"),
    ]


CONTACT_COLUMNS = (Column("email", "Email"), Column("telegram", "Telegram", "bool"))


def build_all(values: dict[str, Any], context: SegmentContext) -> SegmentSQL:
    return SegmentSQL(
        members=select(Client.id),
        rows=select(*client_columns(), *contact_columns()).order_by(Client.id),
        columns=CONTACT_COLUMNS,
    )


ALL = SegmentSpec("all", "every client on file", (), build_all)


# ------------------------------------------------------------------------------ birthdays


def birthday_on(month_and_day: str, year: int) -> date:
    """The day a birthday falls on in `year`: 29 February is 28 February in other years."""
    month, day = (int(part) for part in month_and_day.split("-"))
    try:
        return date(year, month, day)
    except ValueError:
        return date(year, 2, 28)


def build_birthdays(values: dict[str, Any], context: SegmentContext) -> SegmentSQL:
    today = context.today
    days = [today + timedelta(days=offset) for offset in range(values["within"] + 1)]
    falls_on: dict[str, date] = {}
    for day in days:
        falls_on.setdefault(f"{day.month:02d}-{day.day:02d}", day)
        if day.month == 2 and day.day == 28 and not isleap(day.year):
            falls_on.setdefault("02-29", day)
    birthday = month_day(Client.birthday)
    on = case(falls_on, value=birthday)
    where = [Client.birthday.is_not(None), birthday.in_(sorted(falls_on))]
    return SegmentSQL(
        members=select(Client.id).where(*where),
        rows=select(
            *client_columns(),
            Client.birthday.label("birthday"),
            on.label("on"),
            (year_of(on) - year_of(Client.birthday)).label("turns"),
            days_between(on, literal(today)).label("in_days"),
        )
        .where(*where)
        .order_by(on, Client.id),
        columns=(
            Column("birthday", "Birthday", "date"),
            Column("on", "On", "date"),
            Column("turns", "Turns", "int"),
            Column("in_days", "In days", "int"),
        ),
    )


BIRTHDAYS = SegmentSpec(
    "birthdays",
    "birthdays today, or within the next `within` days (29 Feb counts on 28 Feb)",
    (Param("within", "days ahead, 0 = today only", whole(0, 366), 0),),
    build_birthdays,
)


# --------------------------------------------------------------------------------- filter


def _gender(value: str) -> str:
    gender = parse_gender(value)  # М/Ж, муж/жен, male/female, m/f
    if gender is None:
        raise ValueError("empty: give male or female")
    return gender


def advertising_allowed(channel: str) -> ColumnElement[bool]:
    """The client may be sent advertising on `channel`: a row for the channel says so, or,
    with none, the blanket row does (the same rule the dispatcher applies)."""
    consent = aliased(ClientConsent)

    def row(scope: str, granted: bool | None = None) -> ColumnElement[bool]:
        conditions = [
            consent.client_id == Client.id,
            consent.channel == scope,
            consent.purpose == ADVERTISING,
        ]
        if granted is not None:
            conditions.append(consent.granted == granted)
        return exists().where(*conditions)

    return row(channel, True) | (~row(channel) & row(ALL_CHANNELS, True))


_ADDRESS = {channel: getattr(Client, column) for channel, column in CONTACTS.items()}


def build_filter(values: dict[str, Any], context: SegmentContext) -> SegmentSQL:
    today = context.today
    where: list[ColumnElement[bool]] = []
    if values["gender"]:
        where.append(Client.gender == values["gender"])
    age: Range | None = values["age"]
    if age is not None:
        if age.low is not None:
            where.append(Client.birthday <= years_before(today, age.low))
        if age.high is not None:
            where.append(Client.birthday > years_before(today, age.high + 1))
    car: list[ColumnElement[bool]] = []
    if values["make"]:
        car.append(same_name(Car.make, values["make"]))
    if values["model"]:
        car.append(same_name(Car.model, values["model"]))
    year: Range | None = values["year"]
    if year is not None:
        if year.low is not None:
            car.append(Car.year >= year.low)
        if year.high is not None:
            car.append(Car.year <= year.high)
    if car:  # one car must match every car condition
        where.append(exists().where(Car.client_id == Client.id, *car))
    spent = (
        select(func.coalesce(func.sum(cents(Visit.amount)), 0))
        .where(Visit.client_id == Client.id, Visit.visited_on <= today)
        .scalar_subquery()
    )
    last_visit = (
        select(func.max(Visit.visited_on))
        .where(Visit.client_id == Client.id, Visit.visited_on <= today)
        .scalar_subquery()
    )
    bonus: Range | None = values["bonus"]
    if bonus is not None:
        held = _bonus_balance(today)
        if bonus.low is not None:
            where.append(held >= int(bonus.low * 100))
        if bonus.high is not None:
            where.append(held <= int(bonus.high * 100))
    spend: Range | None = values["spend"]
    if spend is not None:
        if spend.low is not None:
            where.append(spent >= int(spend.low * 100))
        if spend.high is not None:
            where.append(spent <= int(spend.high * 100))
    if values["last_visit_before"] is not None:
        where.append(last_visit < values["last_visit_before"])
    if values["last_visit_after"] is not None:
        where.append(last_visit > values["last_visit_after"])
    if values["tag"]:
        where.append(
            exists().where(ClientTag.client_id == Client.id, ClientTag.tag.in_(values["tag"]))
        )
    channels = values["channel"] or CHANNEL_NAMES
    if values["channel"]:
        where.append(_any(_ADDRESS[name].is_not(None) for name in channels))
    if values["advertising"] is not None:
        allowed = _any(_ADDRESS[name].is_not(None) & advertising_allowed(name) for name in channels)
        where.append(allowed if values["advertising"] else ~allowed)
    return SegmentSQL(
        members=select(Client.id).where(*where),
        rows=select(
            *client_columns(),
            *contact_columns(),
            last_visit.label("last_visit"),
            spent.label("spent"),
        )
        .where(*where)
        .order_by(Client.id),
        columns=(
            *CONTACT_COLUMNS,
            Column("last_visit", "Last visit", "date"),
            Column("spent", "Spent", "money"),
        ),
    )


def _bonus_balance(today: date) -> ColumnElement[int]:
    """The client's spendable bonuses on `today`, in kopecks (see crm.bonuses.ledger)."""
    return (
        select(func.coalesce(func.sum(cents(BonusPosting.amount)), 0))
        .join(BonusLot, BonusLot.id == BonusPosting.lot_id)
        .where(BonusPosting.client_id == Client.id, live(today))
        .scalar_subquery()
    )


def _any(conditions: Any) -> ColumnElement[bool]:
    result: ColumnElement[bool] | None = None
    for condition in conditions:
        result = condition if result is None else result | condition
    return result if result is not None else true()


FILTER = SegmentSpec(
    "filter",
    "clients matching every condition given",
    (
        Param("gender", "male or female", _gender, None, "female"),
        Param("age", "age range in years (30-45, 60-, -25)", span(whole(0, 150)), None, "30-45"),
        Param("make", "has a car of these makes", words, (), "Kia,Hyundai"),
        Param("model", "has a car of these models (with make: the same car)", words, (), "Rio"),
        Param("year", "has a car built in these years", span(whole(1900, 2100)), None,
              "2015-2020"),
        Param("spend", "total spent, roubles, a range", span(roubles), None, "100000-"),
        Param("bonus", "bonus balance today, a range", span(roubles), None, "1000-"),
        Param("last_visit_before", "last visit before this day", a_date),
        Param("last_visit_after", "last visit after this day", a_date),
        Param("tag", "has any of these tags", words, (), "fleet"),
        Param("channel", "reachable by any of: telegram, sms, email",
              choice(*CHANNEL_NAMES, many=True), (), "telegram"),
        Param("advertising", "consents to advertising on a channel they have (yes/no)",
              yes_no, None, "yes"),
    ),
    build_filter,
)  # fmt: skip
