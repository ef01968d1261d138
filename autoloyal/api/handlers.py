"""The integration API's handlers: parse the request, call one crm/ service, shape the answer.

Every write runs in one transaction: an error anywhere rolls back all of it. On SQLite the
writes of this process take turns on a lock, so they never wait in SQLite's busy handler
(which sleeps in steps of up to 100 ms); on PostgreSQL they run side by side and the
ledger's row locks order what must be ordered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from autoloyal.api import schemas as s
from autoloyal.app import App
from autoloyal.messaging import template_library
from autoloyal.rules import bonus_rules, survey_invites
from crm import intake, workorders
from crm.bonuses import account, balance, redeem, reverse_redemption
from crm.branches import BranchResolver
from crm.cards import CardInfo, Standing, active_card, standing
from crm.clock import Moment
from crm.errors import DomainError
from storage import ShortTransactions, make_session_factory, read_only
from storage.models import Car, Client

Model = TypeVar("Model", bound=BaseModel)
_EXTERNAL_ID: TypeAdapter[str] = TypeAdapter(s.ExternalId)
_MOVEMENTS: TypeAdapter[int] = TypeAdapter(s.Recent)
_PHONE: TypeAdapter[str] = TypeAdapter(s.Phone)
_CARD: TypeAdapter[str] = TypeAdapter(s.CardNumber)
_REF: TypeAdapter[str] = TypeAdapter(s.Ref)


class BadRequest(DomainError):
    """The request itself is malformed: bad JSON, a missing or invalid field."""


class Api:
    """What the handlers share: the app, the program's rules, and how to open sessions."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.settings
        self.rules = bonus_rules(settings)
        self.invites = survey_invites(settings, template_library(settings))
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
                session, self.rules, self.invites, data, self.moment(), branches=branches
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
