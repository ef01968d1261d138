"""Greetings from the occasion calendar: the right day, the right people, once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import pytest
from sqlalchemy import func, select, update

from autoloyal.config import DEFAULT_OCCASIONS, OccasionSettings, Settings
from autoloyal.rules import bonus_rules
from crm import occasions as occasion_module
from crm.bonuses.birthdays import grant_birthday_bonuses
from crm.bonuses.ledger import BIRTHDAY
from crm.clock import Moment
from crm.occasions import Occasion, date_of, falls_on, occasion_date, sending_day
from gateway.outbox import enqueue as real_enqueue
from scheduler.base import JobContext, JobResult
from scheduler.jobs import greetings
from storage.bonuses import BonusMovement
from storage.models import Car, Client
from storage.outbox import Message
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, add_visit

MOSCOW = ZoneInfo("Europe/Moscow")
_phones = iter(range(9_000_000, 9_999_999))


def with_occasions(settings: Settings, *extra: OccasionSettings, **outbox: Any) -> Settings:
    update_: dict[str, Any] = {"occasion": (*DEFAULT_OCCASIONS, *extra)}
    if outbox:
        update_["outbox"] = settings.outbox.model_copy(update=outbox)
    return settings.model_copy(update=update_)


async def client(
    db: Database,
    *,
    gender: str | None,
    birthday: date | None = None,
    reachable: bool = True,
    timezone: str | None = None,
    first_name: str = "Анна",
) -> int:
    phone = f"+7916{next(_phones)}" if reachable else None
    client_id = await add_client(
        db, phone=phone, gender=gender, timezone=timezone, first_name=first_name
    )
    if birthday is not None:
        async with db.sessions() as session, session.begin():
            await session.execute(
                update(Client).where(Client.id == client_id).values(birthday=birthday)
            )
    return client_id


async def buys_car(db: Database, client_id: int, day: date, model: str = "Rio") -> int:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    async with db.sessions() as session, session.begin():
        car = Car(client_id=client_id, make="Kia", model=model, created_at=now, updated_at=now)
        session.add(car)
        await session.flush()
        car_id = car.id
    await add_visit(db, client_id, day, 1_500_000, kind="sale", car_id=car_id)
    return car_id


async def run_day(
    db: Database, clock: FakeClock, settings: Settings, day: date, *, dry_run: bool = False
) -> tuple[JobContext, JobResult]:
    """The greetings job as the scheduler runs it: at 09:00 in Moscow on `day`."""
    clock.set(datetime.combine(day, time(9), MOSCOW))
    ctx = JobContext(settings, db.sessions, Moment.of(clock, MOSCOW), MOSCOW, dry_run=dry_run)
    result = JobResult()
    await greetings.run(ctx, result)
    return ctx, result


async def greeted(db: Database) -> Counter[tuple[int, str]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(Message.client_id, Message.template, func.count()).group_by(
                Message.client_id, Message.template
            )
        )
        return Counter({(client_id, template): n for client_id, template, n in rows})


async def birthday_gifts(db: Database) -> Counter[int]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(BonusMovement.client_id, func.count())
            .where(BonusMovement.kind == BIRTHDAY)
            .group_by(BonusMovement.client_id)
        )
        return Counter({client_id: n for client_id, n in rows})


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# The calendar ---------------------------------------------------------------------------------

MOTORIST = Occasion("motorist_day", "motorist_day", "last-sun-10")


@pytest.mark.parametrize(
    ("year", "sunday"),
    [
        (2024, date(2024, 10, 27)),
        (2025, date(2025, 10, 26)),
        (2026, date(2026, 10, 25)),
        (2027, date(2027, 10, 31)),
        (2028, date(2028, 10, 29)),
        (2029, date(2029, 10, 28)),
        (2030, date(2030, 10, 27)),
    ],
)
def test_the_day_of_the_motorist_is_the_last_sunday_of_october(year: int, sunday: date) -> None:
    assert sending_day(MOTORIST, year) == sunday
    october = days(date(year, 10, 1), date(year, 10, 31))
    assert [day for day in october if occasion_date(MOTORIST, day)] == [sunday]


def test_nth_weekday_rules_count_from_the_first_of_the_month() -> None:
    assert date_of("1st-mon-09", 2027) == date(2027, 9, 6)
    assert date_of("2nd-sun-08", 2026) == date(2026, 8, 9)  # the Builder's Day
    assert date_of("3rd-sun-07", 2027) == date(2027, 7, 18)
    assert date_of("4th-fri-11", 2030) == date(2030, 11, 22)
    assert date_of("last-fri-02", 2028) == date(2028, 2, 25)


def test_a_greeting_days_before_belongs_to_the_year_of_the_occasions_own_date() -> None:
    new_year = Occasion("new_year", "new_year", "12-31", days_before=1)
    assert sending_day(new_year, 2026) == date(2026, 12, 30)
    assert occasion_date(new_year, date(2026, 12, 30)) == date(2026, 12, 31)
    assert occasion_date(new_year, date(2026, 12, 31)) is None
    birthday = Occasion("birthday", "birthday", "birthday", days_before=1)
    assert occasion_date(birthday, date(2026, 12, 31)) == date(2027, 1, 1)


def test_29_february_is_celebrated_on_28_february_in_common_years() -> None:
    assert falls_on(date(2027, 2, 28)) == ["02-28", "02-29"]
    assert falls_on(date(2028, 2, 28)) == ["02-28"]
    assert falls_on(date(2028, 2, 29)) == ["02-29"]
    assert date_of("02-29", 2027) == date(2027, 2, 28)


def test_the_fixed_default_occasions_are_russian_public_holidays() -> None:
    for year in (2026, 2027, 2028):
        official = holidays.country_holidays("RU", years=year)
        for code in ("feb23", "mar8"):
            section = next(o for o in DEFAULT_OCCASIONS if o.code == code)
            assert date_of(section.date, year) in official


# The job over a year -----------------------------------------------------------------------


async def test_a_year_day_by_day_gives_each_client_exactly_their_greetings(
    db: Database, clock: FakeClock, settings: Settings
) -> None:
    anna = await client(db, gender="female", birthday=date(1990, 5, 17))
    boris = await client(db, gender="male", first_name="Борис")
    vera = await client(db, gender=None, birthday=date(2000, 12, 31), first_name="Вера")
    gleb = await client(db, gender="male", birthday=date(1970, 7, 1), reachable=False)
    eva = await client(db, gender="female", first_name="Ева")
    await buys_car(db, boris, date(2023, 9, 10))
    await buys_car(db, eva, date(2027, 4, 1))  # this year: no anniversary yet

    runs = Counter[str]()
    for day in days(date(2027, 1, 1), date(2027, 12, 31)):
        _, result = await run_day(db, clock, settings, day)
        runs.update(result.counts)

    assert await greeted(db) == Counter(
        {
            (anna, "new_year"): 1, (anna, "mar8"): 1, (anna, "motorist_day"): 1,
            (anna, "birthday"): 1,
            (boris, "new_year"): 1, (boris, "feb23"): 1, (boris, "motorist_day"): 1,
            (boris, "car_anniversary"): 1,
            (vera, "new_year"): 1, (vera, "motorist_day"): 1, (vera, "birthday"): 1,
            (eva, "new_year"): 1, (eva, "mar8"): 1, (eva, "motorist_day"): 1,
        }
    )  # fmt: skip
    assert await birthday_gifts(db) == Counter({anna: 1, vera: 1, gleb: 1})
    assert runs["queued"] == 14
    assert runs["duplicates"] == 0
    assert runs["skipped: no address"] == 4  # Gleb: new year, 23 Feb, birthday, motorist day
    assert runs["gifts"] == 3
    async with db.sessions() as session:
        keys = set(await session.scalars(select(Message.idempotency_key)))
        when = await session.scalar(
            select(Message.next_attempt_at).where(Message.template == "car_anniversary")
        )
    assert f"occasion:new_year:{vera}:2027" in keys
    assert f"occasion:birthday:{anna}:2027" in keys
    assert when == datetime(2027, 9, 10, 10, tzinfo=MOSCOW)


async def test_8_march_goes_only_to_women_and_23_february_only_to_men(
    db: Database, clock: FakeClock, settings: Settings
) -> None:
    woman = await client(db, gender="female")
    man = await client(db, gender="male", first_name="Борис")
    unknown = await client(db, gender=None, first_name="Саша")

    await run_day(db, clock, settings, date(2027, 2, 23))
    await run_day(db, clock, settings, date(2027, 3, 8))

    assert await greeted(db) == Counter({(man, "feb23"): 1, (woman, "mar8"): 1})
    assert unknown not in {client_id for client_id, _ in await greeted(db)}


@pytest.mark.parametrize(
    ("year", "greeted_on"), [(2027, date(2027, 2, 28)), (2028, date(2028, 2, 29))]
)
async def test_a_29_february_birthday_is_greeted_on_28_february_in_a_common_year(
    db: Database, clock: FakeClock, settings: Settings, year: int, greeted_on: date
) -> None:
    leap = await client(db, gender="female", birthday=date(1996, 2, 29))
    eve = await client(db, gender="male", birthday=date(1990, 2, 28), first_name="Олег")

    by_day = {}
    for day in days(date(year, 2, 26), date(year, 3, 2)):
        _, result = await run_day(db, clock, settings, day)
        by_day[day] = result.counts["birthday: queued"]

    assert by_day[greeted_on] == (2 if year == 2027 else 1)
    assert by_day[date(year, 2, 28)] >= 1  # the 28 February birthday
    assert sum(by_day.values()) == 2
    assert await greeted(db) == Counter({(leap, "birthday"): 1, (eve, "birthday"): 1})
    assert await birthday_gifts(db) == Counter({leap: 1, eve: 1})
    async with db.sessions() as session:
        key = await session.scalar(select(Message.idempotency_key).where(Message.client_id == leap))
    assert key == f"occasion:birthday:{leap}:{year}"


# Once, whatever happens --------------------------------------------------------------------


async def test_a_crash_half_way_and_a_rerun_greet_and_give_the_birthday_bonus_once(
    db: Database, clock: FakeClock, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = with_occasions(settings, batch_size=2)
    born = [
        await client(db, gender="female", birthday=date(1980 + n, 3, 8), first_name=f"Анна{n}")
        for n in range(5)
    ]
    calls = 0

    async def enqueue_then_crash(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 5:  # 8 March's three pages and the first page of birthdays went
            raise ConnectionError("the database went away")
        return await real_enqueue(*args, **kwargs)

    monkeypatch.setattr(occasion_module, "enqueue", enqueue_then_crash)
    with pytest.raises(greetings.GreetingsFailed):
        await run_day(db, clock, settings, date(2027, 3, 8))
    half = await greeted(db)
    assert 0 < sum(half.values()) < 10
    assert sum((await birthday_gifts(db)).values()) < 5

    monkeypatch.setattr(occasion_module, "enqueue", real_enqueue)
    _, rerun = await run_day(db, clock, settings, date(2027, 3, 8))

    assert await greeted(db) == Counter(
        {(c, template): 1 for c in born for template in ("mar8", "birthday")}
    )
    assert await birthday_gifts(db) == Counter({c: 1 for c in born})
    assert rerun.counts["duplicates"] == sum(half.values())
    assert rerun.counts["queued"] == 10 - sum(half.values())

    _, again = await run_day(db, clock, settings, date(2027, 3, 8))
    assert again.counts["queued"] == 0
    assert again.counts["gifts"] == 0
    async with db.sessions() as session, session.begin():
        moment = Moment.of(clock, MOSCOW)
        assert await grant_birthday_bonuses(session, bonus_rules(settings), moment) == []


async def test_the_birthday_bonus_the_command_gave_is_not_given_again_by_the_greeting(
    db: Database, clock: FakeClock, settings: Settings
) -> None:
    born = await client(db, gender="male", birthday=date(1985, 6, 1), first_name="Борис")
    clock.set(datetime(2027, 6, 1, 8, tzinfo=MOSCOW))
    async with db.sessions() as session, session.begin():
        given = await grant_birthday_bonuses(
            session, bonus_rules(settings), Moment.of(clock, MOSCOW)
        )
    assert [moved.client_id for moved in given] == [born]

    _, result = await run_day(db, clock, settings, date(2027, 6, 1))

    assert result.counts["birthday: queued"] == 1
    assert result.counts["gifts"] == 0
    assert await birthday_gifts(db) == Counter({born: 1})


async def test_a_dry_run_writes_nothing_and_lists_who_would_get_what(
    db: Database, clock: FakeClock, settings: Settings
) -> None:
    woman = await client(db, gender="female", birthday=date(1990, 3, 8))
    man = await client(db, gender="male", first_name="Борис")

    ctx, result = await run_day(db, clock, settings, date(2027, 3, 8), dry_run=True)

    assert await greeted(db) == Counter()
    assert await birthday_gifts(db) == Counter()
    assert sorted(ctx.would_send) == sorted(
        [
            f"client #{woman}: mar8 by telegram,sms,email (occasion:mar8:{woman}:2027)",
            f"client #{woman}: birthday by telegram,sms,email (occasion:birthday:{woman}:2027)",
        ]
    )
    assert result.counts["gifts"] == 1
    assert result.counts["queued"] == 2
    assert not any(f"#{man}:" in line for line in ctx.would_send)


# How it goes out ---------------------------------------------------------------------------


async def test_a_greeting_waits_for_ten_in_the_clients_zone_or_goes_at_once_where_ten_passed(
    db: Database, clock: FakeClock, settings: Settings
) -> None:
    moscow = await client(db, gender="female")
    kaliningrad = await client(db, gender="female", timezone="Europe/Kaliningrad")
    vladivostok = await client(db, gender="female", timezone="Asia/Vladivostok")

    await run_day(db, clock, settings, date(2027, 3, 8))

    async with db.sessions() as session:
        rows = dict(
            (await session.execute(select(Message.client_id, Message.next_attempt_at))).all()
        )
    assert rows[moscow] == datetime(2027, 3, 8, 10, tzinfo=MOSCOW)
    assert rows[kaliningrad] == datetime(2027, 3, 8, 10, tzinfo=ZoneInfo("Europe/Kaliningrad"))
    assert rows[vladivostok] == datetime(2027, 3, 8, 9, tzinfo=MOSCOW)  # the run's moment


async def test_an_advertising_greeting_carries_the_way_out_and_a_service_one_does_not(
    db: Database, clock: FakeClock, settings: Settings
) -> None:
    settings = settings.model_copy(
        update={
            "occasion": (
                OccasionSettings(code="mar8", template="mar8", date="03-08"),
                OccasionSettings(code="spring", template="mar8", date="03-08", kind="service"),
            )
        }
    )
    await client(db, gender="female")

    await run_day(db, clock, settings, date(2027, 3, 8))

    async with db.sessions() as session:
        content: dict[str, Any] = dict(
            (await session.execute(select(Message.kind, Message.content))).all()
        )
    assert "/u/" in content["advertising"]["sms"]["text"]
    assert "/u/" not in content["service"]["sms"]["text"]


async def test_a_gift_with_a_greeting_is_given_once_under_the_occasions_reference(
    db: Database, clock: FakeClock, settings: Settings
) -> None:
    settings = settings.model_copy(
        update={
            "occasion": (
                OccasionSettings(code="mar8", template="mar8", date="03-08", gift=Decimal(300)),
            )
        }
    )
    woman = await client(db, gender="female")

    for _ in range(2):
        _, result = await run_day(db, clock, settings, date(2027, 3, 8))

    async with db.sessions() as session:
        gifts = (
            await session.execute(
                select(BonusMovement.client_id, BonusMovement.amount, BonusMovement.external_ref)
            )
        ).all()
    assert [tuple(gift) for gift in gifts] == [(woman, Decimal(300), f"occasion:mar8:{woman}:2027")]
    assert result.counts["gifts"] == 0
    assert result.counts["duplicates"] == 1
