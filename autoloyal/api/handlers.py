"""The integration API's handlers: parse the request, call one crm/ service, shape the answer.

Every write runs in one transaction: an error anywhere rolls back all of it. On SQLite the
writes of this process take turns on a lock, so they never wait in SQLite's busy handler
(which sleeps in steps of up to 100 ms); on PostgreSQL they run side by side and the
ledger's row locks order what must be ordered.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from autoloyal.api import schemas as s
from autoloyal.app import App
from autoloyal.messaging import template_library
from autoloyal.rules import bonus_rules, booking_notices, booking_rules, survey_invites
from crm import intake, workorders
from crm.bonuses import account, balance, redeem, reverse_redemption
from crm.booking import (
    BookingRequest,
    BookingView,
    BranchHours,
    Day,
    DayState,
    SlotTaken,
    act,
    book,
    booking,
    free_days,
    on_day,
    reschedule,
)
from crm.booking.inbound import ContactInput, ContactView, client_for_phone, record_contact
from crm.branches import BranchResolver
from crm.cards import CardInfo, Standing, active_card, standing
from crm.clock import Moment
from crm.contacts import ContactError, normalize_phone
from crm.errors import Conflict, DomainError
from storage import ShortTransactions, make_session_factory, read_only
from storage.booking import Booking
from storage.models import Car, Client, Visit

Model = TypeVar("Model", bound=BaseModel)
_EXTERNAL_ID: TypeAdapter[str] = TypeAdapter(s.ExternalId)
_MOVEMENTS: TypeAdapter[int] = TypeAdapter(s.Recent)
_PHONE: TypeAdapter[str] = TypeAdapter(s.Phone)
_CARD: TypeAdapter[str] = TypeAdapter(s.CardNumber)
_REF: TypeAdapter[str] = TypeAdapter(s.Ref)
_ROW_ID: TypeAdapter[int] = TypeAdapter(s.RowId)
_CODE: TypeAdapter[str] = TypeAdapter(s.Code)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
API = "api"
"""The source of a booking made here, the channel of its contact, the actor of its steps."""


class BadRequest(DomainError):
    """The request itself is malformed: bad JSON, a missing or invalid field."""


class Api:
    """What the handlers share: the app, the program's rules, and how to open sessions."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.settings
        self.rules = bonus_rules(settings)
        library = template_library(settings)
        self.invites = survey_invites(settings, library)
        self.bookings = booking_rules(settings)
        self.notices = booking_notices(settings, library)
        self.sources = settings.contacts.sources
        self.region = settings.company.country
        self.tz = settings.company.tz
        self.readers = make_session_factory(read_only(app.engine))
        self.writes = ShortTransactions(app.engine)
        # Departments known at the last work order; read again when one is not known.
        self._branches: BranchResolver | None = None

    def moment(self) -> Moment:
        return Moment.of(self.app.clock, self.tz)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        async with self.writes.begin() as session:
            yield session

    async def close(self) -> None:
        await self.writes.close()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        async with self.readers() as session, session.begin():
            yield session

    # ------------------------------------------------------------------------ clients

    async def upsert_client(self, request: web.Request) -> web.Response:
        external_id = _path_id(request)
        body = await _body(request, s.ClientIn)
        referred_by = None
        if body.referred_by is not None:
            referred_by = intake.ClientKey(**body.referred_by.model_dump())
        data = intake.ClientInput(
            full_name=body.full_name,
            phone=body.phone,
            email=body.email,
            birthday=body.birthday,
            gender=body.gender,
            consent_ads=body.consent_ads,
            card=body.card,
            referred_by=referred_by,
        )
        moment = self.moment()
        if body.birthday is not None and body.birthday > moment.today:
            raise BadRequest(f"{body.birthday} is in the future", field="birthday")
        async with self.writing() as session:
            client_id, created = await intake.upsert_client(
                session, external_id, data, moment, region=self.region
            )
            answer = await self._client_out(session, client_id, moment.today)
        return _json(answer, 201 if created else 200)

    async def get_client(self, request: web.Request) -> web.Response:
        external_id = _path_id(request)
        async with self.reading() as session:
            client_id = await intake.require_client(session, external_id)
            answer = await self._client_out(session, client_id, self.moment().today)
        return _json(answer)

    async def lookup(self, request: web.Request) -> web.Response:
        key = intake.ClientKey(
            phone=_query_text(request, "phone", _PHONE),
            card=_query_text(request, "card", _CARD),
            external_id=_query_text(request, "external_id", _EXTERNAL_ID),
        )
        async with self.reading() as session:
            client_id = await intake.find_client(session, key, region=self.region)
            answer = await self._client_out(session, client_id, self.moment().today)
        return _json(answer)

    async def bonuses(self, request: web.Request) -> web.Response:
        external_id = _path_id(request)
        movements = _query_int(request, "movements", _MOVEMENTS, 20)
        today = self.moment().today
        async with self.reading() as session:
            client_id = await intake.require_client(session, external_id)
            found = await account(session, self.rules, client_id, today, movements=movements)
            stored_id = await session.scalar(
                select(Client.external_id).where(Client.id == client_id)
            )
        answer = s.AccountOut(
            client_id=client_id,
            external_id=stored_id,
            balance=found.balance,
            tier=_tier(found.standing),
            card=_card(found.card),
            movements=[
                s.MovementOut.model_validate(m, from_attributes=True) for m in found.movements
            ],
            expiring=[
                s.ExpiringOut(amount=e.amount, expires_on=e.expires_on) for e in found.expiring
            ],
        )
        return _json(answer)

    async def redeem(self, request: web.Request) -> web.Response:
        external_id = _path_id(request)
        body = await _body(request, s.RedemptionIn)
        async with self.writing() as session:
            client_id = await intake.require_client(session, external_id)
            done = await redeem(
                session,
                self.rules,
                client_id,
                amount=body.amount,
                bill=body.bill,
                ref=body.ref,
                work_order=body.work_order,
                allow_partial=body.allow_partial,
                moment=self.moment(),
            )
        answer = s.RedemptionOut(
            accepted=done.accepted, balance=done.balance, ref=body.ref, repeated=done.repeated
        )
        return _json(answer, 200 if done.repeated else 201)

    async def reverse(self, request: web.Request) -> web.Response:
        external_id = _path_id(request)
        ref = _path_text(request, "ref", _REF)
        async with self.writing() as session:
            client_id = await intake.require_client(session, external_id)
            done = await reverse_redemption(session, client_id, ref, self.moment())
        answer = s.ReversalOut(
            returned=done.returned, balance=done.balance, ref=ref, repeated=done.repeated
        )
        return _json(answer, 200 if done.repeated else 201)

    # --------------------------------------------------------------------------- cars

    async def upsert_car(self, request: web.Request) -> web.Response:
        external_id = _path_id(request)
        body = await _body(request, s.CarIn)
        data = intake.CarInput(**body.model_dump())
        async with self.writing() as session:
            car_id, created = await intake.upsert_car(session, external_id, data, self.moment())
            car = await session.get_one(Car, car_id, populate_existing=True)
            owner = None
            if car.client_id is not None:
                owner = await session.scalar(
                    select(Client.external_id).where(Client.id == car.client_id)
                )
            answer = s.CarOut(
                id=car.id,
                external_id=external_id,
                owner=owner,
                vin=car.vin,
                plate=car.plate,
                make=car.make,
                model=car.model,
                year=car.year,
            )
        return _json(answer, 201 if created else 200)

    async def odometer(self, request: web.Request) -> web.Response:
        external_id = _path_id(request)
        body = await _body(request, s.OdometerIn)
        moment = self.moment()
        read_on = body.read_on or moment.today
        async with self.writing() as session:
            _, created = await workorders.record_odometer(
                session, external_id, body.km, read_on, moment
            )
        answer = s.OdometerOut(car=external_id, km=body.km, read_on=read_on, created=created)
        return _json(answer, 201 if created else 200)

    # ------------------------------------------------------------------------- visits

    async def post_visit(self, request: web.Request) -> web.Response:
        body = await _body(request, s.VisitIn)
        data = workorders.VisitInput(**body.model_dump())
        cached, self._branches = self._branches, None
        async with self.writing() as session:
            branches = (
                cached
                if cached is not None and cached.knows(data.department)
                else await BranchResolver.load(session)
            )
            done = await workorders.post_visit(
                session,
                self.rules,
                self.invites,
                data,
                self.moment(),
                branches=branches,
                bookings=self.bookings,
            )
        if not branches.created:  # kept only when it made no branch this transaction
            self._branches = branches
        accrued = done.accrued
        referral = sum(
            (m.amount for m in done.referral if m.client_id == done.client_id), Decimal("0.00")
        )
        survey = None
        if done.survey is not None:
            survey = s.SurveyOut(scheduled_at=done.survey.scheduled_at, reason=done.survey.reason)
        answer = s.VisitOut(
            id=done.visit_id,
            external_id=data.external_id,
            client=data.client,
            created=done.created,
            kind=done.kind,
            bonus=s.BonusOut(
                accrued=Decimal("0.00") if accrued is None else accrued.amount,
                expires_on=None if accrued is None else accrued.expires_on,
                balance=done.balance,
                tier=_tier(done.standing),
                referral=referral,
            ),
            survey=survey,
        )
        return _json(answer, 201 if done.created else 200)

    # ----------------------------------------------------------------------- bookings

    async def slots(self, request: web.Request) -> web.Response:
        code = _query_text(request, "service", _CODE)
        if code is None:
            raise BadRequest("service: required", field="service")
        day = _query_date(request, "date")
        now = self.app.clock()
        service = self.bookings.service(code)
        branch = self.bookings.branch(_query_text(request, "branch", _CODE))
        if not service.offered_at(branch.code):
            raise DomainError(
                f"{branch.name} does not offer {service.name}", field="service", code="not_offered"
            )
        async with self.reading() as session:
            if day is None:
                days = await free_days(session, self.bookings, branch, service, now)
            elif branch.local(now).date() <= day <= self.bookings.last_day(branch, now):
                days = await free_days(
                    session, self.bookings, branch, service, now, first=day, days=1
                )
            else:  # past or beyond the horizon: nothing to read (and no date to overflow)
                days = [Day(day, DayState.OUT)]
        answer = s.SlotsOut(
            service=service.code, branch=branch.code, days=[_day_out(branch, d) for d in days]
        )
        return _json(answer)

    async def post_booking(self, request: web.Request) -> web.Response:
        body = await _body(request, s.BookingIn)
        if (body.client is None) == (body.phone is None):
            raise BadRequest("give exactly one of client, phone", field="client")
        phone = None if body.phone is None else _phone(body.phone, self.region)
        try:
            view = await self._book(body, phone)
        except (Conflict, IntegrityError):
            # The same ref posted twice at once: the other request made the booking while
            # this one waited for the branch (and found its time taken, or the client
            # booked). Asked again, it answers that booking.
            if body.external_ref is None or not await self._ref_known(body.external_ref):
                raise
            view = await self._book(body, phone)
        return _json(await self._booking_answer(view), 201 if view.created else 200)

    async def _book(self, body: s.BookingIn, phone: str | None) -> BookingView:
        moment = self.moment()
        async with self.writing() as session:
            if body.client is not None:
                client_id = await intake.require_client(session, body.client)
            else:
                assert phone is not None
                client_id, _ = await client_for_phone(session, phone, moment, name=body.name)
            car_id = None if body.car is None else await intake.require_car(session, body.car)
            wanted = BookingRequest(
                client_id=client_id,
                service=body.service,
                starts_at=body.starts_at,
                source=API,
                branch=body.branch,
                car_id=car_id,
                comment=body.comment,
                external_ref=body.external_ref,
                actor=API,
            )
            with self._offering(body.branch):
                view = await book(session, self.bookings, wanted, moment, notices=self.notices)
            if view.created:
                contact = ContactInput(
                    channel=API,
                    purpose="service",
                    outcome="booked",
                    client_id=client_id,
                    branch=view.branch,
                    booking_id=view.id,
                )
                await record_contact(
                    session, contact, moment, sources=self.sources, region=self.region
                )
        return view

    async def _ref_known(self, ref: str) -> bool:
        async with self.reading() as session:
            found = await session.scalar(select(Booking.id).where(Booking.external_ref == ref))
        return found is not None

    async def day_bookings(self, request: web.Request) -> web.Response:
        day = _query_date(request, "date") or self.moment().today
        branch = _query_text(request, "branch", _CODE)
        async with self.reading() as session:
            views = await on_day(session, self.bookings, day, branch=branch)
            answers = await self._booking_answers(session, views)
        return _json(s.BookingsOut(date=day, bookings=answers))

    async def get_booking(self, request: web.Request) -> web.Response:
        booking_id = _path_row_id(request)
        async with self.reading() as session:
            view = await booking(session, self.bookings, booking_id)
            (answer,) = await self._booking_answers(session, [view])
        return _json(answer)

    async def patch_booking(self, request: web.Request) -> web.Response:
        booking_id = _path_row_id(request)
        body = await _body(request, s.BookingPatch)
        if body.action is None and body.starts_at is None:
            raise BadRequest("give an action, a new starts_at, or both", field="action")
        moment = self.moment()
        async with self.writing() as session:
            view = await booking(session, self.bookings, booking_id)
            if body.starts_at is not None:
                with self._offering(view.branch):
                    view = await self._move(session, view, body.starts_at, moment)
            if body.action is not None:
                view = await act(
                    session,
                    self.bookings,
                    view.id,
                    body.action,
                    moment,
                    actor=API,
                    notices=self.notices,
                )
            (answer,) = await self._booking_answers(session, [view])
        return _json(answer)

    async def _move(
        self, session: AsyncSession, view: BookingView, starts_at: datetime, moment: Moment
    ) -> BookingView:
        """Reschedule; a move already made to that start (a retried PATCH) answers the
        booking it made."""
        moved = await session.scalar(
            select(Booking.id).where(Booking.rescheduled_from_id == view.id)
        )
        if moved is not None:
            later = await booking(session, self.bookings, moved)
            if starts_at.tzinfo is not None and later.starts_at == starts_at:
                return later
        return await reschedule(
            session,
            self.bookings,
            view.id,
            starts_at,
            moment,
            actor=API,
            source=API,
            notices=self.notices,
        )

    @contextmanager
    def _offering(self, branch: str | None) -> Iterator[None]:
        """SlotTaken's alternatives on the branch's wall clock, as every start is shown."""
        try:
            yield
        except SlotTaken as taken:
            hours = self.bookings.branches.get(branch or "") or self.bookings.branch(None)
            local = [hours.local(start) for start in taken.alternatives]
            raise SlotTaken(str(taken), local) from None

    async def _booking_answer(self, view: BookingView) -> s.BookingOut:
        async with self.reading() as session:
            (answer,) = await self._booking_answers(session, [view])
        return answer

    async def _booking_answers(
        self, session: AsyncSession, views: Iterable[BookingView]
    ) -> list[s.BookingOut]:
        views = list(views)
        clients = await _external_ids(session, Client, {v.client_id for v in views})
        cars = await _external_ids(session, Car, {v.car_id for v in views} - {None})
        visits = await _external_ids(session, Visit, {v.visit_id for v in views} - {None})
        return [
            _booking_out(
                self._branch_hours(view),
                view,
                client=clients.get(view.client_id),
                car=None if view.car_id is None else cars.get(view.car_id),
                visit=None if view.visit_id is None else visits.get(view.visit_id),
            )
            for view in views
        ]

    def _branch_hours(self, view: BookingView) -> BranchHours:
        """The booking's branch; one no longer configured is shown, as crm shows it, on
        the first branch's clock."""
        found = self.bookings.branches.get(view.branch)
        return found or next(iter(self.bookings.branches.values()))

    # ----------------------------------------------------------------------- contacts

    async def post_contact(self, request: web.Request) -> web.Response:
        body = await _body(request, s.ContactIn)
        moment = self.moment()
        async with self.writing() as session:
            client_id = None
            if body.client is not None:
                client_id = await intake.require_client(session, body.client)
            data = ContactInput(
                channel=body.channel,
                purpose=body.purpose,
                outcome=body.outcome,
                phone=body.phone,
                client_id=client_id,
                name=body.name,
                source=body.source,
                campaign_id=body.campaign,
                staff=body.staff,
                branch=body.branch,
                booking_id=body.booking,
                note=body.note,
                external_ref=body.external_ref,
                happened_at=body.happened_at,
            )
            view = await record_contact(
                session, data, moment, sources=self.sources, region=self.region
            )
            answer = await _contact_out(session, view, self.tz)
        return _json(answer, 201 if view.created else 200)

    # ------------------------------------------------------------------------ helpers

    async def _client_out(self, session: AsyncSession, client_id: int, today: date) -> s.ClientOut:
        client = await session.get_one(Client, client_id, populate_existing=True)
        return s.ClientOut(
            id=client.id,
            external_id=client.external_id,
            full_name=client.full_name,
            phone=client.phone,
            email=client.email,
            birthday=client.birthday,
            gender=client.gender,
            card=_card(await active_card(session, client_id)),
            tier=_tier(await standing(session, self.rules.ladder, client_id, today)),
            balance=await balance(session, client_id, today),
        )


def _tier(found: Standing) -> s.TierOut:
    tier = found.tier
    return s.TierOut(
        name=tier.name,
        accrual_percent=tier.accrual_percent,
        discount_percent=tier.discount_percent,
        spend=found.spend,
        pinned=found.pinned is not None and found.pinned == tier,
        next=None if found.next is None else found.next.name,
        to_next=found.to_next,
    )


def _card(card: CardInfo | None) -> s.CardOut | None:
    if card is None:
        return None
    return s.CardOut(number=card.number, state=card.state, tier=card.tier)


def _day_out(branch: BranchHours, day: Day) -> s.DayOut:
    starts = [branch.local(start) for start in day.starts]
    return s.DayOut(date=day.day, state=day.state.value, starts=starts)


def _booking_out(
    branch: BranchHours,
    view: BookingView,
    *,
    client: str | None,
    car: str | None,
    visit: str | None,
) -> s.BookingOut:
    def local(moment: datetime | None) -> datetime | None:
        return None if moment is None else branch.local(moment)

    return s.BookingOut(
        id=view.id,
        state=cast(s.BookingState, view.state),  # one of STATES; pydantic checks it
        client_id=view.client_id,
        client=client,
        car=car,
        service=view.service,
        service_name=view.service_name,
        branch=view.branch,
        branch_name=view.branch_name,
        starts_at=branch.local(view.starts_at),
        ends_at=branch.local(view.ends_at),
        comment=view.comment,
        source=view.source,
        external_ref=view.external_ref,
        requested_at=branch.local(view.requested_at),
        confirmed_at=local(view.confirmed_at),
        arrived_at=local(view.arrived_at),
        completed_at=local(view.completed_at),
        cancelled_at=local(view.cancelled_at),
        declined_at=local(view.declined_at),
        no_show_at=local(view.no_show_at),
        rescheduled_from=view.rescheduled_from,
        visit=visit,
        actor=view.actor,
    )


async def _contact_out(session: AsyncSession, view: ContactView, tz: ZoneInfo) -> s.ContactOut:
    """The contact; its time on the company's clock, however it was sent."""
    client = None
    if view.client_id is not None:
        client = await session.scalar(select(Client.external_id).where(Client.id == view.client_id))
    return s.ContactOut(
        id=view.id,
        happened_at=view.happened_at.astimezone(tz),
        channel=view.channel,
        purpose=view.purpose,
        outcome=view.outcome,
        source=view.source,
        client_id=view.client_id,
        client=client,
        phone=view.phone,
        branch=view.branch,
        campaign=view.campaign_id,
        booking=view.booking_id,
        staff=view.staff,
        note=view.note,
        external_ref=view.external_ref,
    )


async def _external_ids(
    session: AsyncSession, table: type[Client] | type[Car] | type[Visit], ids: set[Any]
) -> dict[int, str | None]:
    """External ids of the rows with these ids."""
    if not ids:
        return {}
    rows = await session.execute(select(table.id, table.external_id).where(table.id.in_(ids)))
    return {row_id: external_id for row_id, external_id in rows}


def _phone(raw: str, region: str) -> str:
    try:
        return normalize_phone(raw, region)
    except ContactError as exc:
        raise BadRequest(str(exc), field="phone") from None


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=model.model_dump_json(), status=status, content_type="application/json"
    )


def _path_id(request: web.Request) -> str:
    return _path_text(request, "external_id", _EXTERNAL_ID)


def _path_text(request: web.Request, name: str, adapter: TypeAdapter[str]) -> str:
    try:
        return adapter.validate_python(request.match_info[name])
    except ValidationError as exc:
        raise BadRequest(f"{name}: {_reason(exc.errors()[0])}", field=name) from None


def _path_row_id(request: web.Request) -> int:
    try:
        return _ROW_ID.validate_python(request.match_info["id"], strict=False)
    except ValidationError as exc:
        raise BadRequest(f"id: {_reason(exc.errors()[0])}", field="id") from None


def _query_date(request: web.Request, name: str) -> date | None:
    """A YYYY-MM-DD date from the query (years 2000 to 2100), or None when not given."""
    text = request.query.get(name, "").strip()
    if not text:
        return None
    try:
        if _ISO_DATE.fullmatch(text) is None:
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name}: expected a date like 2026-11-25", field=name) from None
    if not 2000 <= day.year <= 2100:
        raise BadRequest(f"{name}: must be between the years 2000 and 2100", field=name)
    return day


def _query_int(request: web.Request, name: str, adapter: TypeAdapter[int], default: int) -> int:
    if name not in request.query:
        return default
    try:
        return adapter.validate_python(request.query[name], strict=False)
    except ValidationError as exc:
        raise BadRequest(f"{name}: {_reason(exc.errors()[0])}", field=name) from None


def _query_text(request: web.Request, name: str, adapter: TypeAdapter[str]) -> str | None:
    if not request.query.get(name):
        return None
    try:
        return adapter.validate_python(request.query[name])
    except ValidationError as exc:
        raise BadRequest(f"{name}: {_reason(exc.errors()[0])}", field=name) from None


async def _body(request: web.Request, model: type[Model]) -> Model:
    raw = await request.read()
    if not raw.strip():
        raise BadRequest("the body must be a JSON object", code="bad_json")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] in ("json_invalid", "json_type"):
            raise BadRequest(f"not valid JSON: {first['msg']}", code="bad_json") from None
        if first["type"] == "model_type":
            raise BadRequest("the body must be a JSON object", code="bad_json") from None
        field = ".".join(str(part) for part in first["loc"])
        raise BadRequest(f"{field}: {_reason(first)}", field=field) from None


def _reason(error: Any) -> str:
    if error["type"] == "missing":
        return "required"
    message: str = error["msg"]
    return message[0].lower() + message[1:]
