"""The service funnel on a hand-made week: from calls to revenue, by branch and by source,
and `autoloyal report funnel` printing it as a table, CSV and JSON."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.booking import (
    BookingRequest,
    BookingRules,
    BranchHours,
    Service,
    act,
    book,
    complete_by_visit,
    reschedule,
)
from crm.booking.funnel import FunnelReport, service_funnel
from crm.branches import sync_branches
from crm.clock import Moment
from crm.errors import NotFound
from storage.booking import InboundContact
from storage.models import Branch, Client, Visit
from tests.conftest import NOW
from tests.support.databases import Database, copy_sqlite, open_database
from tests.test_cli import autoloyal

MOSCOW = ZoneInfo("Europe/Moscow")
MONDAY, SUNDAY = date(2026, 11, 16), date(2026, 11, 22)
"""The hand-made week, the one before the fake clock's Tuesday."""
RULES = BookingRules(
    services={"to": Service("to", "ТО", timedelta(hours=1), "maintenance")},
    branches={
        "main": BranchHours("main", "Автосервис", MOSCOW, bays=2),
        "south": BranchHours("south", "Юг", MOSCOW, bays=2),
    },
)
INTERNET, FRIENDS, PASSING = "Интернет-поиск", "Рекомендация знакомых", "Проезжал мимо"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in Moscow as UTC."""
    return datetime.combine(day, time(hour, minute), MOSCOW).astimezone(UTC)


def moment(day: date, hour: int = 8) -> Moment:
    return Moment(at(day, hour), day)


def day(n: int) -> date:
    """The week's day n: 0 is Monday 16 November."""
    return MONDAY + timedelta(days=n)


@dataclass
class Week:
    clients: dict[str, int]
    branches: dict[str, int]


async def build_week(session: AsyncSession) -> Week:
    """The week, told as it happened.

    Contacts: 10 service contacts (9 calls, 1 walk-in) and 1 sales call; 3 more outside
    the week, one a minute before Monday in Moscow.
    Requests made in the week (6): R1 main bot, confirmed, arrived, completed by a work
    order; R2 main bot, moved by staff to another day (counted once), arrived, completed;
    R3 main staff, a no-show; R4 south api, arrived, no work order; R5 south mini_app,
    completed by a work order straight from confirmed; R6 main bot, declined.
    Before the week: R0 (api), due Monday, arrived; R8, due Tuesday, cancelled.
    Work orders: 3 complete R1, R2 and R5; a walk-in without a booking; one after the week.
    """
    session.add(Branch(code="south", name="Юг", created_at=NOW))
    await session.flush()
    branches = {code: id_ for id_, code in (await session.execute(_BRANCHES)).all()}
    clients = {}
    for n, name in enumerate(("r0", "r1", "r2", "r3", "r4", "r5", "r6", "r8", "walk")):
        row = Client(first_name=name, phone=f"+7903000000{n}", created_at=NOW, updated_at=NOW)
        session.add(row)
        await session.flush()
        clients[name] = row.id
    await _contacts(session, branches)

    async def booked(who: str, branch: str, source: str, start: datetime, when: Moment) -> int:
        request = BookingRequest(clients[who], "to", start, source, branch=branch)
        view = await book(session, RULES, request, when, confirmed=source == "staff" or None)
        return view.id

    last_week = moment(date(2026, 11, 12))
    r0 = await booked("r0", "main", "api", at(day(0), 10), last_week)
    await act(session, RULES, r0, "confirm", last_week, actor="Анна")
    await act(session, RULES, r0, "arrive", moment(day(0), 10), actor="Анна")
    r8 = await booked("r8", "main", "bot", at(day(1), 12), last_week)
    await act(session, RULES, r8, "cancel", moment(day(0)), actor="client")

    monday = moment(day(0), 10)
    r1 = await booked("r1", "main", "bot", at(day(1), 10), monday)
    r2 = await booked("r2", "main", "bot", at(day(2), 10), monday)
    r3 = await booked("r3", "main", "staff", at(day(3), 14), monday)
    r4 = await booked("r4", "south", "api", at(day(4), 10), monday)
    r5 = await booked("r5", "south", "mini_app", at(day(4), 12), monday)
    r6 = await booked("r6", "main", "bot", at(day(5), 10), moment(day(1)))
    for confirmed in (r1, r2, r4, r5):
        await act(session, RULES, confirmed, "confirm", monday, actor="Анна")
    await act(session, RULES, r6, "decline", moment(day(1), 9), actor="Анна")
    r2_moved = await reschedule(
        session, RULES, r2, at(day(3), 11), moment(day(1)), actor="Анна", source="staff"
    )
    await act(session, RULES, r1, "arrive", moment(day(1), 10), actor="Анна")
    await act(session, RULES, r2_moved.id, "arrive", moment(day(3), 11), actor="Анна")
    await act(session, RULES, r3, "no_show", moment(day(3), 16), actor="Анна")
    await act(session, RULES, r4, "arrive", moment(day(4), 10), actor="Анна")

    async def work_order(who: str, branch: str, on: date, amount: str) -> None:
        visit = Visit(
            client_id=clients[who], branch_id=branches[branch], visited_on=on,
            amount=Decimal(amount), kind="maintenance", created_at=NOW, updated_at=NOW,
        )  # fmt: skip
        session.add(visit)
        await session.flush()
        await complete_by_visit(session, RULES, clients[who], visit.id, on, moment(on, 18))

    await work_order("r1", "main", day(1), "12000.00")
    await work_order("r2", "main", day(3), "8500.50")
    await work_order("r5", "south", day(4), "4000.00")
    await work_order("walk", "main", day(5), "1500.00")
    await work_order("r0", "main", day(7), "999.00")  # Monday after the week
    return Week(clients, branches)


async def _contacts(session: AsyncSession, branches: dict[str, int]) -> None:
    monday_starts = at(MONDAY, 0)
    plan = [
        # (minutes after Monday 00:00 Moscow, channel, purpose, source, outcome, branch)
        (0, "call", "service", INTERNET, "booked", "main"),  # the week's first minute
        (60 * 10, "call", "service", INTERNET, "booked", "main"),
        (60 * 11, "call", "service", INTERNET, "booked", "main"),
        (60 * 12, "call", "service", FRIENDS, "booked", "main"),
        (60 * 13, "call", "service", None, "not_booked", "main"),
        (60 * 34, "call", "service", None, "not_booked", "main"),
        (60 * 35, "walk_in", "service", PASSING, "booked", "main"),
        (60 * 36, "call", "sales", None, "information", "main"),
        (60 * 58, "call", "service", INTERNET, "booked", "south"),
        (60 * 59, "call", "service", FRIENDS, "information", "south"),
        (60 * 24 * 7 - 1, "call", "service", FRIENDS, "information", "south"),  # Sunday 23:59
        (-1, "call", "service", INTERNET, "booked", "main"),  # Sunday before, 23:59
        (60 * 24 * 7, "call", "service", INTERNET, "booked", "main"),  # Monday after
        (60 * 24 * 7 + 1, "walk_in", "service", INTERNET, "booked", "south"),
    ]
    for minutes, channel, purpose, source, outcome, branch in plan:
        session.add(
            InboundContact(
                happened_at=monday_starts + timedelta(minutes=minutes), channel=channel,
                purpose=purpose, source=source, outcome=outcome, branch_id=branches[branch],
                created_at=NOW,
            )
        )  # fmt: skip
    await session.flush()


_BRANCHES = select(Branch.id, Branch.code)


async def week_funnel(db: Database, branch: str | None = None) -> FunnelReport:
    async with db.sessions() as session, session.begin():
        await build_week(session)
    async with db.sessions() as session:
        return await service_funnel(session, MONDAY, SUNDAY, MOSCOW, NOW, branch=branch)


async def test_the_week_from_calls_to_revenue(db: Database) -> None:
    report = await week_funnel(db)

    total = report.total
    assert (report.first, report.last, report.branch) == (MONDAY, SUNDAY, None)
    assert total.service_contacts == 10  # from Monday 00:00 to Sunday 23:59 in Moscow
    assert total.calls == 10  # 9 service calls (the walk-in is not one) and the sales call
    assert total.requests == 6  # R2 and its move are one request; R0 and R8 came before
    assert total.confirmed == 5  # all but the declined R6
    assert total.arrived == 4  # R1, R2 (after its move), R4, R5 (completed straight)
    assert (total.no_show, total.cancelled, total.declined) == (1, 0, 1)  # a move is no cancel
    assert total.expected == 6  # R0, R1, R2 moved, R3, R4, R5; not R8 (cancelled), not R6
    assert total.attended == 5  # all but R3
    assert (total.work_orders, total.booked_work_orders) == (4, 3)
    assert total.revenue == Decimal("26000.50")
    assert total.booked_revenue == Decimal("24500.50")
    assert total.booking_rate == 0.6
    assert total.attendance_rate == pytest.approx(5 / 6)
    assert total.calls_per_visit == 2.5


async def test_by_branch_each_branch_has_its_own_funnel(db: Database) -> None:
    report = await week_funnel(db)

    main, south = report.by_branch
    assert (main.code, south.code) == ("main", "south")
    m, s = main.funnel, south.funnel
    assert (m.service_contacts, m.calls, m.requests, m.confirmed, m.arrived) == (7, 7, 4, 3, 2)
    assert (m.no_show, m.declined, m.expected, m.attended) == (1, 1, 4, 3)
    assert (m.work_orders, m.booked_work_orders) == (3, 2)
    assert (m.revenue, m.booked_revenue) == (Decimal("22000.50"), Decimal("20500.50"))
    assert m.booking_rate == pytest.approx(4 / 7)
    assert m.attendance_rate == 0.75
    assert (s.service_contacts, s.calls, s.requests, s.confirmed, s.arrived) == (3, 3, 2, 2, 2)
    assert (s.expected, s.attended, s.work_orders, s.revenue) == (2, 2, 1, Decimal("4000.00"))
    assert s.booking_rate == pytest.approx(2 / 3)
    assert (s.attendance_rate, s.calls_per_visit) == (1.0, 3.0)
    assert m + s == report.total


async def test_one_branch_alone(db: Database) -> None:
    report = await week_funnel(db, branch="south")

    assert report.branch == "south"
    assert [row.code for row in report.by_branch] == ["south"]
    assert report.total == report.by_branch[0].funnel
    assert (report.total.requests, report.total.work_orders) == (2, 1)
    assert [(s.source, s.requests) for s in report.by_source] == [("api", 1), ("mini_app", 1)]


async def test_by_source_a_request_keeps_the_door_it_came_through(db: Database) -> None:
    report = await week_funnel(db)

    rows = {
        s.source: (
            s.requests,
            s.confirmed,
            s.arrived,
            s.no_show,
            s.declined,
            s.expected,
            s.attended,
        )
        for s in report.by_source
    }
    assert list(rows) == ["bot", "staff", "api", "mini_app"]
    assert rows["bot"] == (3, 2, 2, 0, 1, 2, 2)  # R2 moved by staff stays a bot request
    assert rows["staff"] == (1, 1, 0, 1, 0, 1, 0)
    assert rows["api"] == (1, 1, 1, 0, 0, 2, 2)  # R0 from last week was due this week
    assert rows["mini_app"] == (1, 1, 1, 0, 0, 1, 1)
    assert report.by_source[1].attendance_rate == 0.0


async def test_by_contact_source_how_they_heard_of_us(db: Database) -> None:
    report = await week_funnel(db)

    rows = [(c.source, c.service_contacts, c.booked, c.calls) for c in report.by_contact_source]
    assert rows == [
        (INTERNET, 4, 4, 4),
        (FRIENDS, 3, 1, 3),
        (PASSING, 1, 1, 0),
        (None, 2, 0, 3),  # not asked last; the sales call counts as a call only
    ]
    assert report.by_contact_source[1].booking_rate == pytest.approx(1 / 3)


async def test_a_booking_later_today_is_not_yet_missed(db: Database) -> None:
    today = NOW.astimezone(MOSCOW).date()
    async with db.sessions() as session, session.begin():
        client = Client(first_name="x", phone="+79030000099", created_at=NOW, updated_at=NOW)
        session.add(client)
        await session.flush()
        request = BookingRequest(client.id, "to", at(today, 15), "bot", branch="main")
        await book(session, RULES, request, Moment(NOW, today), confirmed=True)
    async with db.sessions() as session:
        report = await service_funnel(session, today, today, MOSCOW, NOW)

    assert (report.total.requests, report.total.confirmed) == (1, 1)
    assert report.total.expected == 0
    assert report.total.attendance_rate is None
    assert report.total.booking_rate is None  # no service contacts
    assert report.total.calls_per_visit is None


async def test_an_unknown_branch_is_named(db: Database) -> None:
    async with db.sessions() as session:
        with pytest.raises(NotFound, match="no branch 'north'") as caught:
            await service_funnel(session, MONDAY, SUNDAY, MOSCOW, NOW, branch="north")
    assert caught.value.field == "branch"


# --- autoloyal report funnel -----------------------------------------------------------------

WEEK_ARGS = ("report", "funnel", "--from", "2026-11-16", "--to", "22.11.2026")


@pytest.fixture(scope="module")
def dealer(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Path:
    folder = tmp_path_factory.mktemp("funnel")
    url = copy_sqlite(sqlite_template, folder / "autoloyal.db")

    async def fill() -> None:
        async with (
            open_database(url) as database,
            database.sessions() as session,
            session.begin(),
        ):
            await sync_branches(session, (), company_name="Автосервис", now=NOW)
            await build_week(session)

    asyncio.run(fill())
    return folder


def test_the_funnel_as_a_table(dealer: Path) -> None:
    result = autoloyal(dealer, *WEEK_ARGS)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "service funnel 2026-11-16 .. 2026-11-22, all branches"
    assert any(
        line.split()[:3] == ["booking", "requests", "6"] and "booking rate 60.0%" in line
        for line in lines
    )
    assert any("attendance rate 83.3%" in line for line in lines)
    assert any(line.split()[:3] == ["revenue", "26", "000.50"] for line in lines)
    assert "calls per visit 2.50" in result.stdout
    for title in ("by branch", "by booking source", "by contact source"):
        assert title in lines
    assert "Интернет-поиск" in result.stdout
    assert "(not asked)" in result.stdout


def test_the_funnel_as_csv(dealer: Path) -> None:
    result = autoloyal(dealer, *WEEK_ARGS, "--format", "csv")

    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(row["group"], row["name"]) for row in rows] == [
        ("total", ""), ("branch", "main"), ("branch", "south"), ("source", "bot"),
        ("source", "staff"), ("source", "api"), ("source", "mini_app"),
        ("contact_source", INTERNET), ("contact_source", FRIENDS),
        ("contact_source", PASSING), ("contact_source", ""),
    ]  # fmt: skip
    total = rows[0]
    assert (total["service_contacts"], total["requests"], total["arrived"]) == ("10", "6", "4")
    assert (total["revenue"], total["booking_rate"]) == ("26000.50", "0.6")
    assert (total["attendance_rate"], total["calls_per_visit"]) == ("0.8333", "2.5")
    assert rows[3]["work_orders"] == ""  # not a figure of a booking source
    assert (rows[7]["booked"], rows[7]["booking_rate"]) == ("4", "1.0")


def test_the_funnel_as_json(dealer: Path) -> None:
    result = autoloyal(dealer, *WEEK_ARGS, "--branch", "main", "--format", "json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["from"], document["to"], document["branch"]) == (
        "2026-11-16", "2026-11-22", "main",
    )  # fmt: skip
    total = document["total"]
    assert total["requests"] == 4
    assert total["booking_rate"] == 0.5714
    assert total["attendance_rate"] == 0.75
    assert total["revenue"] == "22000.50"
    assert total["booked_revenue"] == "20500.50"
    assert [row["branch"] for row in document["by_branch"]] == ["main"]
    assert document["by_source"][0] == {
        "source": "bot", "requests": 3, "confirmed": 2, "arrived": 2, "no_show": 0,
        "cancelled": 0, "declined": 1, "expected": 2, "attended": 2, "attendance_rate": 1.0,
    }  # fmt: skip


def test_without_dates_the_last_30_days_to_today(dealer: Path) -> None:
    result = autoloyal(dealer, "report", "funnel", "--format", "json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    first, last = date.fromisoformat(document["from"]), date.fromisoformat(document["to"])
    assert (last - first).days == 29
    assert last == datetime.now(MOSCOW).date()  # the command runs on the real clock


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "2026-13-01"), "autoloyal: --from '2026-13-01': no such date"),
        (("--from", "вчера"), "autoloyal: --from 'вчера': not a date"),
        (
            ("--from", "2026-11-22", "--to", "2026-11-16"),
            "autoloyal: --from 2026-11-22 is after --to 2026-11-16",
        ),
        (("--branch", "north"), "autoloyal: --branch 'north': no such branch"),
    ],
)
def test_mistakes_are_one_line_naming_the_option_and_exit_code_2(
    dealer: Path, args: tuple[str, ...], message: str
) -> None:
    result = autoloyal(dealer, "report", "funnel", *args)

    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
