"""The integration API as the dealer's system uses it, over HTTP, on SQLite and PostgreSQL.

The clock stands at 09:00 in Moscow on 2026-11-24; the default program applies: tiers
Базовый 3 % / Серебряный 5 % from 50 000 / Золотой 7 % from 150 000, bonuses live 365
days, pay at most 30 % of a bill, and a referral gives both sides 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from autoloyal.api.openapi import OPERATIONS
from crm.clock import Moment
from scheduler.base import JobContext, JobResult
from scheduler.jobs import surveys
from storage.bonuses import DiscountCard
from storage.models import Car, Client, OdometerReading
from storage.outbox import Message
from tests.support.api import TOKEN, ApiClient, api_settings, serve_api
from tests.support.clock import FakeClock
from tests.support.databases import Database

TODAY = "2026-11-24"
IVAN = {"full_name": "Смирнов Иван Петрович", "phone": "8 903 525-45-60"}
IVAN_PHONE = "+79035254560"
OLGA = {"full_name": "Кузнецова Ольга Сергеевна", "phone": "+7 916 111-22-33"}
BASE = {
    "name": "Базовый",
    "accrual_percent": "3",
    "discount_percent": "0",
    "spend": "0.00",
    "pinned": False,
    "next": "Серебряный",
    "to_next": "50000.00",
}


@pytest.fixture
async def api(db: Database, clock: FakeClock) -> AsyncIterator[ApiClient]:
    async with serve_api(db, clock) as client:
        yield client


@pytest.fixture
async def ivan(api: ApiClient) -> int:
    """Client C1 (Иван, with a phone to invite him by) and his car K1; returns his id."""
    created = await api.put("/clients/C1", IVAN)
    car = await api.put("/cars/K1", {"owner": "C1", "make": "Kia", "model": "Rio"})
    assert (created.status, car.status) == (201, 201), (created.body, car.body)
    client_id: int = created.body["id"]
    return client_id


@pytest.fixture
async def olga(api: ApiClient) -> int:
    """Client C2, another client of the same service."""
    created = await api.put("/clients/C2", OLGA)
    assert created.status == 201, created.body
    client_id: int = created.body["id"]
    return client_id


def work_order(number: str, amount: Any, **fields: Any) -> dict[str, Any]:
    """A closed work order of Иван's (C1) dated today; `fields` add or override."""
    return {"external_id": number, "client": "C1", "visited_on": TODAY, "amount": amount} | fields


async def earn(api: ApiClient, amount: str, *, number: str = "WO-0", client: str = "C1") -> None:
    """A work order paid on 1 November, so the client has 3 % of `amount` to spend."""
    posted = await api.post(
        "/visits", work_order(number, amount, client=client, visited_on="2026-11-01")
    )
    assert posted.status == 201, posted.body


async def a_client_from_the_bot(db: Database, *, phone: str) -> int:
    """A client who came through the Telegram bot: a chat and a phone, no external id."""
    stamp = datetime(2026, 10, 1, tzinfo=UTC)
    async with db.sessions() as session, session.begin():
        client = Client(
            first_name="Иван", phone=phone, telegram_id=5001, created_at=stamp, updated_at=stamp
        )
        session.add(client)
        await session.flush()
        return client.id


async def count(db: Database, column: Any) -> int:
    """How many rows the column's table holds."""
    async with db.sessions() as session:
        return int(await session.scalar(select(func.count(column))) or 0)


def error(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


# --------------------------------------------------------------------------------- clients


async def test_a_new_client_is_created_with_201_and_the_phone_in_e164(api: ApiClient) -> None:
    answer = await api.put("/clients/C1", IVAN)

    assert answer.status == 201
    assert answer.body == {
        "id": 1,
        "external_id": "C1",
        "full_name": "Смирнов Иван Петрович",
        "phone": IVAN_PHONE,
        "email": None,
        "birthday": None,
        "gender": "male",
        "card": None,
        "tier": BASE,
        "balance": "0.00",
    }


async def test_putting_a_known_client_again_updates_them_with_200(
    api: ApiClient, ivan: int
) -> None:
    answer = await api.put("/clients/C1", {"full_name": "Смирнов Иван Павлович"})

    assert answer.status == 200
    assert (answer.body["id"], answer.body["full_name"]) == (ivan, "Смирнов Иван Павлович")


async def test_fields_left_out_of_an_update_are_kept(api: ApiClient, ivan: int) -> None:
    await api.put("/clients/C1", {"birthday": "1980-05-01", "gender": "М"})

    answer = await api.put("/clients/C1", {"email": " Ivan.Smirnov@Example.com "})

    assert answer.status == 200
    assert answer.body | {"tier": None} == {
        "id": ivan,
        "external_id": "C1",
        "full_name": "Смирнов Иван Петрович",
        "phone": IVAN_PHONE,
        "email": "ivan.smirnov@example.com",
        "birthday": "1980-05-01",
        "gender": "male",
        "card": None,
        "tier": None,
        "balance": "0.00",
    }


async def test_a_phone_held_by_a_client_with_another_external_id_is_a_409_naming_phone(
    api: ApiClient, db: Database, ivan: int
) -> None:
    answer = await api.put("/clients/C2", {"full_name": "Петров Пётр", "phone": "+7 903 5254560"})

    assert answer.status == 409
    assert answer.body == error("conflict", f"phone {IVAN_PHONE} belongs to client 'C1'", "phone")
    assert await count(db, Client.id) == 1


async def test_a_bot_client_without_external_id_is_adopted_by_phone(
    api: ApiClient, db: Database
) -> None:
    bot_client = await a_client_from_the_bot(db, phone=IVAN_PHONE)

    answer = await api.put("/clients/C1", IVAN)

    assert answer.status == 200
    assert (answer.body["id"], answer.body["external_id"]) == (bot_client, "C1")
    assert answer.body["full_name"] == "Смирнов Иван Петрович"
    assert await count(db, Client.id) == 1


async def test_a_card_sent_with_the_client_is_issued_to_them(api: ApiClient) -> None:
    answer = await api.put("/clients/C1", IVAN | {"card": "2000 0012-34"})

    assert answer.status == 201
    assert answer.body["card"] == {"number": "2000001234", "state": "issued", "tier": None}


async def test_another_card_number_replaces_the_card_the_client_held(
    api: ApiClient, db: Database, ivan: int
) -> None:
    await api.put("/clients/C1", {"card": "20000001"})

    replaced = await api.put("/clients/C1", {"card": "20000002"})
    shown = await api.get("/clients/C1")
    by_old_card = await api.get("/lookup", card="20000001")

    assert replaced.status == 200
    assert shown.body["card"] == {"number": "20000002", "state": "issued", "tier": None}
    assert (by_old_card.status, by_old_card.body["id"]) == (200, ivan)
    async with db.sessions() as session:
        old = await session.scalar(select(DiscountCard).where(DiscountCard.number == "20000001"))
        assert old is not None
        assert (old.state, old.client_id) == ("replaced", ivan)


async def test_a_referrer_and_the_referred_client_earn_500_on_the_first_paid_visit(
    api: ApiClient, ivan: int
) -> None:
    referred = await api.put("/clients/C2", OLGA | {"referred_by": {"phone": "8 (903) 525 45 60"}})

    first = await api.post("/visits", work_order("WO-1", "10000", client="C2"))
    second = await api.post("/visits", work_order("WO-2", "10000", client="C2"))
    referrer = await api.get("/clients/C1/bonuses")

    assert referred.status == 201
    assert first.body["bonus"] | {"tier": None} == {
        "accrued": "300.00",
        "expires_on": "2027-11-24",
        "balance": "800.00",
        "tier": None,
        "referral": "500.00",
    }
    assert second.body["bonus"]["referral"] == "0.00"  # on the first paid visit only
    assert referrer.body["balance"] == "500.00"
    assert [(m["kind"], m["amount"], m["reason"]) for m in referrer.body["movements"]] == [
        ("referral", "500.00", "referrer")
    ]


# ---------------------------------------------------------------------------------- visits


async def test_a_closed_work_order_accrues_3_percent_rounded_down_for_365_days(
    api: ApiClient, ivan: int
) -> None:
    answer = await api.post("/visits", work_order("WO-1", "12345.67", car="K1", kind="ТО-2"))

    assert answer.status == 201
    assert answer.body == {
        "id": 1,
        "external_id": "WO-1",
        "client": "C1",
        "created": True,
        "kind": "maintenance",
        "bonus": {
            "accrued": "370.00",
            "expires_on": "2027-11-24",
            "balance": "370.00",
            "tier": BASE | {"spend": "12345.67", "to_next": "37654.33"},
            "referral": "0.00",
        },
        "survey": {"scheduled_at": "2026-11-24T09:00:00Z", "reason": None},
    }


async def test_the_work_orders_odometer_is_recorded_for_the_car(
    api: ApiClient, db: Database, ivan: int
) -> None:
    await api.post("/visits", work_order("WO-1", "5000", car="K1", odometer=42000))

    async with db.sessions() as session:
        rows = await session.execute(
            select(Car.external_id, OdometerReading.km, OdometerReading.read_on, OdometerReading.source)
            .join(Car, Car.id == OdometerReading.car_id)
        )  # fmt: skip
        assert [tuple(row) for row in rows] == [("K1", 42000, date(2026, 11, 24), "visit")]


async def test_the_survey_invitation_is_due_at_noon_in_moscow_and_the_scheduler_queues_it_then(
    api: ApiClient, db: Database, clock: FakeClock, ivan: int
) -> None:
    posted = await api.post("/visits", work_order("WO-1", "5000"))
    in_request = await count(db, Message.id)
    clock.advance(minutes=10)
    zone = ZoneInfo("Europe/Moscow")
    await surveys.run(
        JobContext(api_settings(db.url), db.sessions, Moment.of(clock, zone), zone), JobResult()
    )

    assert in_request == 0  # nothing is rendered in the dealer's request
    assert posted.body["survey"] == {"scheduled_at": "2026-11-24T09:00:00Z", "reason": None}
    async with db.sessions() as session:
        rows = await session.execute(
            select(Message.idempotency_key, Message.template, Message.client_id, Message.next_attempt_at)
        )  # fmt: skip
        assert [tuple(row) for row in rows] == [
            (
                f"survey:visit:{posted.body['id']}",
                "survey_invitation",
                ivan,
                datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
            )
        ]


async def test_posting_the_same_work_order_again_answers_200_and_changes_nothing(
    api: ApiClient, db: Database, ivan: int
) -> None:
    first = await api.post("/visits", work_order("WO-1", "12345.67", car="K1", kind="ТО-2"))

    again = await api.post("/visits", work_order("WO-1", "12345.67", car="K1", kind="ТО-2"))
    account = await api.get("/clients/C1/bonuses")

    assert again.status == 200
    assert again.body == first.body | {"created": False, "survey": None}
    assert account.body["balance"] == "370.00"
    assert len(account.body["movements"]) == 1
    assert await count(db, Message.id) == 0  # the invitation is the scheduler's to queue


async def test_the_same_work_order_with_another_amount_is_a_409_visit_exists(
    api: ApiClient, ivan: int
) -> None:
    await api.post("/visits", work_order("WO-1", "5000"))

    answer = await api.post("/visits", work_order("WO-1", "5500"))

    assert answer.status == 409
    assert answer.body == error(
        "visit_exists", "work order 'WO-1' was posted before with another amount", "amount"
    )


async def test_a_work_order_of_an_unknown_client_is_a_404(api: ApiClient) -> None:
    answer = await api.post("/visits", work_order("WO-1", "5000", client="NOBODY"))

    assert answer.status == 404
    assert answer.body == error("not_found", "no client with external id 'NOBODY'", "client")


async def test_a_work_order_on_an_unknown_car_is_a_404(api: ApiClient, ivan: int) -> None:
    answer = await api.post("/visits", work_order("WO-1", "5000", car="K404"))

    assert answer.status == 404
    assert answer.body == error("not_found", "no car with external id 'K404'", "car")


async def test_a_work_order_dated_tomorrow_is_a_400_naming_visited_on(
    api: ApiClient, ivan: int
) -> None:
    answer = await api.post("/visits", work_order("WO-1", "5000", visited_on="2026-11-25"))

    assert answer.status == 400
    assert answer.body == error("invalid", "2026-11-25 is in the future", "visited_on")


async def test_a_car_sale_accrues_nothing(api: ApiClient, ivan: int) -> None:
    answer = await api.post("/visits", work_order("WO-1", "2500000", kind="Продажа автомобиля"))

    assert answer.status == 201
    assert answer.body["kind"] == "sale"
    assert (answer.body["bonus"]["accrued"], answer.body["bonus"]["expires_on"]) == ("0.00", None)
    assert answer.body["bonus"]["balance"] == "0.00"


async def test_without_a_client_bot_no_survey_is_scheduled_and_the_answer_says_why(
    db: Database, clock: FakeClock
) -> None:
    async with serve_api(db, clock, telegram={"bot_username": ""}) as api:
        await api.put("/clients/C1", IVAN)
        answer = await api.post("/visits", work_order("WO-1", "5000"))

    assert answer.status == 201
    assert answer.body["survey"] == {
        "scheduled_at": None,
        "reason": "no client bot to answer in: set [telegram] bot_username",
    }
    assert await count(db, Message.id) == 0


async def test_a_department_name_the_schema_allows_opens_its_branch(
    api: ApiClient, ivan: int
) -> None:
    department = " ".join(["Straße"] * 18)  # 125 characters; case-folded ("strasse"), 143

    answer = await api.post("/visits", work_order("WO-1", "5000", department=department))

    assert answer.status == 201, answer.body


# ------------------------------------------------------------------------------------ tiers


async def test_a_client_whose_year_spend_reached_50000_accrues_5_percent(
    api: ApiClient, ivan: int
) -> None:
    await earn(api, "50000")

    answer = await api.post("/visits", work_order("WO-1", "10000"))

    assert answer.body["bonus"]["accrued"] == "500.00"
    assert answer.body["bonus"]["tier"]["name"] == "Серебряный"


async def test_the_bonus_account_shows_the_tier_its_spend_and_what_the_next_needs(
    api: ApiClient, ivan: int
) -> None:
    await earn(api, "50000")
    await api.post("/visits", work_order("WO-1", "10000"))

    answer = await api.get("/clients/C1/bonuses")

    assert answer.status == 200
    assert answer.body["tier"] == {
        "name": "Серебряный",
        "accrual_percent": "5",
        "discount_percent": "3",
        "spend": "60000.00",
        "pinned": False,
        "next": "Золотой",
        "to_next": "90000.00",
    }
    assert answer.body["balance"] == "2000.00"
    assert [(m["work_order"], m["amount"], m["reason"]) for m in answer.body["movements"]] == [
        ("WO-1", "500.00", "Серебряный: 5 %"),
        ("WO-0", "1500.00", "Базовый: 3 %"),
    ]


# ------------------------------------------------------------------------------ redemptions


async def test_a_redemption_is_accepted_with_201_and_the_balance_left(
    api: ApiClient, ivan: int
) -> None:
    await earn(api, "100000")  # 3000 bonuses

    answer = await api.post(
        "/clients/C1/redemptions", {"amount": "500", "bill": "10000", "ref": "POS-1"}
    )

    assert answer.status == 201
    assert answer.body == {
        "accepted": "500.00",
        "balance": "2500.00",
        "ref": "POS-1",
        "repeated": False,
    }


async def test_work_orders_of_one_client_posted_at_once_all_land(api: ApiClient, ivan: int) -> None:
    """Each posting inserts a visit (a key-share lock on the client row, for the foreign
    key) and then locks the client's bonus account: that lock must not wait for the other
    postings' key-share locks, or two postings deadlock on PostgreSQL."""
    answers = await asyncio.gather(
        *(api.post("/visits", work_order(f"WO-{n}", "1000.00")) for n in range(12))
    )

    assert [a.status for a in answers] == [201] * 12, [a.body for a in answers]
    final = await api.get("/clients/C1/bonuses")
    assert final.body["balance"] == "360.00"  # 12 x 3 % of 1 000


async def test_one_work_order_posted_five_times_at_once_is_recorded_once(
    api: ApiClient, ivan: int
) -> None:
    answers = await asyncio.gather(
        *(api.post("/visits", work_order("WO-7", "2000.00")) for _ in range(5))
    )

    assert sorted(a.status for a in answers) == [200, 200, 200, 200, 201]
    assert {a.body["bonus"]["accrued"] for a in answers} == {"60.00"}  # 3 % of 2 000, once
    final = await api.get("/clients/C1/bonuses")
    assert final.body["balance"] == "60.00"


async def test_twenty_tills_redeeming_at_once_never_overdraw_the_account(
    api: ApiClient, ivan: int, db: Database
) -> None:
    """The race over HTTP: 20 concurrent requests of 500 all-or-nothing against a balance
    that covers 5 of them. On SQLite the API's writes take turns; on PostgreSQL they run
    at once and the account's row lock orders them."""
    await earn(api, "83400")  # 3 % of 83 400 = 2 502 bonuses: five payments of 500, and 2 left

    answers = await asyncio.gather(
        *(
            api.post(
                "/clients/C1/redemptions",
                {"amount": "500", "bill": "10000", "ref": f"TILL-{n}", "allow_partial": False},
            )
            for n in range(20)
        )
    )

    statuses = sorted(answer.status for answer in answers)
    assert statuses == [201] * 5 + [409] * 15, [a.body for a in answers]
    assert {a.body["error"]["code"] for a in answers if a.status == 409} == {"insufficient_balance"}
    left = sorted(Decimal(a.body["balance"]) for a in answers if a.status == 201)
    assert left == [Decimal(n) for n in (2, 502, 1002, 1502, 2002)]  # one after another
    final = await api.get("/clients/C1/bonuses")
    assert final.body["balance"] == "2.00"


async def test_a_cancelled_payment_is_reversed_once_and_gives_the_bonuses_back(
    api: ApiClient, ivan: int
) -> None:
    await earn(api, "100000")  # 3000 bonuses
    await api.post("/clients/C1/redemptions", {"amount": "500", "bill": "10000", "ref": "POS-1"})

    first = await api.post("/clients/C1/redemptions/POS-1/reversal", {})
    again = await api.post("/clients/C1/redemptions/POS-1/reversal", {})

    assert (first.status, again.status) == (201, 200)
    assert first.body == {"returned": "500.00", "balance": "3000.00", "ref": "POS-1",
                          "repeated": False}  # fmt: skip
    assert again.body["repeated"] is True
    assert (await api.get("/clients/C1/bonuses")).body["balance"] == "3000.00"


async def test_reversing_a_payment_the_client_never_made_is_a_404(
    api: ApiClient, ivan: int
) -> None:
    answer = await api.post("/clients/C1/redemptions/POS-404/reversal", {})

    assert answer.status == 404
    assert answer.error["field"] == "ref"


async def test_bonuses_pay_at_most_30_percent_of_the_bill(api: ApiClient, ivan: int) -> None:
    await earn(api, "100000")

    answer = await api.post(
        "/clients/C1/redemptions", {"amount": "1000", "bill": "2000", "ref": "POS-1"}
    )

    assert answer.status == 201
    assert (answer.body["accepted"], answer.body["balance"]) == ("600.00", "2400.00")


async def test_over_the_cap_without_allow_partial_is_a_409_insufficient_balance(
    api: ApiClient, ivan: int
) -> None:
    await earn(api, "100000")

    answer = await api.post(
        "/clients/C1/redemptions",
        {"amount": "1000", "bill": "2000", "ref": "POS-1", "allow_partial": False},
    )
    account = await api.get("/clients/C1/bonuses")

    assert answer.status == 409
    assert answer.body == error(
        "insufficient_balance",
        "bonuses may pay at most 30 % of the bill: 600.00; asked 1000.00",
        "amount",
    )
    assert account.body["balance"] == "3000.00"


async def test_the_same_ref_again_answers_200_with_what_was_accepted_the_first_time(
    api: ApiClient, ivan: int
) -> None:
    await earn(api, "100000")
    first = await api.post(
        "/clients/C1/redemptions", {"amount": "1000", "bill": "2000", "ref": "POS-1"}
    )

    again = await api.post(
        "/clients/C1/redemptions", {"amount": "1000", "bill": "2000", "ref": "POS-1"}
    )

    assert again.status == 200
    assert again.body == first.body | {"repeated": True}
    assert again.body["balance"] == "2400.00"


async def test_a_client_with_nothing_to_redeem_is_refused_with_409(
    api: ApiClient, ivan: int
) -> None:
    answer = await api.post(
        "/clients/C1/redemptions", {"amount": "100", "bill": "1000", "ref": "POS-1"}
    )

    assert answer.status == 409
    assert answer.body == error(
        "insufficient_balance", "the client has no bonuses to spend", "amount"
    )


async def test_a_ref_used_for_another_client_is_a_409_ref_conflict(
    api: ApiClient, ivan: int, olga: int
) -> None:
    await earn(api, "100000")
    await earn(api, "100000", number="WO-00", client="C2")
    await api.post("/clients/C1/redemptions", {"amount": "100", "bill": "1000", "ref": "POS-1"})

    answer = await api.post(
        "/clients/C2/redemptions", {"amount": "100", "bill": "1000", "ref": "POS-1"}
    )

    assert answer.status == 409
    assert answer.body == error(
        "ref_conflict",
        "reference 'POS-1' was already used for a redemption of another client",
        "ref",
    )


async def test_bonuses_paid_on_a_work_order_lower_the_accrual_on_it(
    api: ApiClient, ivan: int
) -> None:
    await earn(api, "20000")  # 600 bonuses; the spend stays in Базовый
    await api.post(
        "/clients/C1/redemptions",
        {"amount": "300", "bill": "10000", "ref": "POS-1", "work_order": "WO-9"},
    )

    answer = await api.post("/visits", work_order("WO-9", "10000"))

    assert answer.body["bonus"]["accrued"] == "291.00"  # 3 % of the 9700 paid in money


# ---------------------------------------------------------------------------------- lookup


@pytest.mark.parametrize("phone", ["+79035254560", "8 903 525-45-60", "+7 (903) 525 45 60"])
async def test_a_client_is_found_by_phone_in_any_notation(
    api: ApiClient, ivan: int, phone: str
) -> None:
    answer = await api.get("/lookup", phone=phone)

    assert (answer.status, answer.body["id"], answer.body["external_id"]) == (200, ivan, "C1")


async def test_a_client_is_found_by_card_number(api: ApiClient, ivan: int) -> None:
    await api.put("/clients/C1", {"card": "20000001"})

    answer = await api.get("/lookup", card="2000-0001")

    assert (answer.status, answer.body["id"]) == (200, ivan)


async def test_a_client_is_found_by_external_id(api: ApiClient, ivan: int) -> None:
    answer = await api.get("/lookup", external_id="C1")

    assert (answer.status, answer.body["id"]) == (200, ivan)


@pytest.mark.parametrize("query", [{}, {"phone": IVAN_PHONE, "external_id": "C1"}])
async def test_a_lookup_takes_exactly_one_key(
    api: ApiClient, ivan: int, query: dict[str, str]
) -> None:
    answer = await api.get("/lookup", **query)

    assert answer.status == 400
    assert answer.body == error("invalid", "give exactly one of phone, card, external_id", "query")


async def test_a_lookup_that_matches_nobody_is_a_404(api: ApiClient, ivan: int) -> None:
    answer = await api.get("/lookup", phone="+7 903 000-00-00")

    assert answer.status == 404
    assert answer.body == error("not_found", "no client with phone +79030000000")


async def test_a_lookup_by_an_external_id_with_a_control_character_is_a_400(
    api: ApiClient, ivan: int
) -> None:
    answer = await api.get("/lookup", external_id="C\x001")

    assert answer.status == 400, answer.body
    assert answer.body["error"]["field"] == "external_id"


# -------------------------------------------------------------------------------- odometer


async def test_an_odometer_reading_is_recorded_once(api: ApiClient, ivan: int) -> None:
    reading = {"km": 43500, "read_on": "2026-11-20"}

    first = await api.post("/cars/K1/odometer", reading)
    again = await api.post("/cars/K1/odometer", reading)

    assert (first.status, again.status) == (201, 200)
    assert first.body == {"car": "K1", "km": 43500, "read_on": "2026-11-20", "created": True}
    assert again.body == first.body | {"created": False}


async def test_a_reading_of_an_unknown_car_is_a_404(api: ApiClient) -> None:
    answer = await api.post("/cars/K404/odometer", {"km": 43500})

    assert answer.status == 404
    assert answer.body == error("not_found", "no car with external id 'K404'", "car")


async def test_a_reading_dated_tomorrow_is_a_400_naming_read_on(api: ApiClient, ivan: int) -> None:
    answer = await api.post("/cars/K1/odometer", {"km": 43500, "read_on": "2026-11-25"})

    assert answer.status == 400
    assert answer.body == error("invalid", "2026-11-25 is in the future", "read_on")


# ------------------------------------------------------------------------------------ cars


async def test_a_new_car_without_its_owner_is_a_400_naming_owner(api: ApiClient) -> None:
    answer = await api.put("/cars/K1", {"make": "Kia"})

    assert answer.status == 400
    assert answer.body == error("invalid", "a new car needs its owner", "owner")


async def test_a_car_of_an_unknown_owner_is_a_404_naming_owner(api: ApiClient) -> None:
    answer = await api.put("/cars/K1", {"owner": "NOBODY"})

    assert answer.status == 404
    assert answer.body == error("not_found", "no client with external id 'NOBODY'", "owner")


async def test_a_plate_typed_in_latin_is_stored_in_cyrillic(api: ApiClient, ivan: int) -> None:
    answer = await api.put("/cars/K1", {"plate": "a123bc77"})

    assert answer.status == 200
    assert answer.body == {
        "id": 1,
        "external_id": "K1",
        "owner": "C1",
        "vin": None,
        "plate": "А123ВС77",
        "make": "Kia",
        "model": "Rio",
        "year": None,
    }


# ---------------------------------------------------------------------------------- errors


async def test_malformed_json_is_a_400_bad_json(api: ApiClient) -> None:
    answer = await api.call("POST", "/visits", data=b'{"external_id": "WO-1",')

    assert answer.status == 400
    assert answer.error["code"] == "bad_json"
    assert answer.error["message"].startswith("not valid JSON: ")


async def test_a_json_array_instead_of_an_object_is_a_400_bad_json(api: ApiClient) -> None:
    answer = await api.call("POST", "/visits", data=b"[]")

    assert answer.status == 400
    assert answer.body == error("bad_json", "the body must be a JSON object")


async def test_a_missing_required_field_is_a_400_naming_it(api: ApiClient, ivan: int) -> None:
    body = work_order("WO-1", "5000")
    del body["amount"]

    answer = await api.post("/visits", body)

    assert answer.status == 400
    assert answer.body == error("invalid", "amount: required", "amount")


async def test_a_field_of_the_wrong_type_is_a_400_naming_it(api: ApiClient, ivan: int) -> None:
    answer = await api.post("/visits", work_order("WO-1", "5000", odometer="many"))

    assert answer.status == 400
    assert answer.error["field"] == "odometer"
    assert answer.error["code"] == "invalid"


async def test_a_sum_sent_as_a_json_array_is_a_400_naming_it(api: ApiClient, ivan: int) -> None:
    answer = await api.post("/visits", work_order("WO-1", [2, [], 0]))

    assert answer.status == 400, answer.body
    assert answer.error["field"] == "amount"
    assert answer.error["code"] == "invalid"


async def test_a_request_without_authorization_is_a_401_asking_for_a_bearer_token(
    api: ApiClient,
) -> None:
    answer = await api.call("GET", "/clients/C1", token=None)

    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="autoloyal"'
    assert answer.body == error("unauthorized", "send the header Authorization: Bearer <token>")


async def test_a_wrong_token_is_a_401(api: ApiClient) -> None:
    answer = await api.call("GET", "/clients/C1", token=TOKEN + "x")

    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="autoloyal"'
    assert answer.body == error("unauthorized", "wrong token")


async def test_with_no_api_token_in_the_config_every_route_says_the_api_is_off(
    db: Database, clock: FakeClock
) -> None:
    answers = {}
    async with serve_api(db, clock, http={"api_token": ""}) as api:
        for operation in OPERATIONS:
            path = operation.path.replace("{external_id}", "C1")
            answer = await api.call(operation.method.upper(), path, {}, token=TOKEN)
            answers[operation.id] = (answer.status, answer.body)

    off = error("unauthorized", "the API is off: set [http] api_token in the config")
    assert answers == {operation.id: (401, off) for operation in OPERATIONS}


async def test_an_unknown_route_is_a_json_404(api: ApiClient) -> None:
    answer = await api.call("GET", "/invoices")

    assert answer.status == 404
    assert answer.body == error("not_found", "Not Found")


async def test_a_wrong_method_is_a_json_405(api: ApiClient) -> None:
    answer = await api.call("DELETE", "/visits")

    assert answer.status == 405
    assert answer.body == error("method_not_allowed", "Method Not Allowed")


# ------------------------------------------------------------------------ nothing half-done


async def test_a_client_given_another_clients_card_is_not_created_at_all(
    api: ApiClient, db: Database, olga: int
) -> None:
    await api.put("/clients/C2", {"card": "20000001"})

    answer = await api.put("/clients/C1", IVAN | {"card": "20000001"})
    shown = await api.get("/clients/C1")

    assert answer.status == 409
    assert answer.error["field"] == "card"
    assert shown.status == 404
    assert await count(db, Client.id) == 1


async def test_a_name_longer_than_its_column_is_a_400_and_nothing_is_stored(
    api: ApiClient,
) -> None:
    name = (
        "ООО «Межрегиональная транспортно-экспедиционная компания "
        "Северо-Западного федерального округа по грузовым автомобильным перевозкам»"
    )  # 131 characters; a company's name is kept whole, and the column holds 128

    answer = await api.put("/clients/C1", {"full_name": name})

    assert answer.status == 400, answer.body
    assert answer.body["error"]["field"] == "full_name"
    assert (await api.get("/clients/C1")).status == 404
