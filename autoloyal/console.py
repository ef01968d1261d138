"""What every command shares: the consoles, and turning a user's error into one line."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from autoloyal.app import DatabaseUnavailable
from autoloyal.config import ConfigError, Settings
from autoloyal.run import UnknownRole
from crm.campaigns import CampaignError
from crm.demo.load import DemoError
from crm.errors import DomainError
from crm.importing import ImportFileError
from crm.mailing import MailingError
from crm.segments import SegmentError
from crm.templates import TemplateNotFound
from gateway.outbox import PlanError
from gateway.render import TemplateProblem
from storage.engine import DatabaseUrlError

T = TypeVar("T")

# Errors a user causes and can fix: one line on stderr, exit code 2, no traceback.
USER_ERRORS = (
    ConfigError,
    DatabaseUrlError,
    DatabaseUnavailable,
    ImportFileError,
    DemoError,
    UnknownRole,
    TemplateProblem,
    TemplateNotFound,
    PlanError,
    CampaignError,
    SegmentError,
    DomainError,
    MailingError,
)

# Soft wrap: a summary line piped to a script or a log stays one line.
# Piped output gets room for whole table rows rather than rich's 80 columns.
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root command loaded (subcommands live in typer sub-apps)."""
    settings: Settings = ctx.find_root().obj
    return settings


def guarded(make: Callable[[], T]) -> T:
    """Call `make()`; a user error becomes one line on stderr and exit code 2."""
    try:
        return make()
    except USER_ERRORS as error:
        _fail(error)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except USER_ERRORS as error:
        _fail(error)
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def parse_params(items: list[str]) -> dict[str, str]:
    """`k=v` words from the command line; a word without `=` is a usage error."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected k=v, got {item!r}", param_hint="PARAMS")
        params[key.strip()] = value.strip()
    return params


def _fail(error: Exception) -> NoReturn:
    err.print(f"autoloyal: {error}", highlight=False, markup=False)
    raise typer.Exit(2)
