"""`autoloyal campaign ...`: a message for every client of a segment, and what became of it."""

from __future__ import annotations

import enum
import json
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer

from autoloyal.cli.console import err, out, parse_params, run_async, settings_of, today_of
from gateway.consent import ADVERTISING, SERVICE

if TYPE_CHECKING:
    from datetime import date
    from decimal import Decimal

    from autoloyal.config import Settings
    from crm.campaigns import CampaignReport, NightWait
    from crm.preferences import LinkSigner
    from gateway.render import MessageTemplate

campaign_app = typer.Typer(
    help="Campaigns: create, list, show, cancel.", no_args_is_help=True, rich_markup_mode=None
)


class Format(enum.StrEnum):
    table = "table"
    json = "json"


class Kind(enum.StrEnum):
    advertising = ADVERTISING
    service = SERVICE


@campaign_app.command("create")
def campaign_create(
    ctx: typer.Context,
    segment: Annotated[str, typer.Option(help="Segment name, e.g. all.")],
    template: Annotated[str, typer.Option(help="Template name, e.g. winback.")],
    channels: Annotated[str, typer.Option(help="Channel plan in order, e.g. telegram,sms,email.")],
    params: Annotated[list[str] | None, typer.Argument(help="Segment parameters as k=v.")] = None,
    kind: Annotated[
        Kind, typer.Option(help="advertising needs consent and waits out the night.")
    ] = Kind.advertising,
    at: Annotated[
        str | None,
        typer.Option(
            help='Start time, "YYYY-MM-DD HH:MM" in the company time zone (default: now).'
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="A name for the list.")] = "",
    email_account: Annotated[
        str | None,
        typer.Option(help="The [[email.account]] to send from (default: [email] default_account)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Create without asking.")] = False,
) -> None:
    """Queue a message for every client of a segment; asks first, showing reach and a sample."""
    from autoloyal.app import open_app
    from autoloyal.messaging import company_info, link_signer, opt_out, template_library
    from autoloyal.rules import quiet_hours, segment_context
    from crm.campaigns import (
        campaign_report,
        count_recipients,
        create_campaign,
        night_waits,
        prepare_campaign,
    )

    settings = settings_of(ctx)
    segment_params = parse_params(params or [])

    async def create() -> CampaignReport | None:
        _check_account(email_account, settings)
        async with open_app(settings) as app, app.sessions() as session, session.begin():
            starts_at = _parse_start(at, settings, app.clock())
            plan = await prepare_campaign(
                session,
                template_library(settings),
                segment=segment,
                params=segment_params,
                template=template,
                channels=channels,
                kind=kind.value,
                starts_at=starts_at,
                context=segment_context(settings, today_of(app)),
                email_account=email_account,
            )
            reach = await count_recipients(session, plan)
            links = await link_signer(session, settings, app.clock())
            sample = _sample_sms(plan.template, kind.value, settings, today_of(app), links)
            _print_estimate(
                plan.template.name, plan.plan, kind.value, starts_at, reach, settings, sample
            )
            _print_night(await night_waits(session, plan, quiet_hours(settings)), settings)
            if not yes and not _confirm():
                return None
            campaign, result = await create_campaign(
                session,
                plan,
                company_info(settings),
                now=app.clock(),
                today=today_of(app),
                name=name,
                created_by="cli",
                batch_size=settings.outbox.batch_size,
                links=links,
                opt_out=opt_out(settings),
            )
            await session.flush()
            report = await campaign_report(session, campaign.id, app.clock(), quiet_hours(settings))
        out.print(
            f"campaign {campaign.id} created: {result.queued} message(s) queued"
            + (f", {result.duplicates} already queued" if result.duplicates else "")
        )
        return report

    if run_async(create()) is None:
        err.print("nothing created")
        raise typer.Exit(1)


@campaign_app.command("list")
def campaign_list(ctx: typer.Context) -> None:
    """Every campaign, newest first, with its status and counts."""
    from rich.table import Table

    from autoloyal.app import open_app
    from crm.campaigns import list_campaigns

    settings = settings_of(ctx)

    async def listing() -> list[CampaignReport]:
        async with open_app(settings) as app, app.sessions() as session:
            return await list_campaigns(session, app.clock())

    table = Table(
        "id", "name", "status", "starts", "kind", "messages", "sent", "skipped", "failed", box=None
    )
    tz = settings.company.tz
    for report in run_async(listing()):
        c, states = report.campaign, report.by_state
        table.add_row(
            str(c.id),
            c.name,
            report.status,
            c.starts_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            c.kind,
            str(report.total),
            str(states.get("sent", 0) + states.get("delivered", 0)),
            str(states.get("skipped", 0)),
            str(states.get("failed", 0)),
        )
    out.print(table)


@campaign_app.command("show")
def campaign_show(
    ctx: typer.Context,
    campaign_id: Annotated[int, typer.Argument(metavar="ID")],
    format: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Counts per state and per channel, and why messages were skipped or failed."""
    from autoloyal.app import open_app
    from autoloyal.cli.mailing import waiting_for
    from autoloyal.rules import quiet_hours
    from crm.campaigns import campaign_report
    from crm.importing.report import sum_text

    settings = settings_of(ctx)

    async def show() -> CampaignReport:
        async with open_app(settings) as app, app.sessions() as session:
            return await campaign_report(session, campaign_id, app.clock(), quiet_hours(settings))

    report = run_async(show())
    if format is Format.json:
        sys.stdout.write(
            json.dumps(_as_json(report, settings), ensure_ascii=False, indent=2) + "\n"
        )
        return
    c = report.campaign
    tz = settings.company.tz
    starts = c.starts_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    out.print(
        f"campaign {c.id} «{c.name}»: {report.status}; template {c.template}, "
        f"segment {c.segment}, channels {c.plan}, {c.kind}, starts {starts}"
        + (f", e-mail from {c.email_account}" if c.email_account else "")
    )
    out.print(f"{report.total} message(s): " + _counts(report.by_state))
    for channel, states in report.by_channel.items():
        label = channel if channel != "-" else "no channel"
        out.print(f"  {label}: {_counts(states)}")
    if report.by_sender:
        out.print("through:")
        for sender, states in report.by_sender.items():
            out.print(f"  {sender}: {_counts(states)}")
    if report.waiting:
        out.print("not yet due:")
        for wait in report.waiting:
            out.print(f"  {wait.count}, the first at {waiting_for(wait.why, wait.next_at, tz)}")
    if report.cost is not None:
        out.print(f"cost reported by the providers: {sum_text(report.cost)}")
    if report.opt_outs:
        out.print(f"unsubscribed through this campaign: {report.opt_outs}")
    if report.reasons:
        out.print("reasons:")
        for reason, count in report.reasons:
            out.print(f"  {count} × {reason}")
    out.print(f"every message: autoloyal messages --campaign {c.id}")


@campaign_app.command("cancel")
def campaign_cancel(
    ctx: typer.Context, campaign_id: Annotated[int, typer.Argument(metavar="ID")]
) -> None:
    """Cancel the messages not yet sent; those already sent stay on record."""
    from autoloyal.app import open_app
    from crm.campaigns import cancel_campaign

    settings = settings_of(ctx)

    async def cancel() -> int:
        async with open_app(settings) as app, app.sessions() as session, session.begin():
            return await cancel_campaign(session, campaign_id, app.clock())

    cancelled = run_async(cancel())
    out.print(f"campaign {campaign_id} cancelled: {cancelled} message(s) will not be sent")


def _print_estimate(
    template: str,
    plan: tuple[str, ...],
    kind: str,
    starts_at: datetime,
    reach: dict[str, int],
    settings: Settings,
    sample_sms: str | None,
) -> None:
    starts = starts_at.astimezone(settings.company.tz).strftime("%Y-%m-%d %H:%M")
    err.print(
        f"{template} to {reach['clients']} client(s) through {' -> '.join(plan)} ({kind}), "
        f"starting {starts}"
    )
    err.print("  with an address: " + ", ".join(f"{channel} {reach[channel]}" for channel in plan))
    err.print(
        "  by the first channel they have: "
        + ", ".join(f"{channel} {reach.get(f'first:{channel}', 0)}" for channel in plan)
    )
    sms = reach.get("first:sms", 0)
    if sms and sample_sms is not None:
        err.print("  " + sms_estimate(sms, sample_sms, settings.sms.price_per_segment))
    if kind == ADVERTISING:
        err.print("  advertising goes only to clients who agreed to it, outside quiet hours")


def _print_night(waits: list[NightWait], settings: Settings) -> None:
    """How many will wait out quiet hours at the start, and until when in their zone."""
    if not waits:
        return
    hours = settings.company.quiet_hours
    held = sum(wait.count for wait in waits)
    if len(waits) == 1:
        [wait] = waits
        until = wait.until.astimezone(ZoneInfo(wait.zone)).strftime("%Y-%m-%d %H:%M")
        err.print(
            f"  quiet hours ({hours}): {held} client(s) will wait until {until} ({wait.zone})"
        )
        return
    err.print(f"  quiet hours ({hours}): {held} client(s) will wait for the morning in their zone:")
    for wait in waits:
        until = wait.until.astimezone(ZoneInfo(wait.zone)).strftime("%Y-%m-%d %H:%M")
        err.print(f"    {wait.count} until {until} ({wait.zone})")


def sms_estimate(messages: int, sample: str, price: Decimal) -> str:
    """What `messages` SMS like `sample` cost, at `price` per billed part."""
    from crm.importing.report import sum_text
    from gateway.sms_length import sms_length

    parts = sms_length(sample).segments
    if not price:
        return (
            f"SMS: up to {messages} × {parts} part(s); set [sms] price_per_segment to see the cost"
        )
    total = messages * parts * price
    return f"SMS: up to {messages} × {parts} part(s) × {price:g} = {sum_text(total)}"


def _sample_sms(
    template: MessageTemplate, kind: str, settings: Settings, today: date, links: LinkSigner
) -> str | None:
    """The SMS of a typical client, with the opt-out line, as the campaign would queue it."""
    from autoloyal.messaging import company_info, opt_out
    from crm.context import sample_context

    if "sms" not in template.channels:
        return None
    context = sample_context(company_info(settings), today)
    context["links"] = {**context["links"], "unsubscribe": links.url(1, 1)}
    content = template.render(context, ["sms"]).content
    return opt_out(settings).apply(content, kind, context)["sms"]["text"]


def _check_account(account: str | None, settings: Settings) -> None:
    from crm.campaigns import CampaignError

    if account is None:
        return
    names = [configured.name for configured in settings.email.account]
    if account not in names:
        raise CampaignError(
            f"--email-account: no account {account!r} in [[email.account]] "
            f"(accounts: {', '.join(names) or 'none configured'})"
        )


def _confirm() -> bool:
    if not sys.stdin.isatty():
        err.print("autoloyal: add --yes to create the campaign without a question")
        return False
    return typer.confirm("create the campaign?", default=False, err=True)


def _parse_start(text: str | None, settings: Settings, now: datetime) -> datetime:
    from crm.campaigns import CampaignError

    if not text:
        return now
    try:
        start = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise CampaignError(f'--at: expected "YYYY-MM-DD HH:MM", got "{text}"') from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(settings.company.timezone))
    if start < now - timedelta(minutes=1):
        raise CampaignError(f"--at: {text} has already passed")
    return max(start, now)


def _counts(states: dict[str, int]) -> str:
    return ", ".join(f"{state} {count}" for state, count in states.items()) or "none"


def _as_json(report: CampaignReport, settings: Settings) -> dict[str, Any]:
    c = report.campaign
    return {
        "id": c.id,
        "name": c.name,
        "status": report.status,
        "template": c.template,
        "segment": c.segment,
        "segment_params": c.segment_params,
        "channels": c.plan.split(","),
        "kind": c.kind,
        "email_account": c.email_account,
        "starts_at": c.starts_at.isoformat(),
        "created_at": c.created_at.isoformat(),
        "cancelled_at": c.cancelled_at.isoformat() if c.cancelled_at else None,
        "total": report.total,
        "by_state": report.by_state,
        "by_channel": report.by_channel,
        "by_sender": report.by_sender,
        "cost": None if report.cost is None else str(report.cost),
        "opt_outs": report.opt_outs,
        "reasons": [{"reason": reason, "count": count} for reason, count in report.reasons],
        "waiting": [
            {"why": wait.why, "count": wait.count, "next_at": wait.next_at.isoformat()}
            for wait in report.waiting
        ],
    }
