"""Segments against hand-computed fixtures, on SQLite and PostgreSQL: every rule and boundary."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from crm.segments import (
    SegmentContext,
    SegmentError,
    count,
    delete_saved,
    fetch_rows,
    fetch_summary,
    list_saved,
    resolve,
    save_segment,
)
from storage.models import Car, Client, ClientConsent, ClientTag
from tests.support.databases import Database
from tests.support.messaging import add_client, add_visit

TODAY = date(2026, 11, 24)
STAMP = datetime(2026, 1, 1, tzinfo=UTC)


async def car(db: Database, client_id: int, make: str, model: str, year: int, **extra: Any) -> int:
    async with db.sessions() as session, session.begin():
        row = Car(
            client_id=client_id, make=make, model=model, year=year, created_at=STAMP,
            updated_at=STAMP, **extra,
        )  # fmt: skip
        session.add(row)
        await session.flush()
        return row.id


async def members(
    db: Database, name: str, params: dict[str, str] | None = None, today: date = TODAY
) -> list[dict[str, Any]]:
    async with db.sessions() as session:
        sql = await resolve(session, name, params or {}, SegmentContext(today=today))
        rows = await fetch_rows(session, sql)
        assert await count(session, sql) == len({row["client_id"] for row in rows})
        return rows


async def summary(db: Database, name: str, params: dict[str, str] | None = None) -> list[Any]:
    async with db.sessions() as session:
        sql = await resolve(session, name, params or {}, SegmentContext(today=TODAY))
        return await fetch_summary(session, sql)


# ----------------------------------------------------------------------------------- ABC


async def test_abc_puts_a_client_exactly_at_75_percent_in_a(db: Database) -> None:
    # 500 + 250 + 200 + 50 = 1000: running shares 50, 75 (A: at the threshold), 95 (B: at
    # A+B), 100 (C).
    ids = [await add_client(db) for _ in range(4)]
    for client_id, amount in zip(ids, ("500", "249.99", "200", "50"), strict=True):
        await add_visit(db, client_id, date(2026, 6, 1), amount)
    await add_visit(db, ids[1], date(2026, 7, 1), "0.01")  # 250.00 in all: sums are exact
    rows = await members(db, "abc")
    assert [(row["client_id"], row["group"]) for row in rows] == [
        (ids[0], "A"), (ids[1], "A"), (ids[2], "B"), (ids[3], "C"),
    ]  # fmt: skip
    assert [row["measure"] for row in rows] == [Decimal(m) for m in ("500", "250", "200", "50")]
    assert [row["running_share"] for row in rows] == [50.0, 75.0, 95.0, 100.0]
    assert await summary(db, "abc") == [
        {"group": "A", "clients": 2, "measure": Decimal("750.00"), "share": 75.0},
        {"group": "B", "clients": 1, "measure": Decimal("200.00"), "share": 20.0},
        {"group": "C", "clients": 1, "measure": Decimal("50.00"), "share": 5.0},
    ]
    assert [row["client_id"] for row in await members(db, "abc", {"group": "A"})] == ids[:2]
    assert [row["client_id"] for row in await members(db, "abc", {"group": "b,c"})] == ids[2:]


async def test_abc_measures_over_the_period_by_margin_or_visits(db: Database) -> None:
    first, second = await add_client(db), await add_client(db)
    await add_visit(db, first, date(2026, 3, 1), "1000", margin="100")
    await add_visit(db, second, date(2026, 3, 2), "500", margin="400")
    await add_visit(db, second, date(2026, 4, 2), "500")  # no margin known: counts as 0
    await add_visit(db, first, date(2025, 11, 24), "99999")  # a day before the default year
    by_margin = await members(db, "abc", {"measure": "margin", "a": "80", "b": "15"})
    assert [(r["client_id"], r["group"], r["measure"]) for r in by_margin] == [
        (second, "A", Decimal("400.00")), (first, "C", Decimal("100.00")),
    ]  # fmt: skip
    by_visits = await members(db, "abc", {"measure": "visits"})
    assert [(r["client_id"], r["measure"]) for r in by_visits] == [(second, 2), (first, 1)]
    period = await members(db, "abc", {"from": "24.11.2025", "to": "2025-11-30"})
    assert [r["client_id"] for r in period] == [first]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"a": "80", "b": "20", "c": "5"}, "a+b+c must make 100"),
        ({"group": "D"}, "'D' is not one of A, B, C"),
        ({"measure": "profit"}, "is not one of revenue, margin, visits"),
        ({"from": "2026-13-01"}, "from='2026-13-01'"),
        ({"from": "2026-12-01", "to": "2026-01-01"}, "is after"),
        ({"grp": "A"}, "has no parameter 'grp'"),
    ],
)
async def test_abc_refuses_bad_parameters_naming_them(
    db: Database, params: dict[str, str], message: str
) -> None:
    with pytest.raises(SegmentError, match=re.escape(message)):
        await members(db, "abc", params)


# ------------------------------------------------------------------------------- XYZ, BCG


async def test_xyz_groups_by_variation_of_quarterly_revenue(db: Database) -> None:
    steady, seasonal, once = [await add_client(db) for _ in range(3)]
    # The default window: the 8 whole quarters before 2026-Q4, i.e. 2024-Q4 .. 2026-Q3.
    quarters = [date(2024, 11, 1), date(2025, 2, 1), date(2025, 5, 1), date(2025, 8, 1),
                date(2025, 11, 1), date(2026, 2, 1), date(2026, 5, 1), date(2026, 8, 1)]  # fmt: skip
    for day in quarters:
        await add_visit(db, steady, day, "1000")
    for day in quarters[::2]:  # every other quarter, same sum: CV = 1.0 (Y)
        await add_visit(db, seasonal, day, "3000")
    await add_visit(db, once, quarters[3], "50000")  # one quarter of eight: CV = sqrt(7)
    await add_visit(db, once, date(2026, 11, 1), "50000")  # this quarter is not whole: left out
    rows = {row["client_id"]: row for row in await members(db, "xyz")}
    assert {cid: (rows[cid]["group"], rows[cid]["cv"]) for cid in rows} == {
        steady: ("X", 0.0), seasonal: ("Y", 1.0), once: ("Z", 2.65),
    }  # fmt: skip
    assert rows[seasonal]["active_periods"] == 4
    assert rows[seasonal]["periods"] == 8
    assert [r["client_id"] for r in await members(db, "xyz", {"group": "Z"})] == [once]
    at_y = await members(db, "xyz", {"x": "0.5", "y": "1.0"})  # CV exactly at y: still Y
    assert {r["client_id"]: r["group"] for r in at_y}[seasonal] == "Y"
    strict = await members(db, "xyz", {"x": "0.5", "y": "0.9"})
    assert {r["client_id"]: r["group"] for r in strict}[seasonal] == "Z"


async def test_bcg_names_cells_and_compares_with_the_window_before(db: Database) -> None:
    star, cow, dog = [await add_client(db) for _ in range(3)]
    window = [date(2026, 2, 1), date(2026, 5, 1), date(2026, 8, 1)]
    # Two quarters as the window: 2026-Q2 and 2026-Q3; the window before: Q4 2025, Q1 2026.
    await add_visit(db, star, window[2], "10000")  # A, one quarter of two: CV 1.0 -> Z at x=y=0.5
    for day in window[1:]:
        await add_visit(db, cow, day, "4000")  # A (8000 of 19000 crosses 75 %? see below), X
    await add_visit(db, dog, window[1], "1000")  # C, Z
    # Before, the star was alone: 100 % of the revenue is past A's 75 % and B's 95 %, so C;
    # one quarter of two is CV 1.0, so Z: a dog then.
    await add_visit(db, star, date(2025, 12, 1), "10000")
    # Running shares: star 10000/19000 = 52.6 % (A), cow 18000/19000 = 94.7 % (B), dog C.
    params = {"periods": "2", "x": "0.5", "y": "0.5"}
    rows = {r["client_id"]: r for r in await members(db, "bcg", params)}
    assert {cid: (r["cell"], r["quadrant"], r["previous"]) for cid, r in rows.items()} == {
        star: ("AZ", "stars", "dogs"), cow: ("BX", "questions", "new"), dog: ("CZ", "dogs", "new"),
    }  # fmt: skip
    only = await members(db, "bcg", {**params, "quadrant": "dogs"})
    assert [r["client_id"] for r in only] == [dog]
    moved = await members(db, "bcg", {**params, "previous": "new"})
    assert sorted(r["client_id"] for r in moved) == sorted([cow, dog])


# ------------------------------------------------------------------------- lost, lifecycle


async def test_lost_counts_from_the_day_after_the_limit(db: Database) -> None:
    kept, lost, many, never = [await add_client(db) for _ in range(4)]
    await add_visit(db, kept, date(2025, 11, 24), "100")  # exactly 365 days ago: not lost yet
    for day in (date(2024, 1, 10), date(2024, 6, 1), date(2025, 11, 23)):  # 366 days ago
        await add_visit(db, lost, day, "1000")
    for month in range(1, 5):  # four visits, the last in April 2025
        await add_visit(db, many, date(2025, month, 1), "250.50")
    rows = await members(db, "lost")
    assert [(r["client_id"], r["group"], r["visits"], r["last_visit"], r["days_since"])
            for r in rows] == [
        (lost, "1-3", 3, date(2025, 11, 23), 366),
        (many, "4-7", 4, date(2025, 4, 1), 602),
    ]  # fmt: skip
    assert rows[0]["amount"] == Decimal("3000.00")
    assert rows[1]["amount"] == Decimal("1002.00")
    assert await summary(db, "lost") == [
        {"group": "1-3", "clients": 1, "amount": Decimal("3000.00")},
        {"group": "4-7", "clients": 1, "amount": Decimal("1002.00")},
    ]
    assert {r["client_id"] for r in await members(db, "lost", {"days": "364"})} == {
        kept, lost, many,
    }  # fmt: skip
    assert [r["client_id"] for r in await members(db, "lost", {"visits": "4-7"})] == [many]
    assert never not in {r["client_id"] for r in rows}


async def test_lifecycle_stages(db: Database) -> None:
    potential, one_time, regular, lost = [await add_client(db) for _ in range(4)]
    await add_visit(db, one_time, date(2026, 10, 1), "100")
    await add_visit(db, regular, date(2026, 1, 1), "100")
    await add_visit(db, regular, date(2026, 9, 1), "100")
    await add_visit(db, lost, date(2025, 1, 1), "100")
    await add_visit(db, lost, date(2025, 2, 1), "100")
    await add_visit(db, potential, date(2026, 12, 1), "100")  # after the date: not yet a visit
    stages = {r["client_id"]: r["stage"] for r in await members(db, "lifecycle")}
    assert stages == {
        potential: "potential", one_time: "one_time", regular: "regular", lost: "lost",
    }  # fmt: skip
    assert await summary(db, "lifecycle") == [
        {"stage": s, "clients": 1} for s in ("potential", "one_time", "regular", "lost")
    ]
    regulars = await members(db, "lifecycle", {"stage": "regular,one_time"})
    assert sorted(r["client_id"] for r in regulars) == sorted([one_time, regular])


async def test_no_service_history_is_a_sale_without_a_later_service(db: Database) -> None:
    bought, serviced, flagged, recent = [await add_client(db) for _ in range(4)]
    await add_visit(db, bought, date(2025, 5, 1), "2000000", kind="sale")
    await add_visit(db, serviced, date(2025, 5, 1), "2000000", kind="sale")
    await add_visit(db, serviced, date(2025, 11, 1), "15000", kind="maintenance")
    await car(db, flagged, "Kia", "Rio", 2024, sold_here=True)
    await add_visit(db, recent, date(2026, 11, 1), "1500000", kind="sale")
    rows = await members(db, "no_service_history")
    assert {r["client_id"] for r in rows} == {bought, flagged, recent}
    older = await members(db, "no_service_history", {"days": "30"})  # bought 30+ days ago
    assert {r["client_id"] for r in older} == {bought, flagged}


# ----------------------------------------------------------------------- birthdays, filter


async def _born(db: Database, birthday: date) -> int:
    client_id = await add_client(db)
    async with db.sessions() as session, session.begin():
        (await session.get_one(Client, client_id)).birthday = birthday
    return client_id


async def test_birthdays_today_within_and_on_29_february(db: Database) -> None:
    today = await _born(db, date(1980, 11, 24))
    in_a_week = await _born(db, date(1990, 12, 1))
    new_year = await _born(db, date(2000, 1, 2))
    leap = await _born(db, date(2000, 2, 29))
    await _born(db, date(1985, 11, 23))  # yesterday
    assert [(r["client_id"], r["turns"]) for r in await members(db, "birthdays")] == [(today, 46)]
    week = await members(db, "birthdays", {"within": "7"})
    assert [(r["client_id"], r["on"], r["in_days"]) for r in week] == [
        (today, date(2026, 11, 24), 0), (in_a_week, date(2026, 12, 1), 7),
    ]  # fmt: skip
    across = await members(db, "birthdays", {"within": "39"})  # to 2 January 2027
    assert across[-1]["client_id"] == new_year
    assert across[-1]["turns"] == 27
    # 2027 is not a leap year: 29 February is celebrated on 28 February.
    feb = await members(db, "birthdays", today=date(2027, 2, 28))
    assert [(r["client_id"], r["on"], r["turns"]) for r in feb] == [(leap, date(2027, 2, 28), 27)]
    # 2028 is: on the 28th nobody, on the 29th the leap-day client.
    assert await members(db, "birthdays", today=date(2028, 2, 28)) == []
    assert [r["client_id"] for r in await members(db, "birthdays", today=date(2028, 2, 29))] == [
        leap
    ]


async def test_filter_combines_every_condition(db: Database) -> None:
    anna = await add_client(db, first_name="Анна", gender="female", phone="+79000000001", ads=True)
    olga = await add_client(db, first_name="Ольга", gender="female", telegram_id=7, ads=False)
    ivan = await add_client(db, gender="male", email="ivan@example.ru", ads=None)
    async with db.sessions() as session, session.begin():
        (await session.get_one(Client, anna)).birthday = date(1990, 11, 25)  # 35 tomorrow
        (await session.get_one(Client, olga)).birthday = date(1980, 11, 24)  # 46 today
        session.add(ClientTag(client_id=ivan, tag="fleet"))
        session.add(ClientConsent(client_id=ivan, channel="email", purpose="advertising",
                                  granted=True, changed_at=STAMP, source="test"))  # fmt: skip
    await car(db, anna, "KIA", "Rio", 2016)
    await car(db, olga, "Hyundai", "Solaris", 2012)
    await car(db, ivan, "Kia", "Sportage", 2021)
    await add_visit(db, anna, date(2026, 10, 1), "100000")
    await add_visit(db, ivan, date(2025, 1, 1), "30000.50")

    async def ids(**params: str) -> set[int]:
        return {r["client_id"] for r in await members(db, "filter", params)}

    assert await ids(gender="ж") == {anna, olga}
    assert await ids(age="35-45") == {anna}  # Anna is 35 (36 tomorrow), Olga 46 today
    assert await ids(age="-35") == {anna}
    assert await ids(age="36-46") == {olga}
    assert await ids(make="kia") == {anna, ivan}
    assert await ids(make="Kia", model="Rio") == {anna}
    assert await ids(make="Kia", year="2020-") == {ivan}
    assert await ids(spend="30000.50-100000") == {anna, ivan}
    assert await ids(spend="-0") == {olga}
    assert await ids(last_visit_after="2025-01-01") == {anna}
    assert await ids(last_visit_before="2025-01-02") == {ivan}
    assert await ids(tag="fleet,vip") == {ivan}
    assert await ids(channel="telegram,email") == {olga, ivan}
    assert await ids(advertising="yes") == {anna, ivan}  # Ivan: his e-mail row says yes
    assert await ids(advertising="no") == {olga}
    assert await ids(channel="sms", advertising="yes") == {anna}
    with pytest.raises(SegmentError, match="the range '45-30' runs backwards"):
        await ids(age="45-30")
    with pytest.raises(SegmentError, match="gender='x'"):
        await ids(gender="x")


# --------------------------------------------------------------------- expressions, saving


async def test_segments_combine_with_and_or_not(db: Database) -> None:
    big, mid, small, gone = [await add_client(db) for _ in range(4)]
    await add_visit(db, big, date(2026, 5, 1), "7000")  # 70 %: A
    await add_visit(db, mid, date(2026, 5, 1), "2000")  # 90 %: B
    await add_visit(db, small, date(2026, 5, 1), "1000")  # C
    await add_visit(db, gone, date(2024, 5, 1), "50000")

    async def ids(expression: str) -> set[int]:
        return {r["client_id"] for r in await members(db, expression)}

    assert await ids("abc(group=A)") == {big}
    assert await ids("abc(group=A) or lost") == {big, gone}
    assert await ids("not abc(group=A) and not lost") == {mid, small}
    assert await ids("NOT (abc(group=A) OR lost(days=365, visits=1-3))") == {mid, small}
    # One visit each: running shares 33, 67 (A) and 100 % (C).
    assert await ids("abc(group=A,B, measure=visits)") == {big, mid}
    with pytest.raises(SegmentError, match="'\\)' expected at character"):
        await ids("(abc or lost")
    with pytest.raises(SegmentError, match="unknown segment 'vip'"):
        await ids("abc and vip")
    async with db.sessions() as session:
        with pytest.raises(SegmentError, match="k=v parameters go with a single segment"):
            await resolve(session, "abc or lost", {"days": "5"}, SegmentContext(today=TODAY))


async def test_saved_segments_keep_parameters_and_refuse_cycles(db: Database) -> None:
    big, small = await add_client(db), await add_client(db)
    await add_visit(db, big, date(2026, 5, 1), "7000")  # 70 %: A
    await add_visit(db, small, date(2026, 5, 1), "3000")
    context = SegmentContext(today=TODAY)
    async with db.sessions() as session, session.begin():
        info = await save_segment(
            session, "ключевые", "abc", {"group": "A"}, context, now=STAMP, description="VIP"
        )
        assert info.text == "abc group=A"
        await save_segment(session, "others", "not ключевые", {}, context, now=STAMP)
    assert [r["client_id"] for r in await members(db, "ключевые")] == [big]
    assert [r["client_id"] for r in await members(db, "others")] == [small]
    async with db.sessions() as session:
        with pytest.raises(SegmentError, match="refers to itself: ключевые -> others -> ключевые"):
            async with session.begin():
                await save_segment(session, "ключевые", "others", {}, context, now=STAMP)
        with pytest.raises(SegmentError, match="built-in segment"):
            await save_segment(session, "lost", "abc", {}, context, now=STAMP)
        with pytest.raises(SegmentError, match="no parameter 'grp'"):
            await save_segment(session, "bad", "abc", {"grp": "A"}, context, now=STAMP)
        with pytest.raises(SegmentError, match="takes no others"):
            await resolve(session, "ключевые", {"group": "B"}, context)
    async with db.sessions() as session, session.begin():
        with pytest.raises(SegmentError, match="used by others"):
            await delete_saved(session, "ключевые")
        await delete_saved(session, "others")
        await delete_saved(session, "ключевые")
        assert await list_saved(session) == []
