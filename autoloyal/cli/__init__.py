"""The `autoloyal` command line: the root command, its options, and errors as one line.

One module per command group (admin: db, import, demo, run; segments; templates; campaigns;
bonuses: bonus and card; mailing: messages; reports; jobs). They import only typer, rich and
autoloyal.cli.console when loaded; each command imports the database layer, the domain and
the HTTP server when it runs. So `autoloyal --help` loads none of them, and a command loads
what it uses (tests/test_cli_startup.py keeps `import autoloyal.cli` free of them).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

# Typer carries its own copy of click (typer._click) and raises these from it.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, NoSuchOption
from typer.main import get_command

from autoloyal.cli import admin, bonuses, campaigns, jobs, mailing, reports, segments, templates
from autoloyal.cli.console import CONFIG_ENV, Root, err

PROG = "autoloyal"

# rich_markup_mode=None: help is plain text, so "[sms]" or "[[email.account]]" in a help
# string is shown, not taken for Rich markup (and --help does not load Rich's help renderer).
app = typer.Typer(
    name=PROG,
    help="Loyalty and messaging platform for car service centres and dealerships.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},  # the terminal's width, up to 100 columns
)
app.command("segment")(segments.segment_command)
app.command("messages")(mailing.messages_command)
app.command("message")(mailing.message_command)
app.command("import")(admin.import_command)
app.command("demo")(admin.demo_command)
app.command("run")(admin.run_command)
app.add_typer(admin.db_app, name="db")
app.add_typer(templates.template_app, name="template")
app.add_typer(campaigns.campaign_app, name="campaign")
app.add_typer(bonuses.bonus_app, name="bonus")
app.add_typer(bonuses.card_app, name="card")
app.add_typer(reports.report_app, name="report")
app.add_typer(jobs.job_app, name="job")


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar=CONFIG_ENV,
            help="Config file (default ./config.toml; without one the built-in defaults run).",
            dir_okay=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    ctx.obj = Root(config)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit with its code: 0 done, 1 declined or failed, 2 a usage
    or user error (one line on stderr, never a traceback), 130 interrupted."""
    try:
        code = get_command(app).main(
            args=None if argv is None else list(argv), prog_name=PROG, standalone_mode=False
        )
    except NoArgsIsHelpError as error:  # `autoloyal` or `autoloyal bonus` alone: the help
        sys.stdout.write(error.format_message() + "\n")
        code = error.exit_code
    except ClickException as error:
        err.print(usage_line(error))
        code = error.exit_code
    except typer.Abort:  # Ctrl+C or end of input at a question
        err.print(f"{PROG}: aborted")
        code = 1
    # Not standalone, click returns the command's return value (None) or an Exit's code.
    sys.exit(code if isinstance(code, int) else 0)


def usage_line(error: ClickException) -> str:
    """Click's message as our one line: `autoloyal: segment: no such option --cont (did you
    mean --count?)`; the command path, then the message lowercased, the suggestion in
    parentheses, no usage block and no "Try --help" (the user knows where help is)."""
    ctx = getattr(error, "ctx", None)
    where = ctx.command_path.removeprefix(PROG).strip() if ctx is not None else ""
    if isinstance(error, NoSuchOption):
        name = error.option_name if error.option_name.isprintable() else repr(error.option_name)
        message = f"no such option {name}"
        if error.possibilities:
            message += f" (did you mean {' or '.join(sorted(error.possibilities))}?)"
    else:
        head, suggests, rest = error.format_message().partition(". Did you mean ")
        message = head.rstrip(".") + (f" (did you mean {rest})" if suggests else "")
        if message[1:2].islower():  # "Missing option" but not "SMS ..."
            message = message[:1].lower() + message[1:]
    message = " ".join(message.splitlines())
    return f"{PROG}: {where}: {message}" if where else f"{PROG}: {message}"
