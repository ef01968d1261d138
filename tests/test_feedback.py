"""Visit surveys and complaints: one answer per visit, a complaint at the first low answer."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from crm.errors import Conflict, DomainError, NotFound
from crm.feedback import (
    COMMENT,
    CSAT,
    DONE,
    NPS,
    OPEN,
    RESOLVED,
    TAKEN,
    Answered,
    ComplaintRules,
    NotYours,
    SurveyState,
    answer,
    open_complaints,
    resolve_complaint,
    survey_visit,
    take_complaint,
)
from storage.feedback import Complaint, SurveyAnswer
from storage.models import Branch, Car, Visit
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client

RULES = ComplaintRules()  # CSAT 1-3 or NPS 0-6 is a complaint
PHONE = "+79161234567"


async def a_visit(db: Database, clock: FakeClock, client_id: int, amount: str = "4500.00") -> int:
    """A visit of the client's Kia Rio at the default branch; returns its id."""
    async with db.sessions() as session, session.begin():
        branch = await session.scalar(select(Branch.id))
        assert branch is not None
        car = Car(
            client_id=client_id,
            make="Kia",
            model="Rio",
            plate="А123ВС77",
            created_at=clock(),
            updated_at=clock(),
        )
        session.add(car)
        await session.flush()
        visit = Visit(
            client_id=client_id,
            car_id=car.id,
            branch_id=branch,
            visited_on=date(2026, 11, 20),
            amount=Decimal(amount),
            kind="repair",
            created_at=clock(),
            updated_at=clock(),
        )
        session.add(visit)
        await session.flush()
        return visit.id


async def reply(
    db: Database, clock: FakeClock, visit_id: int, client_id: int, question: str, **given: Any
) -> Answered:
    """The client answers one question in the bot, in a transaction of its own."""
    async with db.sessions() as session, session.begin():
        return await answer(
            session,
            RULES,
            visit_id,
            client_id,
            question=question,
            channel="telegram",
            now=clock(),
            **given,
        )


async def surveys(db: Database) -> list[SurveyAnswer]:
    async with db.sessions() as session:
        return list(await session.scalars(select(SurveyAnswer)))


async def complaints(db: Database) -> list[Complaint]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Complaint).order_by(Complaint.id)))


@pytest.fixture
async def client_id(db: Database) -> int:
    return await add_client(db, phone=PHONE)


@pytest.fixture
async def visit_id(db: Database, clock: FakeClock, client_id: int) -> int:
    return await a_visit(db, clock, client_id)


async def test_the_survey_shows_the_visit_and_nothing_answered_yet(
    db: Database, visit_id: int, client_id: int
) -> None:
    async with db.sessions() as session:
        shown = await survey_visit(session, visit_id, client_id)
    assert (shown.branch, shown.amount, shown.car) == (
        "Автосервис",
        Decimal("4500.00"),
        "Kia Rio А123ВС77",
    )
    assert shown.visited_on == date(2026, 11, 20)
    assert shown.state is None


async def test_a_whole_survey_with_high_scores_opens_no_complaint(
    db: Database, clock: FakeClock, visit_id: int, client_id: int
) -> None:
    first = await reply(db, clock, visit_id, client_id, CSAT, score=5)
    second = await reply(db, clock, visit_id, client_id, NPS, score=9)
    clock.advance(minutes=2)
    last = await reply(db, clock, visit_id, client_id, COMMENT, comment="  Всё отлично  ")

    assert [a.counted for a in (first, second, last)] == [True, True, True]
    assert [a.state.step for a in (first, second, last)] == [NPS, COMMENT, DONE]
    assert last.state == SurveyState(visit_id, 5, 9, "Всё отлично", DONE)
    assert all(a.complaint is None and a.complaint_comment is None for a in (first, second, last))
    [stored] = await surveys(db)
    assert stored.finished_at == clock()
    assert await complaints(db) == []


async def test_a_low_csat_opens_a_complaint_at_once_with_branch_and_amount(
    db: Database, clock: FakeClock, visit_id: int, client_id: int
) -> None:
    answered = await reply(db, clock, visit_id, client_id, CSAT, score=2)

    complaint = answered.complaint
    assert complaint is not None
    assert (complaint.state, complaint.csat, complaint.nps) == (OPEN, 2, None)
    assert (complaint.branch, complaint.amount) == ("Автосервис", Decimal("4500.00"))
    assert (complaint.client_name, complaint.phone) == ("Смирнов Иван Петрович", PHONE)
    assert (complaint.car, complaint.visit_id, complaint.opened_at) == (
        "Kia Rio А123ВС77",
        visit_id,
        clock(),
    )
    [stored] = await complaints(db)
    assert (stored.id, stored.client_id) == (complaint.id, client_id)
    assert stored.branch_id is not None


async def test_a_low_nps_opens_the_complaint_when_the_csat_was_fine(
    db: Database, clock: FakeClock, visit_id: int, client_id: int
) -> None:
    first = await reply(db, clock, visit_id, client_id, CSAT, score=5)
    second = await reply(db, clock, visit_id, client_id, NPS, score=4)

    assert first.complaint is None
    assert second.complaint is not None
    assert (second.complaint.csat, second.complaint.nps) == (5, 4)


async def test_later_answers_land_on_the_complaint_and_the_comment_is_reported(
    db: Database, clock: FakeClock, visit_id: int, client_id: int
) -> None:
    opened = await reply(db, clock, visit_id, client_id, CSAT, score=1)
    rated = await reply(db, clock, visit_id, client_id, NPS, score=8)
    told = await reply(db, clock, visit_id, client_id, COMMENT, comment="Ждал машину три часа")

    assert opened.complaint is not None
    assert rated.complaint is None
    assert rated.complaint_comment is None
    assert told.complaint is None
    assert told.complaint_comment is not None
    assert told.complaint_comment.id == opened.complaint.id
    assert (told.complaint_comment.nps, told.complaint_comment.comment) == (
        8,
        "Ждал машину три часа",
    )
    assert len(await complaints(db)) == 1


async def test_skipping_the_comment_finishes_the_survey_and_reports_nothing_to_staff(
    db: Database, clock: FakeClock, visit_id: int, client_id: int
) -> None:
    await reply(db, clock, visit_id, client_id, CSAT, score=2)
    await reply(db, clock, visit_id, client_id, NPS, score=3)
    skipped = await reply(db, clock, visit_id, client_id, COMMENT, comment="   ")

    assert skipped.counted
    assert skipped.state == SurveyState(visit_id, 2, 3, None, DONE)
    assert skipped.complaint_comment is None


async def test_a_long_comment_is_cut_not_refused(
    db: Database, clock: FakeClock, visit_id: int, client_id: int
) -> None:
    await reply(db, clock, visit_id, client_id, CSAT, score=4)
    await reply(db, clock, visit_id, client_id, NPS, score=7)
    told = await reply(db, clock, visit_id, client_id, COMMENT, comment="я" * 2500)

    assert told.state.comment == "я" * 2000


async def test_a_second_csat_tap_does_not_count_and_returns_the_recorded_state(
    db: Database, clock: FakeClock, visit_id: int, client_id: int
) -> None:
    await reply(db, clock, visit_id, client_id, CSAT, score=4)
    again = await reply(db, clock, visit_id, client_id, CSAT, score=1)

    assert not again.counted
    assert again.state == SurveyState(visit_id, 4, None, None, NPS)
    assert again.complaint is None
    assert await complaints(db) == []


async def test_nps_before_csat_does_not_count(
    db: Database, clock: FakeClock, visit_id: int, client_id: int
) -> None:
    early = await reply(db, clock, visit_id, client_id, NPS, score=2)

    assert not early.counted
    assert early.state == SurveyState(visit_id, None, None, None, CSAT)
    assert await surveys(db) == []
    assert await complaints(db) == []


async def test_a_tap_after_the_survey_is_done_changes_nothing(
    db: Database, clock: FakeClock, visit_id: int, client_id: int
) -> None:
    await reply(db, clock, visit_id, client_id, CSAT, score=5)
    await reply(db, clock, visit_id, client_id, NPS, score=10)
    await reply(db, clock, visit_id, client_id, COMMENT, comment="Спасибо")
    late = await reply(db, clock, visit_id, client_id, NPS, score=0)

    assert not late.counted
    assert late.state == SurveyState(visit_id, 5, 10, "Спасибо", DONE)
    assert await complaints(db) == []


async def test_someone_elses_visit_is_not_yours_and_nothing_is_written(
    db: Database, clock: FakeClock, visit_id: int
) -> None:
    stranger = await add_client(db, phone="+79990000000", first_name="Олег")

    with pytest.raises(NotYours) as refused:
        await reply(db, clock, visit_id, stranger, CSAT, score=1)
    async with db.sessions() as session:
        with pytest.raises(NotYours):
            await survey_visit(session, visit_id, stranger)

    assert refused.value.field == "visit"
    assert await surveys(db) == []
    assert await complaints(db) == []


async def test_a_visit_that_does_not_exist_is_not_found(
    db: Database, clock: FakeClock, client_id: int
) -> None:
    with pytest.raises(NotFound):
        await reply(db, clock, 999, client_id, CSAT, score=5)


@pytest.mark.parametrize(
    ("question", "score"), [(CSAT, 0), (CSAT, 6), (CSAT, None), (NPS, -1), (NPS, 11)]
)
async def test_out_of_range_scores_are_refused(
    db: Database,
    clock: FakeClock,
    visit_id: int,
    client_id: int,
    question: str,
    score: int | None,
) -> None:
    if question == NPS:
        await reply(db, clock, visit_id, client_id, CSAT, score=5)

    with pytest.raises(DomainError) as refused:
        await reply(db, clock, visit_id, client_id, question, score=score)

    assert refused.value.field == "score"
    assert [(s.csat, s.nps) for s in await surveys(db)] == ([(5, None)] if question == NPS else [])


async def test_two_concurrent_csat_answers_count_once(
    db: Database, clock: FakeClock, visit_id: int, client_id: int
) -> None:
    both = await asyncio.gather(
        reply(db, clock, visit_id, client_id, CSAT, score=1),
        reply(db, clock, visit_id, client_id, CSAT, score=2),
    )

    counted = [a for a in both if a.counted]
    assert len(counted) == 1
    assert [a.complaint is not None for a in both] == [a.counted for a in both]
    assert {a.state.csat for a in both} == {counted[0].state.csat}
    assert len(await surveys(db)) == 1
    assert len(await complaints(db)) == 1


async def open_one(db: Database, clock: FakeClock, client_id: int) -> int:
    """A fresh visit rated 1: its complaint's id."""
    visit = await a_visit(db, clock, client_id)
    answered = await reply(db, clock, visit, client_id, CSAT, score=1)
    assert answered.complaint is not None
    return answered.complaint.id


async def test_a_complaint_taken_by_one_is_a_conflict_for_another(
    db: Database, clock: FakeClock, client_id: int
) -> None:
    complaint = await open_one(db, clock, client_id)
    async with db.sessions() as session, session.begin():
        taken = await take_complaint(session, complaint, by="Анна Петрова", now=clock())
    clock.advance(minutes=5)

    async with db.sessions() as session, session.begin():
        with pytest.raises(Conflict, match="already taken by Анна Петрова"):
            await take_complaint(session, complaint, by="Олег Сидоров", now=clock())
        again = await take_complaint(session, complaint, by="Анна Петрова", now=clock())

    assert (taken.state, taken.taken_by) == (TAKEN, "Анна Петрова")
    assert again.taken_at == taken.taken_at  # taking it again changed nothing


async def test_resolving_needs_a_note_and_happens_once(
    db: Database, clock: FakeClock, client_id: int
) -> None:
    complaint = await open_one(db, clock, client_id)

    async with db.sessions() as session, session.begin():
        with pytest.raises(DomainError) as refused:
            await resolve_complaint(session, complaint, by="Анна Петрова", note="  ", now=clock())
        resolved = await resolve_complaint(
            session, complaint, by="Анна Петрова", note=" Перезвонили, скидка 10% ", now=clock()
        )
        with pytest.raises(Conflict, match="already resolved"):
            await resolve_complaint(session, complaint, by="Олег", note="ещё раз", now=clock())
        with pytest.raises(Conflict, match="already resolved"):
            await take_complaint(session, complaint, by="Олег", now=clock())

    assert refused.value.field == "note"
    assert (resolved.state, resolved.resolution) == (RESOLVED, "Перезвонили, скидка 10%")
    assert (resolved.resolved_by, resolved.resolved_at) == ("Анна Петрова", clock())


async def test_open_complaints_lists_open_and_taken_oldest_first_not_resolved(
    db: Database, clock: FakeClock, client_id: int
) -> None:
    first = await open_one(db, clock, client_id)
    clock.advance(timedelta(hours=1))
    second = await open_one(db, clock, client_id)
    clock.advance(timedelta(hours=1))
    third = await open_one(db, clock, client_id)
    async with db.sessions() as session, session.begin():
        await take_complaint(session, second, by="Анна Петрова", now=clock())
        await resolve_complaint(session, first, by="Анна Петрова", note="Извинились", now=clock())

    async with db.sessions() as session:
        listed = await open_complaints(session)

    assert [(c.id, c.state) for c in listed] == [(second, TAKEN), (third, OPEN)]


@pytest.mark.parametrize(
    ("rules", "csat", "nps", "low"),
    [
        (ComplaintRules(), 3, None, True),
        (ComplaintRules(), 4, None, False),
        (ComplaintRules(), 4, 6, True),
        (ComplaintRules(), 4, 7, False),
        (ComplaintRules(csat_at_most=0, nps_at_most=-1), 1, 0, False),
    ],
)
def test_what_counts_as_a_complaint(
    rules: ComplaintRules, csat: int, nps: int | None, low: bool
) -> None:
    assert rules.is_low(csat, nps) is low
