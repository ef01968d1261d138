"""Service booking over the integration API, as the dealer's system or site uses it, over
HTTP, on SQLite and PostgreSQL.

The clock stands at 09:00 in Moscow on Tuesday 2026-11-24. The one branch ("main") works
09:00-18:00 Monday to Saturday with one bay; a booking starts on the half hour at least
2 hours ahead and at most 21 days out. Diagnostics takes 60 minutes, maintenance 120.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.booking import Booking, InboundContact
from storage.models import Client
from storage.outbox import Message
from tests.support.api import ApiClient, serve_api
from tests.support.clock import FakeClock
from tests.support.databases import Database

TOMORROW = "2026-11-25"
IVAN = {"full_name": "Смирнов Иван Петрович", "phone": "8 903 525-45-60"}
OLGA = {"full_name": "Кузнецова Ольга Сергеевна", "phone": "+7 916 111-22-33"}


def at(day: str, hhmm: str) -> str:
    """A start on the branch's (Moscow's) wall clock, as the API shows it."""
    return f"{day}T{hhmm}:00+03:00"


def half_hours(day: str, first: str, last: str) -> list[str]:
    """Every half-hour start from `first` to `last` inclusive."""
    (h1, m1), (h2, m2) = (map(int, first.split(":")), map(int, last.split(":")))
    return [
        at(day, f"{m // 60:02d}:{m % 60:02d}") for m in range(h1 * 60 + m1, h2 * 60 + m2 + 1, 30)
    ]


def booking_of(client: str, starts_at: str, service: str = "diagnostics", **fields: Any) -> Any:
    return {"client": client, "service": service, "starts_at": starts_at} | fields


@pytest.fixture
async def api(db: Database, clock: FakeClock) -> AsyncIterator[ApiClient]:
    async with serve_api(db, clock) as client:
        yield client


@pytest.fixture
async def ivan(api: ApiClient) -> int:
    """Client C1 (Иван, with a phone) and his car K1; returns his id."""
    created = await api.put("/clients/C1", IVAN)
    car = await api.put("/cars/K1", {"owner": "C1", "make": "Kia", "model": "Rio"})
    assert (created.status, car.status) == (201, 201), (created.body, car.body)
    client_id: int = created.body["id"]
    return client_id


@pytest.fixture
async def olga(api: ApiClient) -> int:
    """Client C2, another client of the same service (no car)."""
    created = await api.put("/clients/C2", OLGA)
    assert created.status == 201, created.body
    client_id: int = created.body["id"]
    return client_id


async def count(db: Database, column: Any, *where: Any) -> int:
    async with db.sessions() as session:
        return int(await session.scalar(select(func.count(column)).where(*where)) or 0)


async def slots_of(api: ApiClient, day: str, service: str = "diagnostics") -> list[str]:
    answer = await api.get("/slots", service=service, date=day)
    assert answer.status == 200, answer.body
    (shown,) = answer.body["days"]
    starts: list[str] = shown["starts"]
    return starts


# ----------------------------------------------------------------------------------- slots


async def test_today_offers_the_hours_from_two_hours_ahead_to_the_last_hour_before_closing(
    api: ApiClient,
) -> None:
    answer = await api.get("/slots", service="diagnostics", date="2026-11-24")

    assert answer.status == 200
    assert answer.body == {
        "service": "diagnostics",
        "branch": "main",
        "days": [
            {
                "date": "2026-11-24",
                "state": "free",
                "starts": half_hours("2026-11-24", "11:00", "17:00"),
            }
        ],
    }


async def test_a_two_hour_service_starts_no_later_than_two_hours_before_closing(
    api: ApiClient,
) -> None:
    assert await slots_of(api, TOMORROW, "maintenance") == half_hours(TOMORROW, "09:00", "16:00")


async def test_a_booking_takes_its_hour_and_every_start_that_would_run_into_it(
    api: ApiClient, ivan: int
) -> None:
    booked = await api.post("/bookings", booking_of("C1", at(TOMORROW, "10:00"), "maintenance"))
    assert booked.status == 201, booked.body

    starts = await slots_of(api, TOMORROW)

    # 10:00-12:00 is held: 09:30 would run into it, 12:00 is the first start after it
    assert starts == [at(TOMORROW, "09:00"), *half_hours(TOMORROW, "12:00", "17:00")]


async def test_a_sunday_is_closed_and_days_before_now_or_past_the_horizon_are_out(
    api: ApiClient,
) -> None:
    days = {}
    for day in ("2026-11-29", "2026-11-23", "2026-12-15"):
        answer = await api.get("/slots", service="diagnostics", date=day)
        assert answer.status == 200, answer.body
        days[day] = answer.body["days"][0]

    assert days == {
        "2026-11-29": {"date": "2026-11-29", "state": "closed", "starts": []},
        "2026-11-23": {"date": "2026-11-23", "state": "out", "starts": []},
        "2026-12-15": {"date": "2026-12-15", "state": "out", "starts": []},
    }


async def test_without_a_date_every_day_of_the_21_day_horizon_is_listed(api: ApiClient) -> None:
    answer = await api.get("/slots", service="maintenance")

    assert answer.status == 200
    days = answer.body["days"]
    assert [d["date"] for d in (days[0], days[-1])] == ["2026-11-24", "2026-12-14"]
    assert len(days) == 21
    assert {d["date"] for d in days if d["state"] == "closed"} == {
        "2026-11-29",
        "2026-12-06",
        "2026-12-13",
    }
    assert days[0]["starts"][0] == at("2026-11-24", "11:00")


async def test_an_unknown_service_or_branch_is_a_404_naming_it_and_a_bad_date_a_400(
    api: ApiClient,
) -> None:
    service = await api.get("/slots", service="painting")
    branch = await api.get("/slots", service="diagnostics", branch="north")
    bad_date = await api.get("/slots", service="diagnostics", date="25.11.2026")
    missing = await api.get("/slots")

    assert (service.status, service.error["field"], service.error["code"]) == (
        404,
        "service",
        "unknown_service",
    )
    assert (branch.status, branch.error["field"], branch.error["code"]) == (
        404,
        "branch",
        "not_found",
    )
    assert bad_date.status == 400
    assert bad_date.error == {
        "code": "invalid",
        "message": "date: expected a date like 2026-11-25",
        "field": "date",
    }
    assert (missing.status, missing.error["field"]) == (400, "service")


# -------------------------------------------------------------------------------- booking


async def test_a_client_is_booked_by_external_id_with_201_and_the_times_on_moscow_time(
    api: ApiClient, ivan: int
) -> None:
    answer = await api.post(
        "/bookings", booking_of("C1", at(TOMORROW, "10:00"), car="K1", comment="стучит подвеска")
    )

    assert answer.status == 201
    assert answer.body == {
        "id": answer.body["id"],
        "state": "requested",
        "client_id": ivan,
        "client": "C1",
        "car": "K1",
        "service": "diagnostics",
        "service_name": "Диагностика",
        "branch": "main",
        "branch_name": "Автосервис",
        "starts_at": "2026-11-25T10:00:00+03:00",
        "ends_at": "2026-11-25T11:00:00+03:00",
        "comment": "стучит подвеска",
        "source": "api",
        "external_ref": None,
        "requested_at": "2026-11-24T09:00:00+03:00",
        "confirmed_at": None,
        "arrived_at": None,
        "completed_at": None,
        "cancelled_at": None,
        "declined_at": None,
        "no_show_at": None,
        "rescheduled_from": None,
        "visit": None,
        "actor": "api",
    }


async def test_an_api_booking_records_a_service_contact_that_booked(
    api: ApiClient, db: Database, ivan: int
) -> None:
    answer = await api.post("/bookings", booking_of("C1", at(TOMORROW, "10:00")))

    async with db.sessions() as session:
        (contact,) = (await session.scalars(select(InboundContact))).all()
    assert (contact.channel, contact.purpose, contact.outcome) == ("api", "service", "booked")
    assert (contact.client_id, contact.booking_id) == (ivan, answer.body["id"])
    assert contact.branch_id is not None


async def test_a_new_phone_books_as_a_new_potential_client(api: ApiClient, db: Database) -> None:
    answer = await api.post(
        "/bookings",
        {
            "phone": "8 (926) 555-12-34",
            "name": "Петров Пётр",
            "service": "maintenance",
            "starts_at": at(TOMORROW, "12:00"),
        },
    )

    assert answer.status == 201, answer.body
    assert (answer.body["client"], answer.body["state"]) == (None, "requested")
    async with db.sessions() as session:
        client = await session.get_one(Client, answer.body["client_id"])
    assert (client.phone, client.last_name, client.first_name) == ("+79265551234", "Петров", "Пётр")
    assert client.external_id is None


async def test_a_known_phone_books_for_the_client_who_has_it(
    api: ApiClient, db: Database, ivan: int
) -> None:
    answer = await api.post(
        "/bookings",
        {"phone": "+7 903 525 45 60", "service": "diagnostics", "starts_at": at(TOMORROW, "09:00")},
    )

    assert answer.status == 201, answer.body
    assert (answer.body["client_id"], answer.body["client"]) == (ivan, "C1")
    assert await count(db, Client.id) == 1


async def test_the_same_external_ref_again_answers_200_with_the_same_booking(
    api: ApiClient, db: Database, ivan: int
) -> None:
    body = booking_of("C1", at(TOMORROW, "10:00"), external_ref="SITE-77")

    first = await api.post("/bookings", body)
    again = await api.post("/bookings", body)

    assert (first.status, again.status) == (201, 200)
    assert again.body == first.body
    assert first.body["external_ref"] == "SITE-77"
    assert (await count(db, Booking.id), await count(db, InboundContact.id)) == (1, 1)


async def test_one_booking_posted_five_times_at_once_is_made_once(
    api: ApiClient, db: Database, ivan: int
) -> None:
    """On PostgreSQL the four repeats wait for the branch behind the first; then its start
    is taken, and each repeat is answered with the booking its ref made."""
    body = booking_of("C1", at(TOMORROW, "10:00"), external_ref="SITE-78")

    answers = await asyncio.gather(*(api.post("/bookings", body) for _ in range(5)))

    assert sorted(a.status for a in answers) == [200, 200, 200, 200, 201], [a.body for a in answers]
    assert len({a.body["id"] for a in answers}) == 1
    assert (await count(db, Booking.id), await count(db, InboundContact.id)) == (1, 1)


async def test_an_external_ref_reused_for_another_start_is_a_409_ref_conflict(
    api: ApiClient, ivan: int
) -> None:
    await api.post("/bookings", booking_of("C1", at(TOMORROW, "10:00"), external_ref="SITE-77"))

    answer = await api.post(
        "/bookings", booking_of("C1", at(TOMORROW, "14:00"), external_ref="SITE-77")
    )

    assert answer.status == 409
    assert (answer.error["code"], answer.error["field"]) == ("ref_conflict", "external_ref")


async def test_a_taken_start_is_a_409_slot_taken_offering_the_nearest_free_starts(
    api: ApiClient, db: Database, ivan: int, olga: int
) -> None:
    first = await api.post("/bookings", booking_of("C2", at(TOMORROW, "10:00")))
    assert first.status == 201, first.body

    answer = await api.post("/bookings", booking_of("C1", at(TOMORROW, "10:00")))

    assert answer.status == 409
    assert answer.body == {
        "error": {
            "code": "slot_taken",
            "message": "2026-11-25 10:00 is already taken",
            "field": "starts_at",
            "alternatives": [
                at(TOMORROW, "09:00"),
                at(TOMORROW, "11:00"),
                at(TOMORROW, "11:30"),
                at(TOMORROW, "12:00"),
                at(TOMORROW, "12:30"),
            ],
        }
    }
    # nothing of the lost request is kept: no booking, no contact
    assert (await count(db, Booking.id), await count(db, InboundContact.id)) == (1, 1)


async def test_twenty_clients_racing_for_the_last_bay_one_wins_nineteen_are_offered_others(
    api: ApiClient, db: Database
) -> None:
    """20 requests at once for the one bay at 10:00, each by a new phone: on SQLite the
    API's writes take turns; on PostgreSQL they run at once and the branch's row lock
    orders them. The losers leave nothing behind, not even their new client."""
    bodies = [
        {
            "phone": f"+7 916 200-00-{n:02d}",
            "service": "diagnostics",
            "starts_at": at(TOMORROW, "10:00"),
        }
        for n in range(20)
    ]

    answers = await asyncio.gather(*(api.post("/bookings", body) for body in bodies))

    statuses = sorted(answer.status for answer in answers)
    assert statuses == [201] + [409] * 19, [a.body for a in answers]
    lost = [a.body["error"] for a in answers if a.status == 409]
    assert {e["code"] for e in lost} == {"slot_taken"}
    assert all(
        e["alternatives"][:2] == [at(TOMORROW, "09:00"), at(TOMORROW, "11:00")] for e in lost
    )
    assert await count(db, Booking.id) == 1
    assert await count(db, InboundContact.id) == 1
    assert await count(db, Client.id) == 1


@pytest.mark.parametrize(
    ("starts_at", "code"),
    [
        (at("2026-11-24", "10:00"), "too_soon"),  # an hour from now; 2 h are needed
        (at("2026-12-15", "10:00"), "too_far"),  # the 22nd day
        (at(TOMORROW, "10:15"), "not_a_slot"),  # off the half-hour grid
        (at(TOMORROW, "17:30"), "not_a_slot"),  # would run past closing
        (at("2026-11-29", "10:00"), "not_a_slot"),  # a Sunday
    ],
)
async def test_a_start_the_branch_does_not_offer_is_a_400_naming_starts_at(
    api: ApiClient, ivan: int, starts_at: str, code: str
) -> None:
    answer = await api.post("/bookings", booking_of("C1", starts_at))

    assert answer.status == 400
    assert (answer.error["code"], answer.error["field"]) == (code, "starts_at")


async def test_a_start_without_its_utc_offset_is_a_400_naming_starts_at(
    api: ApiClient, ivan: int
) -> None:
    answer = await api.post("/bookings", booking_of("C1", "2026-11-25T10:00:00"))

    assert answer.status == 400
    assert answer.error["field"] == "starts_at"
    assert "UTC offset" in answer.error["message"]


async def test_a_client_booked_at_that_time_already_is_a_409_already_booked(
    api: ApiClient, ivan: int
) -> None:
    await api.post("/bookings", booking_of("C1", at(TOMORROW, "10:00")))

    answer = await api.post("/bookings", booking_of("C1", at(TOMORROW, "10:30"), "tyres"))

    assert answer.status == 409
    assert (answer.error["code"], answer.error["field"]) == ("already_booked", "starts_at")


async def test_another_clients_car_is_a_404_naming_car(
    api: ApiClient, ivan: int, olga: int
) -> None:
    answer = await api.post("/bookings", booking_of("C2", at(TOMORROW, "10:00"), car="K1"))

    assert answer.status == 404
    assert answer.error["field"] == "car"


async def test_a_booking_names_exactly_one_of_client_and_phone(api: ApiClient, ivan: int) -> None:
    neither = await api.post(
        "/bookings", {"service": "diagnostics", "starts_at": at(TOMORROW, "10:00")}
    )
    unknown = await api.post("/bookings", booking_of("C9", at(TOMORROW, "10:00")))
    bad_phone = await api.post(
        "/bookings", {"phone": "12", "service": "diagnostics", "starts_at": at(TOMORROW, "10:00")}
    )

    assert (neither.status, neither.error["field"]) == (400, "client")
    assert (unknown.status, unknown.error["field"]) == (404, "client")
    assert (bad_phone.status, bad_phone.error["field"]) == (400, "phone")


# ------------------------------------------------------------------------------ its steps


async def test_confirming_queues_the_clients_confirmation_once(
    api: ApiClient, db: Database, ivan: int
) -> None:
    booked = await api.post("/bookings", booking_of("C1", at(TOMORROW, "10:00")))
    number = booked.body["id"]

    confirmed = await api.patch(f"/bookings/{number}", {"action": "confirm"})
    again = await api.patch(f"/bookings/{number}", {"action": "confirm"})

    assert (confirmed.status, again.status) == (200, 200)
    assert confirmed.body["state"] == "confirmed"
    assert confirmed.body["confirmed_at"] == "2026-11-24T09:00:00+03:00"
    assert again.body == confirmed.body
    async with db.sessions() as session:
        messages = (await session.scalars(select(Message))).all()
    assert [(m.template, m.idempotency_key, m.client_id) for m in messages] == [
        ("booking_confirmation", f"booking:{number}:confirmed", ivan)
    ]


async def test_a_step_the_state_does_not_allow_is_a_409_wrong_state(
    api: ApiClient, ivan: int
) -> None:
    booked = await api.post("/bookings", booking_of("C1", at(TOMORROW, "10:00")))
    number = booked.body["id"]
    await api.patch(f"/bookings/{number}", {"action": "cancel"})

    answer = await api.patch(f"/bookings/{number}", {"action": "confirm"})

    assert answer.status == 409
    assert (answer.error["code"], answer.error["field"]) == ("wrong_state", "state")
    assert (await api.get(f"/bookings/{number}")).body["state"] == "cancelled"


async def test_a_client_who_came_today_is_marked_arrived(api: ApiClient, ivan: int) -> None:
    booked = await api.post("/bookings", booking_of("C1", at("2026-11-24", "11:00")))

    answer = await api.patch(f"/bookings/{booked.body['id']}", {"action": "arrive"})

    assert answer.status == 200, answer.body
    assert (answer.body["state"], answer.body["arrived_at"]) == (
        "arrived",
        "2026-11-24T09:00:00+03:00",
    )


async def test_moving_a_booking_makes_a_new_one_linked_to_the_cancelled_old_one(
    api: ApiClient, ivan: int
) -> None:
    booked = await api.post("/bookings", booking_of("C1", at(TOMORROW, "10:00")))
    old = booked.body["id"]

    moved = await api.patch(f"/bookings/{old}", {"starts_at": at("2026-11-26", "15:00")})
    retried = await api.patch(f"/bookings/{old}", {"starts_at": at("2026-11-26", "15:00")})

    assert moved.status == 200, moved.body
    assert moved.body["rescheduled_from"] == old
    assert (moved.body["starts_at"], moved.body["source"]) == (at("2026-11-26", "15:00"), "api")
    assert retried.body == moved.body
    assert (await api.get(f"/bookings/{old}")).body["state"] == "cancelled"
    assert await slots_of(api, TOMORROW) == half_hours(TOMORROW, "09:00", "17:00")


async def test_a_booking_not_on_file_is_a_404_and_a_bad_id_a_400(api: ApiClient) -> None:
    missing = await api.get("/bookings/999")
    bad = await api.patch("/bookings/abc", {"action": "confirm"})
    nothing = await api.patch("/bookings/1", {})

    assert (missing.status, missing.error["field"]) == (404, "booking")
    assert (bad.status, bad.error["field"]) == (400, "id")
    assert (nothing.status, nothing.error["field"]) == (400, "action")


async def test_the_bookings_of_a_day_are_listed_by_start(
    api: ApiClient, ivan: int, olga: int
) -> None:
    await api.post("/bookings", booking_of("C2", at(TOMORROW, "14:00")))
    await api.post("/bookings", booking_of("C1", at(TOMORROW, "09:00")))
    await api.post("/bookings", booking_of("C1", at("2026-11-26", "09:00")))

    answer = await api.get("/bookings", date=TOMORROW)
    other = await api.get("/bookings", date=TOMORROW, branch="main")

    assert answer.status == 200
    assert answer.body["date"] == TOMORROW
    assert [(b["client"], b["starts_at"]) for b in answer.body["bookings"]] == [
        ("C1", at(TOMORROW, "09:00")),
        ("C2", at(TOMORROW, "14:00")),
    ]
    assert other.body == answer.body


async def test_a_work_order_posted_on_the_day_completes_the_booking(
    api: ApiClient, ivan: int
) -> None:
    booked = await api.post("/bookings", booking_of("C1", at("2026-11-24", "11:00"), car="K1"))

    posted = await api.post(
        "/visits",
        {"external_id": "WO-5", "client": "C1", "car": "K1", "visited_on": "2026-11-24",
         "amount": "4500"},
    )  # fmt: skip
    shown = await api.get(f"/bookings/{booked.body['id']}")

    assert posted.status == 201, posted.body
    assert (shown.body["state"], shown.body["visit"]) == ("completed", "WO-5")
    assert shown.body["completed_at"] == "2026-11-24T09:00:00+03:00"


# ------------------------------------------------------------------------------- contacts


async def test_a_call_with_a_known_source_is_recorded_with_201(
    api: ApiClient, db: Database
) -> None:
    answer = await api.post(
        "/contacts",
        {
            "channel": "call",
            "purpose": "service",
            "outcome": "not_booked",
            "phone": "8 926 555-12-34",
            "source": "Интернет-поиск",
            "staff": "Мария",
            "branch": "main",
            "note": "спросил цену ТО",
            "happened_at": "2026-11-24T08:40:00+03:00",
        },
    )

    assert answer.status == 201, answer.body
    assert answer.body | {"id": 0, "client_id": 0} == {
        "id": 0,
        "happened_at": "2026-11-24T08:40:00+03:00",
        "channel": "call",
        "purpose": "service",
        "outcome": "not_booked",
        "source": "Интернет-поиск",
        "client_id": 0,
        "client": None,
        "phone": "+79265551234",
        "branch": "main",
        "campaign": None,
        "booking": None,
        "staff": "Мария",
        "note": "спросил цену ТО",
        "external_ref": None,
    }
    assert await count(db, Client.id, Client.phone == "+79265551234") == 1


async def test_a_source_not_in_the_config_is_a_400_naming_source(
    api: ApiClient, db: Database
) -> None:
    answer = await api.post(
        "/contacts",
        {"channel": "call", "purpose": "service", "outcome": "information", "source": "Радио"},
    )

    assert answer.status == 400
    assert (answer.error["code"], answer.error["field"]) == ("unknown_source", "source")
    assert await count(db, InboundContact.id) == 0


async def test_a_contact_posted_again_with_its_ref_answers_200_with_the_same_contact(
    api: ApiClient, db: Database, ivan: int
) -> None:
    body = {
        "channel": "website",
        "purpose": "repair_question",
        "outcome": "information",
        "client": "C1",
        "external_ref": "CALL-9",
    }

    first = await api.post("/contacts", body)
    again = await api.post("/contacts", body)

    assert (first.status, again.status) == (201, 200)
    assert again.body == first.body
    assert (first.body["client"], first.body["client_id"]) == ("C1", ivan)
    assert await count(db, InboundContact.id) == 1


async def test_a_contact_of_an_unknown_channel_is_a_400_naming_it(api: ApiClient) -> None:
    answer = await api.post(
        "/contacts", {"channel": "fax", "purpose": "service", "outcome": "booked"}
    )

    assert answer.status == 400
    assert (answer.error["code"], answer.error["field"]) == ("invalid", "channel")
