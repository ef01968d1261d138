"""Writing off expired lots for every client: a daily job (and `autoloyal bonus expire`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.bonuses.ledger import ZERO, clients_with_expired_lots, expire_client, lock_account
from crm.clock import Moment


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    clients: int
    amount: Decimal


async def expire_due(
    sessions: async_sessionmaker[AsyncSession], moment: Moment, *, batch_size: int = 200
) -> ExpiryReport:
    """Write off what is left on every lot whose day has come, `batch_size` clients per
    transaction. Safe to run twice or from two processes: each lot's write-off has its own
    reference, and each client's account is locked while it is written."""
    after, clients, total = 0, 0, ZERO
    while True:
        async with sessions() as session, session.begin():
            ids = await clients_with_expired_lots(
                session, moment.today, after=after, limit=batch_size
            )
            for client_id in ids:
                await lock_account(session, client_id)
                total += await expire_client(session, client_id, moment)
        if not ids:
            return ExpiryReport(clients, total)
        clients += len(ids)
        after = ids[-1]
