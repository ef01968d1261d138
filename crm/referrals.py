"""Referral codes: the short code a client shares, `t.me/<bot>?start=ref_<code>`.

A code is made the first time the client's is asked for, from letters and digits that
cannot be misread for one another (no 0/O, 1/I/L), and read back in any case.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crm.errors import NotFound
from storage.models import Client

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LENGTH = 6
_TRIES = 8


async def referral_code(session: AsyncSession, client_id: int) -> str:
    """The client's code, made now if they have none; the same code ever after.

    Two processes making one at once both end with the code that was stored first.
    """
    code = await session.scalar(select(Client.referral_code).where(Client.id == client_id))
    if code is not None:
        return code
    for _ in range(_TRIES):
        candidate = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        try:
            async with session.begin_nested():  # a collision must not spoil the caller's work
                await session.execute(
                    update(Client)
                    .where(Client.id == client_id, Client.referral_code.is_(None))
                    .values(referral_code=candidate)
                )
        except IntegrityError:
            continue
        stored = await session.scalar(select(Client.referral_code).where(Client.id == client_id))
        if stored is None:
            raise NotFound(f"no client #{client_id}", field="client")
        return stored
    raise RuntimeError(f"no free referral code in {_TRIES} tries")  # 31^6 codes: never


def clean_code(text: str) -> str | None:
    """A code as typed or carried by a link, upper-cased; None when it cannot be one."""
    code = text.strip().upper()
    if len(code) != LENGTH or any(char not in ALPHABET for char in code):
        return None
    return code


async def client_by_referral_code(session: AsyncSession, text: str) -> int | None:
    code = clean_code(text)
    if code is None:
        return None
    return await session.scalar(select(Client.id).where(Client.referral_code == code))
