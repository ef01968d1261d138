"""The unsubscribe and preferences page at /u/{token}, and RFC 8058 one-click unsubscribe.

Every message can carry a personal link (see `crm.preferences`). GET shows the client which
channels bring them advertising and lets them change that; the form POSTs back to the same
address and is redirected to the page again (303, `?saved=1`). A POST whose body says
`List-Unsubscribe=One-Click` is a mail client's one-click unsubscribe: it opts out at once
and answers in plain text.

GET and HEAD never write: mail services fetch links to check them, and such a fetch must not
change a client's settings. The pages are plain HTML with no JavaScript, behind headers that
keep them out of caches, search engines and other sites' frames.

The token in the link is as good as a password to the client's settings, so no log line
holds it: paths are logged `redacted`, with the token's `fingerprint` in its place.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from jinja2 import Environment, FileSystemLoader
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from autoloyal.app import App
from crm.preferences import (
    ONE_CLICK,
    PAGE,
    BadLink,
    LinkSigner,
    LinkToken,
    Preferences,
    existing_link_secret,
    opt_out,
    preferences,
    set_advertising,
)
from gateway.logsafe import loggable
from gateway.outbox import CHANNELS
from storage import make_session_factory, read_only

log = logging.getLogger("autoloyal.unsubscribe")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PREFIX = "/u"
"""Where the pages are mounted: /u/{token}."""

PAGES = Path(__file__).with_name("pages")
"""The folder of the page templates (package data: `pages/*.html`)."""

HEADERS: Mapping[str, str] = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"
SAVE = "save"
ALL = "all"

TEXTS: Mapping[str, Mapping[str, Any]] = {
    "ru": {
        "title": "Настройки рассылок",
        "hello": "Здравствуйте, {name}!",
        "hello_anonymous": "Здравствуйте!",
        "intro": "Выберите, куда присылать вам рекламные рассылки.",
        "heading": "Акции и специальные предложения",
        "nowhere": "У нас нет ваших контактов для рекламных рассылок.",
        "service": (
            "Служебные сообщения — напоминания о записи, о готовности автомобиля — "
            "будут приходить как прежде."
        ),
        "save": "Сохранить",
        "all": "Отписаться от всех рассылок",
        "saved": "Настройки сохранены",
        "unsubscribed": "Вы отписались от рекламных рассылок",
        "one_click": "Вы отписались от рекламных рассылок.",
        "invalid": "Ссылка недействительна",
        "invalid_hint": "Откройте ссылку из последнего сообщения целиком.",
        "bad_request": "Неверный запрос.",
        "not_allowed": "Метод не поддерживается.",
        "failed": "Не удалось выполнить запрос. Попробуйте позже.",
        "channels": {"telegram": "Telegram", "sms": "SMS", "email": "Электронная почта"},
    },
    "en": {
        "title": "Mailing preferences",
        "hello": "Hello, {name}!",
        "hello_anonymous": "Hello!",
        "intro": "Choose where we may send you advertising.",
        "heading": "Offers and promotions",
        "nowhere": "We have no contacts of yours to send advertising to.",
        "service": (
            "Service messages — booking reminders, your car being ready — will still come."
        ),
        "save": "Save",
        "all": "Unsubscribe from all mailings",
        "saved": "Your settings are saved",
        "unsubscribed": "You have unsubscribed from advertising",
        "one_click": "You have unsubscribed from advertising.",
        "invalid": "This link is not valid",
        "invalid_hint": "Open the whole link from the latest message.",
        "bad_request": "Bad request.",
        "not_allowed": "Method not allowed.",
        "failed": "The request failed. Please try again later.",
        "channels": {"telegram": "Telegram", "sms": "SMS", "email": "Email"},
    },
}

_environment = Environment(
    loader=FileSystemLoader(PAGES), autoescape=True, trim_blocks=True, lstrip_blocks=True
)


class _BadRequest(Exception):
    """The request is malformed (answered 400); the message goes to the log as it is, so the
    caller's text in it must be `loggable`."""


class _InvalidLink(Exception):
    """The token is not ours, or its client is gone (answered 404, with no detail)."""


class UnsubscribePages:
    """The handlers; holds the link signer once the installation's secret has been read."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.readers: async_sessionmaker[AsyncSession] = make_session_factory(read_only(app.engine))
        self.texts = TEXTS.get(app.settings.company.locale, TEXTS["ru"])
        self.signer: LinkSigner | None = None

    # -- handlers --------------------------------------------------------------------------

    async def show(self, request: web.Request) -> web.Response:
        """GET/HEAD: the client's settings; reads only."""
        token = request.match_info["token"]
        link = await self._link(token)
        async with self.readers() as session:
            found = await preferences(session, link.client_id)
        if found is None:
            raise _InvalidLink
        return self._page(found, token, saved=request.query.get("saved") == "1")

    async def submit(self, request: web.Request) -> web.Response:
        """POST: the page's form, or a mail client's one-click unsubscribe."""
        token = request.match_info["token"]
        link = await self._link(token)  # before the body: a bad link is 404 whatever it holds
        form = await _form(request)
        if ONE_CLICK_FIELD in form:
            return await self._one_click(request, link, form)
        action = _single(form, "action")
        if action == SAVE:
            chosen = set(form.get("channel", []))
            unknown = chosen - set(CHANNELS)
            if unknown:
                raise _BadRequest(f"unknown channel {loggable(sorted(unknown)[0])}")
        elif action != ALL:
            raise _BadRequest("action must be save or all")
        async with self.app.sessions() as session, session.begin():
            found = await preferences(session, link.client_id)
            if found is None:
                raise _InvalidLink
            now = self.app.clock()
            if action == SAVE:
                # Only what the client changed: a box left as it was shown is not a new word
                # (and a pre-ticked box is no consent), so it keeps following the blanket row.
                wanted = {
                    channel: channel in chosen
                    for channel in found.reachable
                    if (channel in chosen) != found.advertising[channel]
                }
                await set_advertising(
                    session,
                    link.client_id,
                    wanted,
                    source=PAGE,
                    now=now,
                    campaign_id=link.campaign_id,
                )
            else:
                await opt_out(
                    session,
                    link.client_id,
                    None,
                    source=PAGE,
                    now=now,
                    campaign_id=link.campaign_id,
                )
        # Relative to /u/{token}: right behind a proxy that serves the app under a prefix too.
        return web.Response(status=303, headers={"Location": f"{token}?saved=1"})

    async def _one_click(
        self, request: web.Request, link: LinkToken, form: Mapping[str, list[str]]
    ) -> web.Response:
        if form[ONE_CLICK_FIELD] != [ONE_CLICK_VALUE]:
            raise _BadRequest(f"{ONE_CLICK_FIELD} must be {ONE_CLICK_VALUE}")
        named = request.query.getall("channel", [])
        unknown = [channel for channel in named if channel not in CHANNELS]
        if unknown:
            raise _BadRequest(f"unknown channel {loggable(unknown[0])}")
        async with self.app.sessions() as session, session.begin():
            if await preferences(session, link.client_id) is None:
                raise _InvalidLink
            await opt_out(
                session,
                link.client_id,
                list(dict.fromkeys(named)) or None,
                source=ONE_CLICK,
                now=self.app.clock(),
                campaign_id=link.campaign_id,
            )
        return web.Response(text=self.texts["one_click"], content_type="text/plain")

    # -- the link --------------------------------------------------------------------------

    async def _link(self, token: str) -> LinkToken:
        """The token read with the installation's secret, loaded on first use and kept.

        Reading only: with no secret yet no link was ever made, so none is valid, and a
        visit does not make one (`link_secret` does, for whoever makes the first link).
        """
        if self.signer is None:
            async with self.readers() as session:
                secret = await existing_link_secret(session)
            if secret is None:
                raise _InvalidLink
            self.signer = LinkSigner(secret, "")
        try:
            return self.signer.read(token)
        except BadLink:
            raise _InvalidLink from None

    # -- responses -------------------------------------------------------------------------

    def _page(self, found: Preferences, token: str, *, saved: bool) -> web.Response:
        texts = self.texts
        name = found.name
        greeting = texts["hello"].format(name=name) if name else texts["hello_anonymous"]
        notice = None
        if saved:
            subscribed = any(found.advertising[channel] for channel in found.reachable)
            notice = texts["saved"] if subscribed else texts["unsubscribed"]
        channels = [
            {
                "name": channel,
                "label": texts["channels"].get(channel, channel),
                "checked": found.advertising[channel],
            }
            for channel in found.reachable
        ]
        return self._html(
            "unsubscribe.html",
            200,
            company=self.app.settings.company.name,
            greeting=greeting,
            notice=notice,
            channels=channels,
            action=token,
        )

    def invalid(self) -> web.Response:
        return self._html("invalid.html", 404, company=self.app.settings.company.name)

    def plain(self, status: int, key: str) -> web.Response:
        return web.Response(status=status, text=self.texts[key], content_type="text/plain")

    def _html(self, template: str, status: int, **values: Any) -> web.Response:
        body = _environment.get_template(template).render(
            t=self.texts, lang=self.app.settings.company.locale, **values
        )
        return web.Response(status=status, text=body, content_type="text/html")


PAGES_KEY = web.AppKey("unsubscribe_pages", UnsubscribePages)


def fingerprint(token: str) -> str:
    """What a log says instead of a link's token: "~" and the first 8 hex digits of its
    SHA-256 ("~3f2a9c1b"). Enough to tell one link's visits from another's, and no way back
    to the link."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    return f"~{digest[:8]}"


def redacted(path: str) -> str:
    """A request's path as a log may show it: under /u/, the token's `fingerprint` in its
    place ("/u/~3f2a9c1b"); any other path as it is. Still the caller's text: escape it."""
    if not path.startswith(PREFIX + "/"):
        return path
    token, slash, rest = path[len(PREFIX) + 1 :].partition("/")
    return f"{PREFIX}/{fingerprint(token)}{slash}{rest}"


def make_unsubscribe(app: App) -> web.Application:
    """The /u sub-application: the page and one-click unsubscribe at /u/{token}."""
    pages = UnsubscribePages(app)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except (_InvalidLink, web.HTTPNotFound):
            response = pages.invalid()
        except _BadRequest as exc:
            log.info("%s %s: %s", request.method, loggable(redacted(request.path)), exc)
            response = pages.plain(400, "bad_request")
        except web.HTTPMethodNotAllowed as exc:
            response = pages.plain(405, "not_allowed")
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = web.Response(status=exc.status, text=exc.reason, content_type="text/plain")
        except Exception:
            log.exception("%s %s failed", request.method, loggable(redacted(request.path)))
            response = pages.plain(500, "failed")
        response.headers.update(HEADERS)
        return response

    sub = web.Application(middlewares=[guard])
    sub[PAGES_KEY] = pages
    sub.router.add_get("/{token}", pages.show)
    sub.router.add_post("/{token}", pages.submit)
    return sub


async def _form(request: web.Request) -> dict[str, list[str]]:
    """The body's fields (urlencoded or multipart); files and undecodable bodies are 400."""
    try:
        body = await request.post()
    # A broken multipart part, an unknown charset, undecodable text (a ValueError).
    except (ValueError, LookupError, HttpProcessingError) as exc:
        raise _BadRequest(f"unreadable form: {loggable(exc)}") from None
    fields: dict[str, list[str]] = {}
    for key, value in body.items():
        if not isinstance(value, str):
            raise _BadRequest(f"{loggable(key)}: a file or bytes where text was expected")
        fields.setdefault(key, []).append(value)
    return fields


def _single(form: Mapping[str, list[str]], key: str) -> str:
    values = form.get(key, [])
    if len(values) != 1:
        raise _BadRequest(f"{key}: expected one value, got {len(values)}")
    return values[0]
