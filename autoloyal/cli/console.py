"""What every command shares: the consoles, the settings, and a user's error as one line.

Nothing here imports the database layer, the HTTP server or pydantic: every command, and every
`--help`, starts with this module, so it stays cheap to import.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from datetime import date

    from autoloyal.app import App
    from autoloyal.config import Settings

T = TypeVar("T")

CONFIG_ENV = "AUTOLOYAL_CONFIG"  # autoloyal.config.CONFIG_ENV, named here to spare pydantic

# Errors a user causes and can fix: one line on stderr, exit code 2, no traceback. They are
# named rather than imported: importing them all would load SQLAlchemy, aiohttp and pydantic
# into every command, and an exception can only have been raised once the module defining it
# was imported, so looking it up in sys.modules when something fails is enough.
USER_ERRORS = (
    "autoloyal.config:ConfigError",
    "autoloyal.app:DatabaseUnavailable",
    "autoloyal.run:UnknownRole",
    "autoloyal.run:CannotListen",
    "storage.engine:DatabaseUrlError",
    "crm.errors:DomainError",
    "crm.importing.reader:ImportFileError",
    "crm.demo.load:DemoError",
    "crm.templates:TemplateNotFound",
    "crm.campaigns:CampaignError",
    "crm.segments.base:SegmentError",
    "crm.mailing:MailingError",
    "gateway.render:TemplateProblem",
    "gateway.outbox:PlanError",
)

# Markup, emoji codes and highlighting are off: a client's name, a reason, a config key like
# "[sms] price_per_segment" or a sender like "file:e-mail:" print as they are. Styling, where
# wanted, goes through rich.text.Text. Soft wrap: a summary line piped to a script or a log
# stays one line; piped output gets room for whole table rows rather than rich's 80 columns.
err = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)
out = Console(
    soft_wrap=True,
    width=None if sys.stdout.isatty() else 200,
    markup=False,
    emoji=False,
    highlight=False,
)


class Root:
    """The root command's options. The config is read when a command first asks for the
    settings, so `autoloyal COMMAND --help` works (and stays quick) even with a bad config."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from autoloyal.config import load_settings

            path = self.config
            self._settings = guarded(lambda: load_settings(path)[0])
        return self._settings


def settings_of(ctx: typer.Context) -> Settings:
    """The settings of the root command's --config (subcommands live in typer sub-apps)."""
    root: Root = ctx.find_root().obj
    return root.settings()


def today_of(app: App) -> date:
    """The company's today (its time zone's date): what segments and templates are about."""
    from crm.clock import local_today

    return local_today(app.clock, app.settings.company.tz)


def user_error_types() -> tuple[type[Exception], ...]:
    """The USER_ERRORS classes whose modules are imported: the only ones that can be raised."""
    found: list[type[Exception]] = []
    for name in USER_ERRORS:
        module_name, _, class_name = name.partition(":")
        module = sys.modules.get(module_name)
        if module is not None:
            found.append(getattr(module, class_name))
    return tuple(found)


def guarded(make: Callable[[], T]) -> T:
    """Call `make()`; a user error becomes one line on stderr and exit code 2."""
    try:
        return make()
    except Exception as error:
        if isinstance(error, user_error_types()):
            _fail(error)
        raise


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as error:
        if isinstance(error, user_error_types()):
            _fail(error)
        raise


def parse_params(items: list[str]) -> dict[str, str]:
    """`k=v` words from the command line; a word without `=` is a usage error."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected k=v, got {item!r}", param_hint="PARAMS")
        params[key.strip()] = value.strip()
    return params


def fail(message: str) -> NoReturn:
    """A refusal of our own: `autoloyal: message` on stderr, exit code 2."""
    err.print(f"autoloyal: {message}")
    raise typer.Exit(2)


def _fail(error: Exception) -> NoReturn:
    fail(str(error))
