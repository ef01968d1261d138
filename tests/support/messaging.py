"""Building blocks for messaging tests: clients with contacts, queued messages, a dispatcher."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from crm.context import ClientFacts, CompanyInfo, message_context
from crm.templates import TemplateLibrary
from gateway.channels import Channel
from gateway.consent import ADVERTISING, ALL_CHANNELS
from gateway.dispatch import Dispatcher, DispatchPolicy
from gateway.outbox import Recipient, enqueue
from storage.models import Branch, Client, ClientConsent, Visit
from storage.outbox import Message, MessageAttempt
from tests.support.clock import FakeClock
from tests.support.databases import Database

COMPANY = CompanyInfo(
    name="Автоцентр Север",
    phone="+7 495 123-45-67",
    address="Москва, ул. Ленина, 1",
    booking_url="https://t.me/autoloyal_test_bot?start=book",
)
NIGHT = (time(21, 0), time(9, 0))
_numbers = itertools.count(1)


async def add_client(
    db: Database,
    *,
    telegram_id: int | None = None,
    phone: str | None = None,
    email: str | None = None,
    first_name: str = "Иван",
    middle_name: str = "Петрович",
    gender: str | None = "male",
    ads: bool | None = True,
    consents: Mapping[tuple[str, str], bool] | None = None,
    timezone: str | None = None,
    now: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> int:
    """A client; `ads` is the blanket advertising consent (None: no row at all)."""
    number = next(_numbers)
    rows = dict(consents or {})
    if ads is not None:
        rows.setdefault((ALL_CHANNELS, ADVERTISING), ads)
    async with db.sessions() as session, session.begin():
        client = Client(
            external_id=f"T{number}",
            first_name=first_name,
            middle_name=middle_name,
            last_name="Смирнов",
            gender=gender,
            phone=phone,
            email=email,
            telegram_id=telegram_id,
            timezone=timezone,
            created_at=now,
            updated_at=now,
        )
        session.add(client)
        await session.flush()
        for (channel, purpose), granted in rows.items():
            session.add(
                ClientConsent(
                    client_id=client.id,
                    channel=channel,
                    purpose=purpose,
                    granted=granted,
                    changed_at=now,
                    source="test",
                )
            )
        return client.id


async def queue_message(
    db: Database,
    clock: FakeClock,
    client_id: int,
    *,
    plan: Sequence[str] = ("telegram",),
    kind: str = ADVERTISING,
    template: str = "winback",
    key: str | None = None,
    not_before: datetime | None = None,
) -> int:
    """Render `template` for the client and put it in the outbox; returns the message id."""
    key = key or f"test:{client_id}:{next(_numbers)}"
    async with db.sessions() as session, session.begin():
        compiled = await TemplateLibrary().get(session, template)
        facts = ClientFacts(client_id, "Иван", "Петрович", "Смирнов", "male", date(1980, 5, 1))
        context = message_context(COMPANY, facts, None, clock().date())
        await enqueue(
            session,
            compiled,
            [Recipient(client_id, key, context)],
            plan=plan,
            kind=kind,
            now=clock(),
            not_before=not_before,
        )
        return int(
            await session.scalar(select(Message.id).where(Message.idempotency_key == key)) or 0
        )


def make_dispatcher(
    db: Database, channels: Mapping[str, Channel], clock: FakeClock, **policy: Any
) -> Dispatcher:
    settings: dict[str, Any] = {"night": NIGHT, "retry_base_seconds": 30.0}
    settings.update(policy)
    return Dispatcher(
        db.sessions, channels, DispatchPolicy(**settings), clock, rng=random.Random(7)
    )


async def message(db: Database, message_id: int) -> Message:
    async with db.sessions() as session:
        return await session.get_one(Message, message_id)


async def attempts(db: Database, message_id: int) -> list[MessageAttempt]:
    async with db.sessions() as session:
        found = await session.scalars(
            select(MessageAttempt)
            .where(MessageAttempt.message_id == message_id)
            .order_by(MessageAttempt.id)
        )
        return list(found)


async def add_visit(
    db: Database,
    client_id: int,
    day: date,
    amount: str | int,
    *,
    kind: str = "repair",
    margin: str | None = None,
    car_id: int | None = None,
    now: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> None:
    """A visit at the default branch, paid `amount` (and `margin`) roubles."""
    async with db.sessions() as session, session.begin():
        branch = await session.scalar(select(Branch.id))
        assert branch is not None
        session.add(
            Visit(
                client_id=client_id,
                car_id=car_id,
                branch_id=branch,
                visited_on=day,
                amount=Decimal(amount),
                margin=None if margin is None else Decimal(margin),
                kind=kind,
                created_at=now,
                updated_at=now,
            )
        )
