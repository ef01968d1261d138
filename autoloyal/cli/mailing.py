"""`autoloyal messages` and `autoloyal message ID`: mailing control from the shell.

What was sent, to whom, through which channel and account, when, and what happened; and
for one message, every attempt and every receipt behind its state.
"""

from __future__ import annotations

import enum
import json
import sys
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from autoloyal.cli.clients import CLIENT_HELP, find_client
from autoloyal.cli.console import err, out, run_async, settings_of
from autoloyal.cli.spreadsheet import CsvWriter

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from crm.mailing import MessageDetail, MessageLine


class Format(enum.StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def messages_command(
    ctx: typer.Context,
    client: Annotated[str | None, typer.Option(help=CLIENT_HELP)] = None,
    campaign: Annotated[int | None, typer.Option(help="A campaign's id.")] = None,
    state: Annotated[
        str | None,
        typer.Option(help="queued, sending, sent, delivered, failed, skipped, cancelled, unknown."),
    ] = None,
    channel: Annotated[str | None, typer.Option(help="telegram, sms or email.")] = None,
    template: Annotated[str | None, typer.Option(help="A template's name.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    output: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Messages, newest first: to whom, through which channel and account, when, what happened."""
    from rich.table import Table

    from autoloyal.app import open_app
    from autoloyal.rules import quiet_hours
    from crm.mailing import MessageFilter, list_messages

    settings = settings_of(ctx)

    async def listing() -> list[MessageLine]:
        async with open_app(settings) as app, app.sessions() as session:
            client_id = None
            if client is not None:
                client_id, _ = await find_client(session, client, region=settings.company.country)
            where = MessageFilter(
                client_id=client_id,
                campaign_id=campaign,
                state=state,
                channel=channel,
                template=template,
                limit=limit,
            )
            return await list_messages(session, where, app.clock(), quiet_hours(settings))

    lines = run_async(listing())
    tz = settings.company.tz
    if output is Format.json:
        rows = [_plain(asdict(line)) for line in lines]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    if output is Format.csv:
        writer = CsvWriter(sys.stdout)
        writer.writerow(_CSV_COLUMNS)
        for line in lines:
            row = asdict(line)
            writer.writerow([row[name] for name in _CSV_COLUMNS])
        return
    if not lines:
        err.print("no messages match")
        return
    table = Table(
        "id", "queued", "client", "campaign", "template", "channel", "account", "address",
        "state", "sent", "delivered", "cost", "reason", box=None,
    )  # fmt: skip
    for line in lines:
        table.add_row(
            str(line.id),
            _when(line.created_at, tz),
            f"{line.client} (#{line.client_id})",
            str(line.campaign_id or "-"),
            line.template,
            line.channel or "-",
            line.sender or "-",
            line.address or "-",
            line.state,
            _when(line.sent_at, tz),
            _when(line.delivered_at, tz),
            "-" if line.cost is None else f"{line.cost:g}",
            "; ".join(filter(None, (wait_text(line, tz), line.reason))),
        )
    out.print(table)
    if len(lines) == limit:
        err.print(f"showing the newest {limit}: add --limit to see more")


def message_command(
    ctx: typer.Context,
    message_id: Annotated[int, typer.Argument(metavar="ID")],
    output: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """One message: its text per channel, every attempt, every delivery receipt."""
    from rich.table import Table

    from autoloyal.app import open_app
    from autoloyal.rules import quiet_hours
    from crm.mailing import message_detail

    settings = settings_of(ctx)

    async def show() -> MessageDetail | None:
        async with open_app(settings) as app, app.sessions() as session:
            return await message_detail(session, message_id, app.clock(), quiet_hours(settings))

    detail = run_async(show())
    if detail is None:
        err.print(f"no message {message_id}: see `autoloyal messages`")
        raise typer.Exit(2)
    if output is not Format.table:
        sys.stdout.write(json.dumps(_plain(asdict(detail)), ensure_ascii=False, indent=2) + "\n")
        return
    tz = settings.company.tz
    line = detail.line
    out.print(
        f"message {line.id}: {line.state}; {line.kind} «{line.template}» to {line.client} "
        f"(#{line.client_id})" + (f", campaign {line.campaign_id}" if line.campaign_id else "")
    )
    out.print(
        f"plan {line.plan.replace(',', ' -> ')}; queued {_when(line.created_at, tz)}; "
        f"sent {_when(line.sent_at, tz)}; delivered {_when(line.delivered_at, tz)}"
        + ("" if line.cost is None else f"; cost {line.cost:g}")
    )
    if waits := wait_text(line, tz):
        out.print(f"next attempt: {waits}")
    if line.reason:
        out.print(f"reason: {line.reason}")
    attempts = Table("started", "channel", "account", "address", "outcome", "provider id",
                     "cost", "error", box=None, title="attempts", title_justify="left")  # fmt: skip
    for a in detail.attempts:
        attempts.add_row(
            _when(a.started_at, tz, seconds=True),
            a.channel,
            a.sender or "-",
            a.address,
            a.outcome or "in flight",
            a.provider_message_id or "-",
            "-" if a.cost is None else f"{a.cost:g}",
            a.error or "",
        )
    out.print(attempts if detail.attempts else "no attempts yet")
    if detail.receipts:
        receipts = Table("received", "operator's time", "status", "reason", "via",
                         box=None, title="receipts", title_justify="left")  # fmt: skip
        for r in detail.receipts:
            receipts.add_row(
                _when(r.received_at, tz, seconds=True),
                _when(r.reported_at, tz, seconds=True),
                r.status,
                r.reason or "",
                r.via,
            )
        out.print(receipts)
    for channel, parts in detail.content.items():
        out.print(Text(channel, style="bold"))
        text = parts.get("subject", "")
        out.print((text + "\n" if text else "") + parts.get("text", ""))


_CSV_COLUMNS = (
    "id", "created_at", "client_id", "client", "campaign_id", "template", "kind", "plan",
    "state", "channel", "sender", "address", "attempts", "sent_at", "delivered_at", "cost",
    "reason", "next_attempt_at", "waiting",
)  # fmt: skip


def wait_text(line: MessageLine, tz: ZoneInfo) -> str | None:
    """When a queued message is tried next and what it waits for, e.g. "2026-11-25 09:00,
    waiting for the end of quiet hours in the client's time zone"; None when not queued."""
    return waiting_for(line.waiting, line.next_attempt_at, tz)


def waiting_for(why: str | None, at: datetime | None, tz: ZoneInfo) -> str | None:
    """`at`, and what `why` (gateway.outbox.WAITS) means to people; None without `at`."""
    from gateway.outbox import WAITS

    if at is None:
        return None
    return _when(at, tz) + (f", waiting for {WAITS.get(why, why)}" if why else " (due)")


def _when(moment: datetime | None, tz: ZoneInfo, *, seconds: bool = False) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes as ISO text, money as decimal text."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
