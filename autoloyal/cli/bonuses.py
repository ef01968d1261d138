"""`autoloyal bonus ...` and `autoloyal card ...`: the bonus program from the shell.

A client is named by external id, phone (any notation), card number or `#id` (cli/clients.py).
"""

from __future__ import annotations

import enum
import getpass
import json
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from autoloyal.cli.clients import ClientArg, find_client
from autoloyal.cli.console import guarded, out, run_async, settings_of

T = TypeVar("T")

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.ext.asyncio import AsyncSession

    from autoloyal.app import App
    from crm import cards
    from crm.bonuses import Account, Movement
    from crm.clock import Moment

    Work = Callable[[App, AsyncSession, Moment], Awaitable[T]]

bonus_app = typer.Typer(
    help="Bonus accounts: balance, history, adjustments, expiry, birthday bonuses.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
card_app = typer.Typer(
    help="Discount cards: show, produce, issue, lose, withdraw, replace.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

By = Annotated[
    str, typer.Option("--by", help="Who makes the change (kept with it). Default: your login.")
]
Reason = Annotated[str, typer.Option("--reason", help="Why (kept with the change).")]


class Format(enum.StrEnum):
    table = "table"
    json = "json"


def _run(ctx: typer.Context, work: Work[T], *, reading: bool = False) -> T:
    """Open the app and run `work` in one transaction, rolled back on any error;
    `reading`: a read-only one, which never waits behind a writer."""
    from autoloyal.app import open_app
    from crm.clock import Moment
    from storage import make_session_factory, read_only

    settings = settings_of(ctx)

    async def go() -> T:
        async with open_app(settings) as app:
            engine = read_only(app.engine) if reading else app.engine
            async with make_session_factory(engine)() as session, session.begin():
                return await work(app, session, Moment.of(app.clock, settings.company.tz))

    return run_async(go())


def _read(ctx: typer.Context, work: Work[T]) -> T:
    return _run(ctx, work, reading=True)


def _who(by: str) -> str:
    return by.strip() or f"cli:{getpass.getuser()}"


async def _client(app: App, session: AsyncSession, text: str) -> tuple[int, str]:
    return await find_client(session, text, region=app.settings.company.country)


# ------------------------------------------------------------------------------ bonus


@bonus_app.command("balance")
def bonus_balance(
    ctx: typer.Context,
    client: ClientArg,
    output: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """The client's balance, tier, card and bonuses about to expire."""
    from autoloyal.rules import bonus_rules
    from crm.bonuses import account
    from crm.importing.report import sum_text

    async def work(app: App, session: AsyncSession, moment: Moment) -> tuple[str, Account]:
        client_id, who = await _client(app, session, client)
        rules = bonus_rules(app.settings)
        return who, await account(session, rules, client_id, moment.today, movements=0)

    who, found = _read(ctx, work)
    if output is Format.json:
        out.print_json(json.dumps(_account_json(found), default=str, ensure_ascii=False))
        return
    standing = found.standing
    tier = standing.tier
    out.print(f"{who}: balance {sum_text(found.balance)}")
    line = f"tier {tier.name} ({tier.accrual_percent.normalize():f} % back"
    line += f", discount {tier.discount_percent.normalize():f} %)"
    line += f", spend over the year {sum_text(standing.spend)}"
    if standing.next is not None and standing.to_next is not None:
        line += f"; {sum_text(standing.to_next)} more to {standing.next.name}"
    if standing.pinned is not None:
        line += f"; the card gives at least {standing.pinned.name}"
    out.print(line)
    card = found.card
    out.print(f"card {card.number} ({card.state})" if card else "no card")
    for lot in found.expiring:
        out.print(f"expires {lot.expires_on:%d.%m.%Y}: {sum_text(lot.amount)}")


def _account_json(found: Account) -> dict[str, Any]:
    standing, card = found.standing, found.card
    return {
        "client_id": found.client_id,
        "balance": str(found.balance),
        "tier": standing.tier.name,
        "spend": str(standing.spend),
        "next": standing.next.name if standing.next else None,
        "to_next": None if standing.to_next is None else str(standing.to_next),
        "card": None if card is None else {"number": card.number, "state": card.state},
        "expiring": [
            {"expires_on": str(e.expires_on), "amount": str(e.amount)} for e in found.expiring
        ],
    }


@bonus_app.command("history")
def bonus_history(
    ctx: typer.Context,
    client: ClientArg,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first.")] = 20,
    output: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """The client's movements, newest first: accruals, redemptions, expiries, adjustments."""
    from rich.table import Table

    from crm.bonuses import history
    from crm.importing.report import sum_text

    async def work(app: App, session: AsyncSession, moment: Moment) -> tuple[str, list[Movement]]:
        client_id, who = await _client(app, session, client)
        return who, await history(session, client_id, limit=limit)

    who, movements = _read(ctx, work)
    if output is Format.json:
        rows = [
            {
                "id": m.id,
                "kind": m.kind,
                "amount": str(m.amount),
                "at": m.created_at.isoformat(),
                "ref": m.ref,
                "work_order": m.work_order,
                "reason": m.reason,
                "by": m.actor,
                "expires_on": None if m.expires_on is None else str(m.expires_on),
            }
            for m in movements
        ]
        out.print_json(json.dumps(rows, ensure_ascii=False))
        return
    zone = settings_of(ctx).company.tz
    table = Table("when", "kind", "amount", "expires", "what", box=None, pad_edge=False)
    for m in movements:
        what = "; ".join(
            part
            for part in (
                m.work_order and f"work order {m.work_order}",
                m.reason,
                m.actor and f"by {m.actor}",
                m.ref if m.kind in ("redemption", "adjustment") and m.ref else None,
            )
            if part
        )
        table.add_row(
            f"{m.created_at.astimezone(zone):%d.%m.%Y %H:%M}",
            m.kind,
            f"{'+' if m.amount > 0 else ''}{sum_text(m.amount)}",
            "" if m.expires_on is None else f"{m.expires_on:%d.%m.%Y}",
            what,
        )
    out.print(who)
    out.print(table if movements else "no movements yet")


@bonus_app.command("adjust")
def bonus_adjust(
    ctx: typer.Context,
    client: ClientArg,
    add: Annotated[Decimal | None, typer.Option("--add", help="Bonuses to add.")] = None,
    take: Annotated[Decimal | None, typer.Option("--take", help="Bonuses to take away.")] = None,
    reason: Reason = "",
    by: By = "",
    ref: Annotated[
        str | None, typer.Option("--ref", help="A reference: the same one twice moves once.")
    ] = None,
) -> None:
    """Add or take bonuses by hand, with the reason; the balance never goes below zero."""
    from autoloyal.rules import bonus_rules
    from crm.bonuses import account, adjust
    from crm.importing.report import sum_text

    given = add if take is None else take
    if given is None or (add is not None and take is not None):
        raise typer.BadParameter("give exactly one of --add and --take")
    if given <= 0:
        raise typer.BadParameter("the amount must be positive")
    amount = given if take is None else -given

    async def work(app: App, session: AsyncSession, moment: Moment) -> tuple[str, str]:
        client_id, who = await _client(app, session, client)
        rules = bonus_rules(app.settings)
        moved = await adjust(
            session, rules, client_id, amount=amount, reason=reason, actor=_who(by),
            moment=moment, ref=ref,
        )  # fmt: skip
        left = await account(session, rules, client_id, moment.today, movements=0)
        done = "already done under this --ref" if moved.repeated else f"{moved.amount:+}"
        return who, f"{done}; balance {sum_text(left.balance)}"

    who, summary = _run(ctx, work)
    out.print(f"{who}: {summary}")


@bonus_app.command("expire")
def bonus_expire(ctx: typer.Context) -> None:
    """Write off bonuses whose validity ended (run daily; running twice writes nothing twice)."""
    from autoloyal.app import open_app
    from crm.bonuses.expiry import expire_due
    from crm.clock import Moment
    from crm.importing.report import sum_text, thousands

    settings = settings_of(ctx)

    async def go() -> tuple[int, Decimal]:
        async with open_app(settings) as app:
            report = await expire_due(app.sessions, Moment.of(app.clock, settings.company.tz))
            return report.clients, report.amount

    clients, amount = run_async(go())
    out.print(f"expired {sum_text(amount)} bonuses of {thousands(clients)} clients")


@bonus_app.command("birthday")
def bonus_birthday(ctx: typer.Context) -> None:
    """Give today's birthdays their birthday bonus (once a year each; safe to run again)."""
    from autoloyal.rules import bonus_rules
    from crm.bonuses.birthdays import grant_birthday_bonuses
    from crm.importing.report import thousands

    async def work(app: App, session: AsyncSession, moment: Moment) -> int:
        return len(await grant_birthday_bonuses(session, bonus_rules(app.settings), moment))

    granted = _run(ctx, work)
    out.print(f"birthday bonus given to {thousands(granted)} clients")


# ------------------------------------------------------------------------------- card


@card_app.command("show")
def card_show(
    ctx: typer.Context, number: Annotated[str, typer.Argument(help="Card number.")]
) -> None:
    """A card's state, holder and whole history."""
    from crm import cards
    from storage.models import Client

    async def work(app: App, session: AsyncSession, moment: Moment) -> tuple[cards.CardInfo, str]:
        card = await cards.find_card(session, number)
        holder = "-"
        if card.client_id is not None:
            client = await session.get_one(Client, card.client_id)
            holder = f"{client.full_name or client.phone} ({client.external_id or client.id})"
        return card, holder

    card, holder = _read(ctx, work)
    zone = settings_of(ctx).company.tz
    out.print(f"card {card.number}: {card.state}, holder {holder}")
    if card.tier:
        out.print(f"pinned tier: {card.tier}")
    if card.replaced_by:
        out.print(f"replaced by {card.replaced_by}")
    for event in card.events:
        line = f"  {event.happened_at.astimezone(zone):%d.%m.%Y %H:%M} {event.state}"
        line += "".join(
            f"; {part}" for part in (event.reason, event.actor and f"by {event.actor}") if part
        )
        out.print(line)


@card_app.command("produce")
def card_produce(
    ctx: typer.Context,
    numbers: Annotated[
        list[str], typer.Argument(help="Numbers, or ranges of numbers like 20000001-20000500.")
    ],
    by: By = "",
) -> None:
    """Register printed cards, ready to issue; numbers already known are left alone."""
    from crm import cards
    from crm.importing.report import thousands

    wanted = guarded(lambda: _expand(numbers))

    async def work(app: App, session: AsyncSession, moment: Moment) -> int:
        return await cards.produce(session, wanted, actor=_who(by), now=moment.now)

    created = _run(ctx, work)
    out.print(f"{thousands(created)} new cards of {thousands(len(wanted))}")


_RANGE = re.compile(r"(\d+)-(\d+)")
MAX_RANGE = 100_000


def _expand(items: list[str]) -> list[str]:
    from crm.errors import DomainError

    numbers: list[str] = []
    for item in items:
        match = _RANGE.fullmatch(item.strip())
        if match is None:
            numbers.append(item)
            continue
        first, last = match.groups()
        if int(last) < int(first) or int(last) - int(first) >= MAX_RANGE:
            raise DomainError(f"{item}: a range runs up, at most {MAX_RANGE} cards")
        numbers += [str(n).zfill(len(first)) for n in range(int(first), int(last) + 1)]
    return numbers


@card_app.command("issue")
def card_issue(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Card number.")],
    client: ClientArg,
    tier: Annotated[
        str | None, typer.Option("--tier", help="Pin a tier to the card (a VIP card).")
    ] = None,
    by: By = "",
) -> None:
    """Hand a card to a client (a lost card found again goes back to its holder)."""
    from autoloyal.rules import bonus_rules
    from crm import cards

    async def work(app: App, session: AsyncSession, moment: Moment) -> str:
        client_id, who = await _client(app, session, client)
        pinned = None if tier is None else bonus_rules(app.settings).ladder.named(tier).name
        card = await cards.issue(
            session, number, client_id, actor=_who(by), now=moment.now, tier=pinned
        )
        return f"card {card.number} issued to {who}"

    out.print(_run(ctx, work))


def _change(ctx: typer.Context, number: str, state: str, reason: str, by: str) -> None:
    from crm import cards

    async def work(app: App, session: AsyncSession, moment: Moment) -> cards.CardInfo:
        return await cards.change_state(
            session, number, state, reason=reason, actor=_who(by), now=moment.now
        )

    card = _run(ctx, work)
    out.print(f"card {card.number}: {card.state}")


@card_app.command("lose")
def card_lose(
    ctx: typer.Context, number: Annotated[str, typer.Argument()], reason: Reason = "", by: By = ""
) -> None:
    """Mark a card lost: it stays its holder's until replaced or found again."""
    from crm import cards

    _change(ctx, number, cards.LOST, reason, by)


@card_app.command("withdraw")
def card_withdraw(
    ctx: typer.Context, number: Annotated[str, typer.Argument()], reason: Reason = "", by: By = ""
) -> None:
    """Take a card out of use for good."""
    from crm import cards

    _change(ctx, number, cards.WITHDRAWN, reason, by)


@card_app.command("replace")
def card_replace(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="The card being replaced.")],
    new: Annotated[str, typer.Argument(help="The new card's number.")],
    reason: Reason = "",
    by: By = "",
) -> None:
    """Put a new card in the place of an issued or lost one (same holder, same pinned tier)."""
    from crm import cards

    async def work(app: App, session: AsyncSession, moment: Moment) -> cards.CardInfo:
        return await cards.replace(
            session, number, new, reason=reason, actor=_who(by), now=moment.now
        )

    card = _run(ctx, work)
    out.print(f"card {card.number} issued in place of {cards.card_number(number)}")
