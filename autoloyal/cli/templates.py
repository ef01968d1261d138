"""`autoloyal template ...`: the message templates in force, checked and previewed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from autoloyal.cli.clients import CLIENT_HELP, find_client
from autoloyal.cli.console import err, fail, out, run_async, settings_of, today_of

if TYPE_CHECKING:
    from crm.templates import TemplateInfo
    from gateway.render import MessageTemplate, Rendered

template_app = typer.Typer(
    help="Message templates: list, check, preview, save.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@template_app.command("list")
def template_list(ctx: typer.Context) -> None:
    """Every template in force: where it comes from and the channels it offers."""
    from rich.table import Table

    from autoloyal.app import open_app
    from autoloyal.messaging import template_library

    settings = settings_of(ctx)

    async def catalogue() -> list[TemplateInfo]:
        async with open_app(settings) as app, app.sessions() as session:
            return await template_library(settings).catalogue(session)

    table = Table("name", "from", "channels", "needs", box=None, pad_edge=False)
    for info in run_async(catalogue()):
        channels = ", ".join(info.channels) if info.problem is None else f"BROKEN: {info.problem}"
        table.add_row(info.name, info.origin, channels, ", ".join(sorted(info.needs)) or "-")
    out.print(table)


@template_app.command("check")
def template_check(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Template name, e.g. birthday.")],
    file: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False, exists=True, help="Check this file instead of the one in force."
        ),
    ] = None,
) -> None:
    """Render every channel of a template against a sample client; report SMS length."""
    from autoloyal.app import open_app
    from autoloyal.messaging import company_info, template_library
    from crm.context import sample_context
    from crm.templates import read_source
    from gateway.render import MessageTemplate, check_template

    settings = settings_of(ctx)

    async def check() -> tuple[MessageTemplate, Rendered]:
        async with open_app(settings) as app, app.sessions() as session:
            library = template_library(settings)
            if file is not None:
                source = read_source(name, file)
                template = MessageTemplate(name, source, str(file), library.limits)
            else:
                template = await library.get(session, name)
            context = sample_context(company_info(settings), today_of(app))
            return template, check_template(template, context)

    template, rendered = run_async(check())
    out.print(f"{template.name} ({template.origin}): OK")
    _print_rendered(rendered, full=False)


@template_app.command("preview")
def template_preview(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Template name.")],
    client: Annotated[str, typer.Option("--client", help=f"{CLIENT_HELP} Personalise for them.")],
) -> None:
    """Show a template rendered for one real client, every channel it offers."""
    from autoloyal.app import open_app
    from autoloyal.messaging import company_info, template_library
    from crm.context import OCCASION_SECTIONS, message_context, sample_context
    from crm.errors import NotFound
    from crm.recipients import client_facts
    from gateway.render import TemplateProblem

    settings = settings_of(ctx)

    async def preview() -> tuple[MessageTemplate, Rendered, list[str], str]:
        async with open_app(settings) as app, app.sessions() as session:
            template = await template_library(settings).get(session, name)
            client_id, who = await find_client(session, client, region=settings.company.country)
            found = await client_facts(session, client_id)
            if found is None:
                raise NotFound(f"--client: no client with id {client_id}")
            company, today = company_info(settings), today_of(app)
            sample = sample_context(company, today)
            context = message_context(company, found[0], found[1], today)
            borrowed = sorted((template.needs & OCCASION_SECTIONS) - context.keys())
            context.update({section: sample[section] for section in borrowed})
            try:
                return template, template.render(context, template.channels), borrowed, who
            except TemplateProblem:
                if context["car"] is not None or "car" not in template.names:
                    raise
            # The occasion (e.g. a maintenance reminder) always has a car; this client has none.
            context["car"] = sample["car"]
            rendered = template.render(context, template.channels)
            return template, rendered, [*borrowed, "car"], who

    template, rendered, borrowed, who = run_async(preview())
    out.print(f"{template.name} ({template.origin}) for {who}")
    if borrowed:
        err.print(f"sample values for: {', '.join(borrowed)} (the occasion provides them)")
    _print_rendered(rendered, full=True)


@template_app.command("save")
def template_save(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name to save under; overrides a file template.")],
    file: Annotated[Path, typer.Argument(dir_okay=False, exists=True, readable=True)],
) -> None:
    """Check a template file and store it in the database (staff templates win over files)."""
    from autoloyal.app import open_app
    from autoloyal.messaging import company_info, template_library
    from crm.templates import read_source

    settings = settings_of(ctx)

    async def save() -> Rendered:
        async with open_app(settings) as app, app.sessions() as session, session.begin():
            return await template_library(settings).save(
                session,
                name,
                read_source(name, file),
                company=company_info(settings),
                today=today_of(app),
                now=app.clock(),
                by="cli",
            )

    rendered = run_async(save())
    out.print(f"template {name} saved: {', '.join(rendered.content)}")


@template_app.command("delete")
def template_delete(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="A template saved by staff.")]
) -> None:
    """Remove a staff template; a file template of the same name is in force again."""
    from autoloyal.app import open_app
    from autoloyal.messaging import template_library

    settings = settings_of(ctx)

    async def delete() -> bool:
        async with open_app(settings) as app, app.sessions() as session, session.begin():
            return await template_library(settings).delete(session, name)

    if not run_async(delete()):
        fail(f"no template {name!r} saved in the database")
    out.print(f"template {name} deleted")


def _print_rendered(rendered: Rendered, *, full: bool) -> None:
    from gateway.sms_length import sms_length
    from gateway.telegram_html import visible_length

    for channel, parts in rendered.content.items():
        if channel == "sms":
            summary = f": {sms_length(parts['text'])}"
        elif channel == "telegram":
            summary = f": {visible_length(parts['text'])} characters as Telegram counts them"
        else:
            html = f", HTML part {len(parts['html'])} characters" if "html" in parts else ""
            summary = f": subject «{parts['subject']}»{html}"
        out.print(Text.assemble((channel, "bold"), summary))
        if full:
            out.print(parts["text"])
            out.print()
