"""Greetings: every enabled `[[occasion]]` whose sending day is the day the job runs for.

Each page of clients (`[outbox] batch_size`) is one transaction holding its greetings and
their gifts, so a run that crashed and runs again queues only what is missing and gives no
gift twice. The job runs in the morning (09:00 in the company's zone by default); a greeting
waits for the occasion's `at` in the client's zone, and where that hour has already passed
(a client far east) it goes at once: still on the client's day, and the outbox keeps
advertising out of their night.

One occasion that fails (a template missing, a broken audience) does not stop the others;
the run fails after them, so it is run again and greets only those still missing.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

from autoloyal.config import Settings
from autoloyal.messaging import company_info, link_signer, opt_out, template_library
from autoloyal.rules import occasions, segment_context
from crm.occasions import (
    GreetedPage,
    Greeting,
    Occasion,
    greet_page,
    occasion_date,
    prepare_greeting,
)
from crm.templates import TemplateLibrary
from gateway.consent import ADVERTISING
from scheduler.base import JobContext, JobResult

log = logging.getLogger("autoloyal.scheduler.greetings")


class GreetingsFailed(RuntimeError):
    """Some occasions could not be greeted today; the others were."""


async def run(ctx: JobContext, result: JobResult) -> None:
    library = _library(ctx.settings)
    failed: list[tuple[str, Exception]] = []
    for occasion in occasions(ctx.settings):
        on = occasion_date(occasion, ctx.day)
        if on is None:
            continue
        try:
            await greet(ctx, result, library, occasion, on)
        except Exception as exc:
            log.exception("greetings: occasion %s of %s failed", occasion.code, on)
            result.add(f"failed: {occasion.code}")
            failed.append((occasion.code, exc))
    if failed:
        code, first = failed[0]
        codes = ", ".join(code for code, _ in failed)
        raise GreetingsFailed(f"occasions not greeted: {codes} ({code}: {first})") from first


_LIBRARIES: dict[tuple[Path | None, int], TemplateLibrary] = {}


def _library(settings: Settings) -> TemplateLibrary:
    """One library per process and template settings: it reads each template's source on
    every use and compiles a source once, so a daily run does not compile all over again."""
    key = (settings.templates.dir, settings.sms.max_parts)
    library = _LIBRARIES.get(key)
    if library is None:
        library = _LIBRARIES[key] = template_library(settings)
    return library


async def greet(
    ctx: JobContext, result: JobResult, library: TemplateLibrary, occasion: Occasion, on: date
) -> None:
    """Greet the occasion of date `on`, a page of clients per transaction."""
    settings, size = ctx.settings, ctx.settings.outbox.batch_size
    company, way_out = company_info(settings), opt_out(settings)
    greeting: Greeting | None = None
    after, fresh = 0, False
    while True:
        async with ctx.session() as session:
            if greeting is None:
                context = segment_context(settings, ctx.day)
                greeting = await prepare_greeting(session, library, occasion, on, context)
            links = None
            if occasion.kind == ADVERTISING:
                links = await link_signer(session, settings, ctx.now)
            page = await greet_page(
                session,
                greeting,
                company,
                ctx.moment,
                after=after,
                size=size,
                links=links,
                opt_out=way_out,
                new_keys=fresh,
            )
        _count(result, occasion.code, page)
        if page.last is None or page.clients < size:
            return
        # Pages commit in order of client id: past a page none of whose keys were there (a
        # first run, or past where a crashed one stopped) the rest are new but for a rare
        # client who joined the audience since; not looking them up saves a query a page,
        # and the insert still skips a key that is there.
        after, fresh = page.last, page.duplicates == 0


def _count(result: JobResult, code: str, page: GreetedPage) -> None:
    for what, n in (
        ("queued", page.queued),
        ("duplicates", page.duplicates),
        ("skipped: no address", page.no_address),
        ("gifts", page.gifts),
    ):
        result.add(what, n)
        result.add(f"{code}: {what}", n)
