"""How a command names a client: one CLIENT argument, the same forms everywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

CLIENT_HELP = "The client: external id, phone (any notation), card number or #id."
ClientArg = Annotated[str, typer.Argument(help=CLIENT_HELP, show_default=False)]


async def find_client(session: AsyncSession, text: str, *, region: str) -> tuple[int, str]:
    """The client `text` names, and how to show them: "name (external id or #id)".

    `text` is tried as an external id, then a phone, then a card number, then `#N` or `N`,
    the id in autoloyal: a bare number is an id only when no external id, phone or card is
    that number (crm.intake.find_client_by_any). None found: NotFound, one line, exit 2.
    """
    from crm import intake
    from storage.models import Client

    client_id = await intake.find_client_by_any(session, text, region=region)
    client = await session.get_one(Client, client_id)
    name = client.full_name or client.phone or client.email or f"#{client.id}"
    return client_id, f"{name} ({client.external_id or '#' + str(client.id)})"
