"""Visit surveys and the complaints low answers open.

One answer per visit: a survey goes CSAT -> NPS -> comment (or skip) -> done, and only the
answer the survey expects next counts. A second tap on an old keyboard, a replayed
callback or a tap after the end changes nothing, and two taps at once count once: the
first answer inserts the row (ON CONFLICT DO NOTHING on the visit), each later one moves
the step with a conditional UPDATE, and what the database says it changed decides.
A complaint is one per visit too, opened by the first low answer so staff hear at once;
the survey's later answers are copied onto it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeAlias, cast

from sqlalchemy import CursorResult, Result, Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.errors import Conflict, DomainError, NotFound
from storage.bulk import conflict_insert, table_of
from storage.feedback import Complaint, SurveyAnswer
from storage.models import Branch, Car, Client, Visit

# The questions, and the steps `SurveyAnswer.step` records: the question answered next.
CSAT = "csat"
NPS = "nps"
COMMENT = "comment"
DONE = "done"

OPEN = "open"
TAKEN = "taken"
RESOLVED = "resolved"

COMMENT_MAX = 2000
_SCORES = {CSAT: range(1, 6), NPS: range(0, 11)}
_NEXT = {CSAT: NPS, NPS: COMMENT, COMMENT: DONE}
_Row: TypeAlias = "Row[*tuple[Any, ...]]"


class NotYours(DomainError):
    """The visit is another client's: the bot refuses it and says nothing more about it."""

    code = "not_yours"

    def __init__(self) -> None:
        super().__init__("this visit is not yours", field="visit")


@dataclass(frozen=True, slots=True)
class ComplaintRules:
    """Which answers open a complaint: a CSAT at most `csat_at_most` or an NPS at most
    `nps_at_most`; 0 and -1 (below every score) mean never."""

    csat_at_most: int = 3
    nps_at_most: int = 6

    def is_low(self, csat: int | None, nps: int | None) -> bool:
        return (csat is not None and csat <= self.csat_at_most) or (
            nps is not None and nps <= self.nps_at_most
        )


@dataclass(frozen=True, slots=True)
class SurveyState:
    """What a visit's survey has recorded; `step` is the question answered next (CSAT when
    nothing is recorded yet, DONE at the end)."""

    visit_id: int
    csat: int | None
    nps: int | None
    comment: str | None
    step: str


@dataclass(frozen=True, slots=True)
class SurveyVisit:
    """A visit as its survey shows it; `state` is None until the first answer."""

    visit_id: int
    visited_on: date
    branch: str
    amount: Decimal
    car: str | None
    state: SurveyState | None


@dataclass(frozen=True, slots=True)
class ComplaintFacts:
    """A complaint with everything a staff alert shows."""

    id: int
    state: str
    client_id: int
    client_name: str
    phone: str | None
    car: str | None
    visit_id: int
    visited_on: date
    branch: str | None
    amount: Decimal
    csat: int | None
    nps: int | None
    comment: str | None
    opened_at: datetime
    taken_by: str | None
    taken_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None


@dataclass(frozen=True, slots=True)
class Answered:
    """What one answer did. `complaint` is set only when this answer opened the complaint,
    `complaint_comment` when it added a comment to one already open: alert staff after
    the commit, once."""

    counted: bool
    state: SurveyState
    complaint: ComplaintFacts | None = None
    complaint_comment: ComplaintFacts | None = None


async def survey_visit(session: AsyncSession, visit_id: int, client_id: int) -> SurveyVisit:
    """The visit and its survey so far, for the client who made it.

    A missing visit is NotFound; another client's is NotYours, and nothing of it is shown.
    """
    visit = await _own_visit(session, visit_id, client_id)
    return SurveyVisit(
        visit_id=visit_id,
        visited_on=visit.visited_on,
        branch=visit.name,
        amount=visit.amount,
        car=_car_title(visit.make, visit.model, visit.plate),
        state=await _state(session, visit_id),
    )


async def answer(
    session: AsyncSession,
    rules: ComplaintRules,
    visit_id: int,
    client_id: int,
    *,
    question: str,
    score: int | None = None,
    comment: str | None = None,
    channel: str,
    now: datetime,
) -> Answered:
    """Record one answer to a visit's survey if it is the one the survey expects next.

    Any other (a replay, an old keyboard, after the end) changes nothing and comes back
    with counted=False and the recorded state, which is not an error. For COMMENT,
    `comment=None` or blank skips; a longer one is cut to 2000 characters, not refused.
    """
    values = _answer_values(question, score, comment)
    visit = await _own_visit(session, visit_id, client_id)
    if question == CSAT:
        counted = await _start(session, visit, values, channel, now)
    else:
        counted = await _move(session, visit_id, question, values, now)
    state = await _state(session, visit_id) or SurveyState(visit_id, None, None, None, CSAT)
    if not counted:
        return Answered(False, state)
    opened, commented = await _file_complaint(session, rules, visit, state, values, now)
    return Answered(True, state, opened, commented)


async def complaint_facts(session: AsyncSession, complaint_id: int) -> ComplaintFacts:
    """The complaint as staff see it, read fresh (never from the session's stale copies)."""
    row = (await session.execute(_COMPLAINTS.where(Complaint.id == complaint_id))).first()
    if row is None:
        raise NotFound(f"no complaint #{complaint_id}", field="complaint")
    return _facts(row)


async def take_complaint(
    session: AsyncSession, complaint_id: int, *, by: str, now: datetime
) -> ComplaintFacts:
    """Take an open complaint to work on it; taking it again by the same person changes nothing.

    Of two people taking it at once, the one whose conditional UPDATE moves it from open
    wins; the other gets a Conflict naming who took it.
    """
    taker = _person(by)
    taken = await session.execute(
        update(Complaint)
        .where(Complaint.id == complaint_id, Complaint.state == OPEN)
        .values(state=TAKEN, taken_by=taker, taken_at=now)
    )
    facts = await complaint_facts(session, complaint_id)
    if _rowcount(taken) or (facts.state == TAKEN and facts.taken_by == taker):
        return facts
    if facts.state == RESOLVED:
        raise Conflict("already resolved", field="complaint")
    raise Conflict(f"already taken by {facts.taken_by}", field="complaint")


async def resolve_complaint(
    session: AsyncSession, complaint_id: int, *, by: str, note: str, now: datetime
) -> ComplaintFacts:
    """Close an open or taken complaint with a note of what was done.

    Anyone may resolve it, not only who took it; the note is required, and resolving twice
    is a Conflict (the first resolution stands).
    """
    resolver = _person(by)
    resolution = note.strip()
    if not resolution:
        raise DomainError("say how the complaint was resolved", field="note")
    resolved = await session.execute(
        update(Complaint)
        .where(Complaint.id == complaint_id, Complaint.state.in_((OPEN, TAKEN)))
        .values(state=RESOLVED, resolved_by=resolver, resolved_at=now, resolution=resolution)
    )
    facts = await complaint_facts(session, complaint_id)
    if not _rowcount(resolved):
        raise Conflict("already resolved", field="complaint")
    return facts


async def open_complaints(
    session: AsyncSession, *, branch_id: int | None = None, limit: int = 50
) -> list[ComplaintFacts]:
    """Complaints still to answer, open and taken alike, the oldest first."""
    query = _COMPLAINTS.where(Complaint.state.in_((OPEN, TAKEN)))
    if branch_id is not None:
        query = query.where(Complaint.branch_id == branch_id)
    rows = await session.execute(query.order_by(Complaint.opened_at, Complaint.id).limit(limit))
    return [_facts(row) for row in rows]


def _answer_values(question: str, score: int | None, comment: str | None) -> dict[str, Any]:
    """The columns this answer sets, checked before anything is read or written."""
    if question == COMMENT:
        text = (comment or "").strip()[:COMMENT_MAX]
        return {COMMENT: text or None}
    allowed = _SCORES.get(question)
    if allowed is None:
        raise DomainError(f"unknown question {question!r}", field="question")
    if score is None or score not in allowed:
        raise DomainError(
            f"{question.upper()} is from {allowed[0]} to {allowed[-1]}", field="score"
        )
    return {question: score}


_CAR = (Car.make, Car.model, Car.plate)
_VISIT = (
    select(Visit.id.label("visit_id"), Visit.client_id, Visit.branch_id, Visit.visited_on)
    .add_columns(Visit.amount, Branch.name, *_CAR)
    .join(Branch, Branch.id == Visit.branch_id)
    .outerjoin(Car, Car.id == Visit.car_id)
)


async def _own_visit(session: AsyncSession, visit_id: int, client_id: int) -> _Row:
    visit = (await session.execute(_VISIT.where(Visit.id == visit_id))).first()
    if visit is None:
        raise NotFound(f"no visit #{visit_id}", field="visit")
    if visit.client_id != client_id:
        raise NotYours()
    return visit


_STATE = select(SurveyAnswer.csat, SurveyAnswer.nps, SurveyAnswer.comment, SurveyAnswer.step)


async def _state(session: AsyncSession, visit_id: int) -> SurveyState | None:
    # Columns, not the entity: a conditional UPDATE leaves the session's copy stale.
    row = (await session.execute(_STATE.where(SurveyAnswer.visit_id == visit_id))).first()
    return None if row is None else SurveyState(visit_id, row.csat, row.nps, row.comment, row.step)


async def _start(
    session: AsyncSession, visit: _Row, values: dict[str, Any], channel: str, now: datetime
) -> bool:
    """Insert the survey with its CSAT; False when a row already exists (this tap is late)."""
    table = table_of(SurveyAnswer)
    inserted = await session.execute(
        conflict_insert(session, SurveyAnswer)
        .values(
            visit_id=visit.visit_id,
            client_id=visit.client_id,
            step=_NEXT[CSAT],
            channel=channel,
            started_at=now,
            **values,
        )
        .on_conflict_do_nothing(index_elements=["visit_id"])
        .returning(table.c.visit_id)
    )
    return inserted.first() is not None


async def _move(
    session: AsyncSession, visit_id: int, question: str, values: dict[str, Any], now: datetime
) -> bool:
    """Record the answer and move to the next step, only if the survey is at `question`."""
    step = _NEXT[question]
    moved = await session.execute(
        update(SurveyAnswer)
        .where(SurveyAnswer.visit_id == visit_id, SurveyAnswer.step == question)
        .values(step=step, finished_at=now if step == DONE else None, **values)
    )
    return _rowcount(moved) == 1


async def _file_complaint(
    session: AsyncSession,
    rules: ComplaintRules,
    visit: _Row,
    answers: SurveyState,
    values: dict[str, Any],
    now: datetime,
) -> tuple[ComplaintFacts | None, ComplaintFacts | None]:
    """Copy this answer onto the visit's complaint, or open one if the answers so far are low.

    Returns (the complaint this answer opened, the complaint this answer's comment joined).
    """
    filed = await session.scalar(select(Complaint.id).where(Complaint.visit_id == answers.visit_id))
    if filed is not None:
        await session.execute(update(Complaint).where(Complaint.id == filed).values(**values))
        joined = values.get(COMMENT) is not None
        return None, await complaint_facts(session, filed) if joined else None
    if not rules.is_low(answers.csat, answers.nps):
        return None, None
    opened = await session.scalar(
        conflict_insert(session, Complaint)
        .values(
            visit_id=answers.visit_id,
            client_id=visit.client_id,
            branch_id=visit.branch_id,
            csat=answers.csat,
            nps=answers.nps,
            comment=answers.comment,
            state=OPEN,
            opened_at=now,
        )
        .on_conflict_do_nothing(index_elements=["visit_id"])
        .returning(table_of(Complaint).c.id)
    )
    return (None if opened is None else await complaint_facts(session, opened)), None


_COMPLAINTS = (
    select(Complaint, Client, Visit.visited_on, Visit.amount, Branch.name, *_CAR)
    .join(Client, Client.id == Complaint.client_id)
    .join(Visit, Visit.id == Complaint.visit_id)
    .outerjoin(Car, Car.id == Visit.car_id)
    .outerjoin(Branch, Branch.id == Complaint.branch_id)
    .execution_options(populate_existing=True)
)


def _facts(row: _Row) -> ComplaintFacts:
    complaint: Complaint = row.Complaint
    client: Client = row.Client
    return ComplaintFacts(
        id=complaint.id,
        state=complaint.state,
        client_id=client.id,
        client_name=client.full_name,
        phone=client.phone,
        car=_car_title(row.make, row.model, row.plate),
        visit_id=complaint.visit_id,
        visited_on=row.visited_on,
        branch=row.name,
        amount=row.amount,
        csat=complaint.csat,
        nps=complaint.nps,
        comment=complaint.comment,
        opened_at=complaint.opened_at,
        taken_by=complaint.taken_by,
        taken_at=complaint.taken_at,
        resolved_by=complaint.resolved_by,
        resolved_at=complaint.resolved_at,
        resolution=complaint.resolution,
    )


def _car_title(make: str | None, model: str | None, plate: str | None) -> str | None:
    return " ".join(part for part in (make, model, plate) if part) or None


def _person(by: str) -> str:
    person = by.strip()
    if not person:
        raise DomainError("say who is doing it", field="by")
    return person


def _rowcount(result: Result[Any]) -> int:
    return cast("CursorResult[Any]", result).rowcount
