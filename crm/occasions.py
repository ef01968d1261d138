"""The occasion calendar: which greeting goes out on which day, to whom, with which gift.

An occasion (config `[[occasion]]`) has a date rule: a fixed "MM-DD"; a movable
"last-sun-10" (the last Sunday of October, the Day of the Motorist: "1st".."4th" or "last",
"mon".."sun", the month); or the client's own date: "birthday" (29 February on the 28th in
common years) or "car_purchase" (each anniversary of a car bought here: the first `sale`
visit of the car by its present owner; the schema keeps no purchase date, so a car only
flagged `sold_here` has no day to be greeted on). The greeting goes `days_before` days
before the date, at the occasion's time in the client's zone.

Russian public holidays keep their dates (a transfer moves the day off, not the holiday,
as the `holidays` package shows), and the professional days it lacks are rules here, so
every date is computed from its rule alone.

The year of a greeting, in its key `occasion:<code>:<client>:<year>` and its gift's
reference, is the year of the occasion's own date: New Year's Eve greeted on 30 December
2026 is 2026's; a 1 January birthday greeted on 31 December is the new year's. A
car_purchase key ends with the car (`...:<year>:<car>`): two cars, two anniversaries. A
birthday gift is the birthday bonus under its usual reference (`birthday:<client>:<year>`),
so `autoloyal bonus birthday` and the greeting never both give it.
"""

from __future__ import annotations

from calendar import isleap, monthrange
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bonuses.birthdays import birthday_ref
from crm.bonuses.ledger import BIRTHDAY, GIFT, Entry, balance, credit
from crm.clock import Moment
from crm.context import (
    OCCASION_SECTIONS,
    CarFacts,
    ClientFacts,
    CompanyInfo,
    context_maker,
    reachable_channels,
)
from crm.preferences import LinkSigner
from crm.recipients import FACT_COLUMNS, latest_cars
from crm.segments import SegmentContext, SegmentQuery, resolve
from crm.segments.people import BIRTHDAYS
from crm.templates import TemplateLibrary
from crm.visits import SALE
from gateway.consent import ADVERTISING
from gateway.optout import OptOut
from gateway.outbox import EnqueueResult, Recipient, check_plan, enqueue
from gateway.render import MessageTemplate
from storage.models import Car, Client, OdometerReading, Visit
from storage.sqlfunc import month_day, year_of

BIRTHDAY_RULE = "birthday"
CAR_PURCHASE = "car_purchase"

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ORDINALS = {"1st": 0, "2nd": 1, "3rd": 2, "4th": 3}


class OccasionError(ValueError):
    """An occasion that cannot be sent as configured."""


@dataclass(frozen=True, slots=True)
class Occasion:
    """A greeting as the company configured it, defaults filled in (see scheduler/jobs)."""

    code: str
    template: str
    rule: str
    audience: str = "all"
    days_before: int = 0
    at: time = time(10, 0)
    gift: Decimal | None = None
    gift_valid_days: int | None = None
    """None: the gift never expires."""
    channels: tuple[str, ...] = ("telegram", "sms", "email")
    kind: str = ADVERTISING

    @property
    def per_client(self) -> bool:
        """The date is each client's own (birthday, car purchase), not the calendar's."""
        return self.rule in (BIRTHDAY_RULE, CAR_PURCHASE)


# -------------------------------------------------------------------------------- the calendar


def date_of(rule: str, year: int) -> date:
    """The date a calendar rule falls on in `year`: "03-08", "last-sun-10", "2nd-mon-09".

    A fixed day past the month's end (29 February in a common year) is its last day.
    """
    if rule in (BIRTHDAY_RULE, CAR_PURCHASE):
        raise ValueError(f"{rule!r} is each client's own date, not the calendar's")
    parts = rule.split("-")
    if len(parts) == 2:
        month, day = int(parts[0]), int(parts[1])
        return date(year, month, min(day, monthrange(year, month)[1]))
    which, weekday, month_text = parts
    month, wanted = int(month_text), _WEEKDAYS.index(weekday)
    if which == "last":
        last = date(year, month, monthrange(year, month)[1])
        return last - timedelta(days=(last.weekday() - wanted) % 7)
    first = date(year, month, 1)
    return first + timedelta(days=(wanted - first.weekday()) % 7 + 7 * _ORDINALS[which])


def occasion_date(occasion: Occasion, sending_day: date) -> date | None:
    """The date of the occasion a greeting sent on `sending_day` is for; None when the
    occasion greets nobody that day. A client's own occasion is on every day: who
    celebrates is the database's question (`celebrants`)."""
    on = sending_day + timedelta(days=occasion.days_before)
    if occasion.per_client:
        return on
    return on if date_of(occasion.rule, on.year) == on else None


def sending_day(occasion: Occasion, year: int) -> date:
    """The day a calendar occasion of `year` is greeted on."""
    return date_of(occasion.rule, year) - timedelta(days=occasion.days_before)


def falls_on(on: date) -> list[str]:
    """The "MM-DD" of yearly dates celebrated on `on`: 29 February on 28 February in
    common years."""
    days = [f"{on.month:02d}-{on.day:02d}"]
    if on.month == 2 and on.day == 28 and not isleap(on.year):
        days.append("02-29")
    return days


def anniversaries(on: date) -> Select[Any]:
    """(client_id, car_id) of cars whose present owner bought them here on this day of an
    earlier year: the day of the owner's first `sale` visit with the car."""
    bought = (
        select(
            Visit.car_id.label("car_id"),
            Visit.client_id.label("client_id"),
            func.min(Visit.visited_on).label("bought_on"),
        )
        .where(Visit.kind == SALE, Visit.car_id.is_not(None))
        .group_by(Visit.car_id, Visit.client_id)
        .subquery("bought")
    )
    return (
        select(bought.c.client_id, bought.c.car_id)
        .join(Car, (Car.id == bought.c.car_id) & (Car.client_id == bought.c.client_id))
        .where(
            month_day(bought.c.bought_on).in_(falls_on(on)), year_of(bought.c.bought_on) < on.year
        )
    )


def celebrants(occasion: Occasion, on: date) -> SegmentQuery | None:
    """The clients whose own date is `on` (None: a calendar occasion, everyone's)."""
    if occasion.rule == BIRTHDAY_RULE:
        return BIRTHDAYS.build({"within": 0}, SegmentContext(on)).members
    if occasion.rule == CAR_PURCHASE:
        return select(anniversaries(on).subquery().c.client_id)
    return None


def greeting_key(code: str, client_id: int, year: int, car_id: int | None = None) -> str:
    key = f"occasion:{code}:{client_id}:{year}"
    return key if car_id is None else f"{key}:{car_id}"


def gift_entry(occasion: Occasion, client_id: int, year: int) -> Entry | None:
    """The occasion's gift to a client in `year`, under a reference that gives it once."""
    if occasion.gift is None:
        return None
    if occasion.rule == BIRTHDAY_RULE:  # the reference crm.bonuses.birthdays gives it under
        return Entry(BIRTHDAY, occasion.gift, ref=birthday_ref(client_id, year))
    return Entry(GIFT, occasion.gift, ref=f"occasion:{occasion.code}:{client_id}:{year}")


def send_time(day: date, at: time, zone: ZoneInfo, now: datetime) -> datetime | None:
    """When a greeting sent on `day` may go: `at` there, or None (at once) when that passed."""
    moment = datetime.combine(day, at, zone)
    return moment if moment > now else None


# ------------------------------------------------------------------------------ the greetings


@dataclass(frozen=True, slots=True)
class Greeting:
    """An occasion as greeted on one sending day: its date, its template, who gets it."""

    occasion: Occasion
    on: date
    template: MessageTemplate
    members: SegmentQuery


@dataclass(slots=True)
class GreetedPage:
    """What greeting one page of clients did; `last` is its last client id (None: the
    page was empty, everyone is greeted)."""

    last: int | None
    clients: int = 0
    queued: int = 0
    duplicates: int = 0
    no_address: int = 0
    gifts: int = 0


async def prepare_greeting(
    session: AsyncSession,
    library: TemplateLibrary,
    occasion: Occasion,
    on: date,
    context: SegmentContext,
) -> Greeting:
    """Check the occasion's template and plan, and resolve its audience for the date `on`.

    A template may use the `bonus` section only when the occasion gives a gift; the other
    occasion sections belong to other messages.
    """
    template = await library.get(session, occasion.template)
    check_plan(template, occasion.channels, occasion.kind)
    lacking = sorted((template.needs & OCCASION_SECTIONS) - _provided(occasion))
    if lacking:
        raise OccasionError(
            f"occasion {occasion.code}: template {template.name} needs {', '.join(lacking)}, "
            "which a greeting does not provide"
        )
    members = (await resolve(session, occasion.audience, {}, context)).members
    who = celebrants(occasion, on)
    if who is not None:
        where = [Client.id.in_(who)]
        if occasion.audience.strip() != "all":
            where.append(Client.id.in_(members))
        members = select(Client.id).where(*where)
    return Greeting(occasion, on, template, members)


def _provided(occasion: Occasion) -> frozenset[str]:
    return frozenset({"bonus"}) if occasion.gift is not None else frozenset()


async def greet_page(
    session: AsyncSession,
    greeting: Greeting,
    company: CompanyInfo,
    moment: Moment,
    *,
    after: int,
    size: int,
    links: LinkSigner | None = None,
    opt_out: OptOut | None = None,
    new_keys: bool = False,
) -> GreetedPage:
    """Greet the next `size` clients after client id `after`, with their gifts, in the
    caller's transaction: a page committed has both its greetings and its gifts, a page
    rolled back neither. Keys and references make a page greeted again a no-op.

    A client with no address on the plan gets the gift but no message. `new_keys`: the
    caller expects none of the page's keys in the outbox (the previous page had none), so
    they are not looked up before rendering; one that is there is still not queued twice.
    """
    occasion = greeting.occasion
    clients = await _page(session, greeting.members, after, size)
    if not clients:
        return GreetedPage(last=None)
    page = GreetedPage(last=clients[-1].id, clients=len(clients))
    ids = [client.id for client in clients]
    bonus = await _give_gifts(session, greeting, ids, moment, page)
    cars: list[tuple[ClientFacts, int | None, CarFacts | None]]
    if occasion.rule == CAR_PURCHASE:
        bought = await _bought_cars(session, greeting.on, ids)
        cars = [(client, car_id, car) for client in clients for car_id, car in bought[client.id]]
    else:
        latest = await latest_cars(session, ids)
        cars = [(client, None, latest.get(client.id)) for client in clients]
    unsubscribe = None
    if links is not None and occasion.kind == ADVERTISING:
        unsubscribe = links.url
    context_for = context_maker(company, moment.today, unsubscribe)
    default_zone = ZoneInfo(company.timezone)
    batches: defaultdict[datetime | None, list[Recipient]] = defaultdict(list)
    for client, car_id, car in cars:
        channels = reachable_channels(client, occasion.channels)
        if not channels:
            page.no_address += 1
            continue
        context = context_for(client, car)
        if client.id in bonus:
            context["bonus"] = bonus[client.id]
        zone = _zone(client.timezone, default_zone)
        key = greeting_key(occasion.code, client.id, greeting.on.year, car_id)
        not_before = send_time(moment.today, occasion.at, zone, moment.now)
        batches[not_before].append(Recipient(client.id, key, context, channels=channels))
    result = EnqueueResult()
    for not_before, recipients in batches.items():
        result.add(
            await enqueue(
                session,
                greeting.template,
                recipients,
                plan=occasion.channels,
                kind=occasion.kind,
                now=moment.now,
                not_before=not_before,
                new_keys=new_keys,
                opt_out=opt_out,
            )
        )
    page.queued, page.duplicates = result.queued, result.duplicates
    return page


async def _page(
    session: AsyncSession, members: SegmentQuery, after: int, size: int
) -> list[ClientFacts]:
    """The next clients by id, read as crm.recipients.client_pages reads a page."""
    member_ids = members.subquery()
    connection = await session.connection()  # plain rows: no ORM loading per row
    rows = await connection.execute(
        select(*FACT_COLUMNS)
        .where(Client.id > after, exists().where(member_ids.c[0] == Client.id))
        .order_by(Client.id)
        .limit(size)
    )
    return [ClientFacts(*cast(tuple[Any, ...], row)) for row in rows]


async def _give_gifts(
    session: AsyncSession, greeting: Greeting, ids: list[int], moment: Moment, page: GreetedPage
) -> dict[int, dict[str, Any]]:
    """Credit the page's gifts; the `bonus` section per client when the template uses it."""
    occasion, sections = greeting.occasion, {}
    for client_id in ids:
        entry = gift_entry(occasion, client_id, greeting.on.year)
        if entry is None:
            break
        moved = await credit(session, client_id, entry, moment, valid_days=occasion.gift_valid_days)
        page.gifts += 0 if moved.repeated else 1
        if "bonus" in greeting.template.needs:
            sections[client_id] = {
                "amount": moved.amount,
                "balance": await balance(session, client_id, moment.today),
                "expires_on": moved.expires_on,
            }
    return sections


async def _bought_cars(
    session: AsyncSession, on: date, client_ids: list[int]
) -> defaultdict[int, list[tuple[int, CarFacts]]]:
    """Per client of the page, the cars whose anniversary of purchase is `on`."""
    sold = anniversaries(on).where(Car.client_id.in_(client_ids)).subquery()
    odometer = (
        select(OdometerReading.km)
        .where(OdometerReading.car_id == Car.id)
        .order_by(OdometerReading.read_on.desc(), OdometerReading.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = await (await session.connection()).execute(
        select(Car.client_id, Car.id, Car.make, Car.model, Car.year, Car.plate, Car.vin, odometer)
        .join(sold, sold.c.car_id == Car.id)
        .order_by(Car.id)
    )
    cars: defaultdict[int, list[tuple[int, CarFacts]]] = defaultdict(list)
    for client_id, car_id, make, model, year, plate, vin, km in rows:
        cars[client_id].append((car_id, CarFacts(make, model, year, plate, vin, km)))
    return cars


_ZONES: dict[str, ZoneInfo] = {}


def _zone(name: str | None, default: ZoneInfo) -> ZoneInfo:
    if not name:
        return default
    zone = _ZONES.get(name)
    if zone is None:
        try:
            zone = _ZONES[name] = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return default
    return zone
