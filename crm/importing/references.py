"""Resolve the external ids that rows use to point at clients and cars."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Car, Client, ClientAlias


class ClientRefs:
    """External id (or an alias left by a merge) -> client id."""

    def __init__(self, ids: dict[str, int]) -> None:
        self._ids = ids

    @classmethod
    async def load(cls, session: AsyncSession, external_ids: Collection[str]) -> ClientRefs:
        direct = await session.execute(
            select(Client.external_id, Client.id).where(Client.external_id.in_(external_ids))
        )
        aliases = await session.execute(
            select(ClientAlias.external_id, ClientAlias.client_id).where(
                ClientAlias.external_id.in_(external_ids)
            )
        )
        ids: dict[str, int] = dict(aliases.all())
        ids.update({key: value for key, value in direct if key is not None})
        return cls(ids)

    def get(self, external_id: str) -> int | None:
        return self._ids.get(external_id)


async def car_refs(session: AsyncSession, external_ids: Collection[str]) -> dict[str, int]:
    """Car external id -> car id."""
    rows = await session.execute(
        select(Car.external_id, Car.id).where(Car.external_id.in_(external_ids))
    )
    return {key: value for key, value in rows if key is not None}
