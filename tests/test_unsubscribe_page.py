"""The unsubscribe page at /u/{token} over real HTTP: what it shows, what its form and a mail
client's one-click POST change, what they never change, and the dispatcher honouring it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy
from sqlalchemy import delete, select

from autoloyal.app import App
from autoloyal.http import make_http_app
from crm.preferences import LinkSigner, link_secret, preferences
from gateway.channels.filesink import FileSink
from gateway.consent import ADVERTISING, ALL_CHANNELS, SERVICE
from storage.models import Client, ClientConsent, ConsentEvent
from tests.support.api import api_settings
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import add_client, make_dispatcher, message, queue_message

COMPANY = "Автоцентр Север"
CAMPAIGN = 42
CHAT = 5001
PHONE = "+79035254560"
EMAIL = "ivan@example.ru"
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

Client_ = TestClient[Any, Any]


# -- the world ---------------------------------------------------------------------------------


def serve(db: Database, clock: FakeClock, locale: str = "ru") -> Client_:
    settings = api_settings(db.url, company={"name": COMPANY, "locale": locale})
    app = App(settings, db.engine, db.sessions, clock)
    return TestClient(TestServer(make_http_app(app), host="127.0.0.1"))


@pytest.fixture
async def http(db: Database, clock: FakeClock) -> AsyncIterator[Client_]:
    async with serve(db, clock) as client:
        yield client


async def link_token(
    db: Database, clock: FakeClock, client_id: int, campaign_id: int | None = CAMPAIGN
) -> str:
    async with db.sessions() as session, session.begin():
        signer = LinkSigner(await link_secret(session, clock()), "")
    return signer.token(client_id, campaign_id)


async def everyone(db: Database, **contacts: Any) -> int:
    """A client with Telegram, a phone and an e-mail who allowed advertising (blanket)."""
    return await add_client(db, telegram_id=CHAT, phone=PHONE, email=EMAIL, ads=True, **contacts)


async def advertising(db: Database, client_id: int) -> dict[str, bool]:
    async with db.sessions() as session:
        found = await preferences(session, client_id)
    assert found is not None
    return found.advertising


async def consent_rows(db: Database, client_id: int) -> dict[tuple[str, str], tuple[bool, str]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(
                ClientConsent.channel,
                ClientConsent.purpose,
                ClientConsent.granted,
                ClientConsent.source,
            ).where(ClientConsent.client_id == client_id)
        )
        return {(channel, purpose): (granted, source) for channel, purpose, granted, source in rows}


async def events(db: Database, client_id: int) -> list[tuple[str, bool, str, int | None]]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(
                ConsentEvent.channel,
                ConsentEvent.granted,
                ConsentEvent.source,
                ConsentEvent.campaign_id,
            )
            .where(ConsentEvent.client_id == client_id)
            .order_by(ConsentEvent.id)
        )
        return [(channel, granted, source, campaign) for channel, granted, source, campaign in rows]


# -- reading the page --------------------------------------------------------------------------


@dataclass
class Page:
    status: int
    text: str
    headers: CIMultiDictProxy[str]
    lang: str | None = None
    checkboxes: dict[str, bool] = field(default_factory=dict)
    """{channel: checked}, in page order."""
    labels: dict[str, str] = field(default_factory=dict)
    """{channel: the text of the label bound to its checkbox}."""
    buttons: list[tuple[str, str, str]] = field(default_factory=list)
    """(name, value, caption) of every button."""
    notices: list[str] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)
    viewport: str | None = None


class _Reader(HTMLParser):
    def __init__(self, page: Page) -> None:
        super().__init__()
        self.page = page
        self.ids: dict[str, str] = {}  # checkbox id -> channel
        self.label_for: str | None = None
        self.label_text: list[str] = []
        self.labels: dict[str, str] = {}  # id -> text
        self.button: tuple[str, str] | None = None
        self.button_text: list[str] = []
        self.in_notice = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.page.tags.add(tag)
        if tag == "html":
            self.page.lang = a.get("lang")
        elif tag == "meta" and a.get("name") == "viewport":
            self.page.viewport = a.get("content")
        elif tag == "input" and a.get("type") == "checkbox":
            assert a.get("name") == "channel", a
            value = a["value"] or ""
            self.page.checkboxes[value] = "checked" in a
            self.ids[a["id"] or ""] = value
        elif tag == "label":
            self.label_for, self.label_text = a.get("for"), []
        elif tag == "button":
            self.button, self.button_text = (a.get("name") or "", a.get("value") or ""), []
        elif tag == "p" and a.get("role") == "status":
            self.in_notice = True
            self.page.notices.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self.label_for is not None:
            self.labels[self.label_for] = "".join(self.label_text).strip()
            self.label_for = None
        elif tag == "button" and self.button is not None:
            self.page.buttons.append((*self.button, "".join(self.button_text).strip()))
            self.button = None
        elif tag == "p":
            self.in_notice = False

    def handle_data(self, data: str) -> None:
        if self.label_for is not None:
            self.label_text.append(data)
        if self.button is not None:
            self.button_text.append(data)
        if self.in_notice:
            self.page.notices[-1] += data.strip()


async def get_page(http: Client_, path: str) -> Page:
    async with http.get(path, allow_redirects=False) as response:
        page = Page(response.status, await response.text(), response.headers)
    reader = _Reader(page)
    reader.feed(page.text)
    page.labels = {
        reader.ids[key]: text for key, text in reader.labels.items() if key in reader.ids
    }
    return page


async def post(
    http: Client_, path: str, data: Any, **query: str
) -> tuple[int, str, CIMultiDictProxy[str]]:
    async with http.post(path, data=data, params=query or None, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers


def assert_private(headers: CIMultiDictProxy[str]) -> None:
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Robots-Tag"] == "noindex"
    assert headers["Content-Security-Policy"] == CSP


SAVE = ("action", "save")
ALL = ("action", "all")
BUTTONS = [
    ("action", "save", "Сохранить"),
    ("action", "all", "Отписаться от всех рассылок"),
]


# -- the page ----------------------------------------------------------------------------------


async def test_the_page_shows_the_clients_channels_and_what_they_allow(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await everyone(db, consents={("email", ADVERTISING): False})
    token = await link_token(db, clock, client)

    page = await get_page(http, f"/u/{token}")

    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert_private(page.headers)
    assert page.lang == "ru"
    assert page.viewport == "width=device-width, initial-scale=1"
    assert COMPANY in page.text
    assert "Здравствуйте, Иван Петрович!" in page.text
    assert "Акции и специальные предложения" in page.text
    assert "напоминания о записи" in page.text
    assert page.checkboxes == {"telegram": True, "sms": True, "email": False}
    assert list(page.checkboxes) == ["telegram", "sms", "email"]
    assert page.labels == {"telegram": "Telegram", "sms": "SMS", "email": "Электронная почта"}
    assert page.buttons == BUTTONS
    assert page.notices == []
    assert "script" not in page.tags
    assert '<form method="post"' in page.text


async def test_the_page_shows_only_the_channels_the_client_has(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await add_client(db, phone=PHONE, ads=True, middle_name="")
    token = await link_token(db, clock, client)

    page = await get_page(http, f"/u/{token}")

    assert page.checkboxes == {"sms": True}
    assert page.labels == {"sms": "SMS"}
    assert "Здравствуйте, Иван!" in page.text
    assert page.buttons == BUTTONS


async def test_a_client_without_contacts_still_gets_the_unsubscribe_button(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await add_client(db, ads=None, first_name="", middle_name="")
    token = await link_token(db, clock, client)

    page = await get_page(http, f"/u/{token}")

    assert page.status == 200
    assert page.checkboxes == {}
    assert page.buttons == [("action", "all", "Отписаться от всех рассылок")]
    assert "Здравствуйте!" in page.text


async def test_the_page_speaks_english_when_the_company_does(
    db: Database, clock: FakeClock
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)

    async with serve(db, clock, locale="en") as http:
        page = await get_page(http, f"/u/{token}")
        forged = await get_page(http, "/u/AQA.AAAAAAAAAAAAAAAA")

    assert page.lang == "en"
    assert page.labels == {"telegram": "Telegram", "sms": "SMS", "email": "Email"}
    assert [caption for _, _, caption in page.buttons] == ["Save", "Unsubscribe from all mailings"]
    assert "Offers and promotions" in page.text
    assert (forged.status, forged.lang) == (404, "en")


async def test_the_company_name_and_client_name_are_escaped(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await add_client(db, phone=PHONE, first_name="<b>Иван</b>", middle_name="&")
    token = await link_token(db, clock, client)

    page = await get_page(http, f"/u/{token}")

    assert "&lt;b&gt;Иван&lt;/b&gt; &amp;!" in page.text
    assert "<b>" not in page.text


# -- the form ----------------------------------------------------------------------------------


async def test_saving_with_sms_unchecked_turns_off_sms_only(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)

    status, _, headers = await post(
        http, f"/u/{token}", [SAVE, ("channel", "telegram"), ("channel", "email")]
    )

    assert status == 303
    assert headers["Location"] == f"{token}?saved=1"
    assert_private(headers)
    assert await advertising(db, client) == {"telegram": True, "sms": False, "email": True}
    rows = await consent_rows(db, client)
    assert rows == {
        (ALL_CHANNELS, ADVERTISING): (True, "test"),
        ("sms", ADVERTISING): (False, "unsubscribe page"),
    }
    assert await events(db, client) == [("sms", False, "unsubscribe page", CAMPAIGN)]

    page = await get_page(http, f"/u/{token}?saved=1")
    assert page.notices == ["Настройки сохранены"]
    assert page.checkboxes == {"telegram": True, "sms": False, "email": True}


async def test_the_redirect_lands_on_the_page_with_the_confirmation(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)

    async with http.post(f"/u/{token}", data=[SAVE, ("channel", "sms")]) as response:
        assert response.status == 200
        assert response.url.path == f"/u/{token}"
        assert response.url.query_string == "saved=1"
        assert "Настройки сохранены" in await response.text()


async def test_checking_a_channel_back_turns_it_on_again(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await everyone(db, consents={("telegram", ADVERTISING): False})
    token = await link_token(db, clock, client, campaign_id=None)

    await post(http, f"/u/{token}", [SAVE, ("channel", "telegram"), ("channel", "sms")])

    assert await advertising(db, client) == {"telegram": True, "sms": True, "email": False}
    assert await events(db, client) == [
        ("telegram", True, "unsubscribe page", None),
        ("email", False, "unsubscribe page", None),
    ]


async def test_the_all_button_turns_off_every_channel(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)

    # The checkboxes still sent along do not matter: the button says "all".
    status, _, headers = await post(http, f"/u/{token}", [ALL, ("channel", "sms")])

    assert (status, headers["Location"]) == (303, f"{token}?saved=1")
    assert await advertising(db, client) == {"telegram": False, "sms": False, "email": False}
    rows = await consent_rows(db, client)
    assert rows[(ALL_CHANNELS, ADVERTISING)] == (False, "unsubscribe page")
    assert {channel for channel, *_ in await events(db, client)} == {
        "telegram",
        "sms",
        "email",
        ALL_CHANNELS,
    }
    assert {(s, c) for _, _, s, c in await events(db, client)} == {("unsubscribe page", CAMPAIGN)}

    page = await get_page(http, f"/u/{token}?saved=1")
    assert page.notices == ["Вы отписались от рекламных рассылок"]
    assert page.checkboxes == {"telegram": False, "sms": False, "email": False}


async def test_the_all_button_works_for_a_client_without_contacts(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await add_client(db, ads=True)
    token = await link_token(db, clock, client)

    status, _, _ = await post(http, f"/u/{token}", [ALL])

    assert status == 303
    assert (await consent_rows(db, client))[(ALL_CHANNELS, ADVERTISING)][0] is False


# -- one-click (RFC 8058) ----------------------------------------------------------------------


def one_click_body(kind: str) -> FormData:
    return FormData({"List-Unsubscribe": "One-Click"}, default_to_multipart=kind == "multipart")


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
async def test_one_click_for_email_turns_off_email_only(
    db: Database, clock: FakeClock, http: Client_, kind: str
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)

    async with http.post(
        f"/u/{token}", data=one_click_body(kind), params={"channel": "email"}
    ) as response:
        sent = response.request_info.headers["Content-Type"]
        status, body, headers = response.status, await response.text(), response.headers

    assert sent.startswith(
        "multipart/form-data" if kind == "multipart" else "application/x-www-form-urlencoded"
    )
    assert status == 200
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    assert body == "Вы отписались от рекламных рассылок."
    assert await advertising(db, client) == {"telegram": True, "sms": True, "email": False}
    assert await events(db, client) == [("email", False, "one-click", CAMPAIGN)]


async def test_one_click_without_a_channel_turns_off_every_channel(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)

    status, body, _ = await post(http, f"/u/{token}", one_click_body("multipart"))

    assert (status, body) == (200, "Вы отписались от рекламных рассылок.")
    assert await advertising(db, client) == {"telegram": False, "sms": False, "email": False}
    assert (await consent_rows(db, client))[(ALL_CHANNELS, ADVERTISING)] == (False, "one-click")


async def test_one_click_twice_records_the_change_once(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)

    for _ in range(2):
        status, _, _ = await post(
            http, f"/u/{token}", {"List-Unsubscribe": "One-Click"}, channel="email"
        )
        assert status == 200

    assert await events(db, client) == [("email", False, "one-click", CAMPAIGN)]


# -- what never changes anything ---------------------------------------------------------------


async def test_get_and_head_never_change_anything(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)
    before = await consent_rows(db, client)

    for path in (
        f"/u/{token}",
        f"/u/{token}?saved=1",
        f"/u/{token}?channel=email",
        f"/u/{token}?action=all&List-Unsubscribe=One-Click",
    ):
        async with http.get(path) as response:
            assert response.status == 200
        async with http.head(path) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-store"
            assert await response.read() == b""

    assert await consent_rows(db, client) == before
    assert await events(db, client) == []


async def test_get_before_any_link_was_made_creates_no_secret(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    other = LinkSigner(b"not-the-installation-secret", "")
    client = await everyone(db)

    page = await get_page(http, f"/u/{other.token(client)}")

    assert page.status == 404
    # The real secret is made on first use by whoever makes links, not by a visit.
    token = await link_token(db, clock, client)
    assert token != other.token(client)
    assert (await get_page(http, f"/u/{token}")).status == 200


def _mangle(token: str) -> str:
    head, _, tail = token.partition(".")
    flipped = "A" if tail[0] != "A" else "B"
    return f"{head}.{flipped}{tail[1:]}"


def _other_client(token: str) -> str:
    head, _, tail = token.partition(".")
    payload = bytearray(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    payload[0] += 1
    return base64.urlsafe_b64encode(bytes(payload)).rstrip(b"=").decode() + "." + tail


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(_mangle, id="mangled-signature"),
        pytest.param(_other_client, id="another-client"),
        pytest.param(lambda token: token[:-3], id="cut-short"),
        pytest.param(lambda token: token.partition(".")[0], id="no-signature"),
        pytest.param(lambda token: token + "x" * 300, id="too-long"),
        pytest.param(lambda token: "%D0%B0" + token, id="not-base64"),
        pytest.param(lambda token: LinkSigner(b"forged", "").token(1, 1), id="forged"),
    ],
)
async def test_a_bad_link_is_404_for_every_method(
    db: Database, clock: FakeClock, http: Client_, spoil: Any
) -> None:
    client = await everyone(db)
    token = spoil(await link_token(db, clock, client))

    page = await get_page(http, f"/u/{token}")
    form = await post(http, f"/u/{token}", [ALL])
    one_click = await post(http, f"/u/{token}", {"List-Unsubscribe": "One-Click"})

    assert page.status == 404
    assert "Ссылка недействительна" in page.text
    assert page.lang == "ru"
    assert_private(page.headers)
    assert "client" not in page.text.lower()
    assert form[0] == 404
    assert one_click[0] == 404
    assert await events(db, client) == []


async def test_a_link_of_a_deleted_client_is_404(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)
    async with db.sessions() as session, session.begin():
        await session.execute(delete(Client).where(Client.id == client))

    page = await get_page(http, f"/u/{token}")
    form = await post(http, f"/u/{token}", [ALL])
    one_click = await post(http, f"/u/{token}", {"List-Unsubscribe": "One-Click"})

    assert (page.status, form[0], one_click[0]) == (404, 404, 404)
    assert "Ссылка недействительна" in page.text


async def test_paths_that_are_not_links_are_404(http: Client_) -> None:
    for path in ("/u/", "/u/a/b"):
        page = await get_page(http, path)
        assert page.status == 404
        assert "Ссылка недействительна" in page.text


@pytest.mark.parametrize(
    ("data", "query"),
    [
        pytest.param({"List-Unsubscribe": "One-Click"}, {"channel": "fax"}, id="unknown-channel"),
        pytest.param({"List-Unsubscribe": "Yes"}, {}, id="one-click-wrong-value"),
        pytest.param({"action": "everything"}, {}, id="unknown-action"),
        pytest.param({}, {}, id="no-action"),
        pytest.param([SAVE, SAVE], {}, id="two-actions"),
        pytest.param([SAVE, ("channel", "fax")], {}, id="save-unknown-channel"),
    ],
)
async def test_malformed_requests_are_400_and_change_nothing(
    db: Database,
    clock: FakeClock,
    http: Client_,
    data: Any,
    query: dict[str, str],
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)

    status, body, headers = await post(http, f"/u/{token}", data, **query)

    assert status == 400, body
    assert headers["Cache-Control"] == "no-store"
    assert await events(db, client) == []


_PART = b'--xyz\r\nContent-Disposition: form-data; name="action"\r\n'
_MULTIPART = "multipart/form-data; boundary=xyz"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param(_MULTIPART, b"--xyz\r\nbroken", id="multipart-bad-header"),
        pytest.param(_MULTIPART, _PART + b"\r\nall", id="multipart-cut-short"),
        pytest.param("multipart/form-data", b"--xyz\r\n", id="multipart-no-boundary"),
        pytest.param(
            _MULTIPART,
            _PART + b"Content-Type: text/plain; charset=bogus\r\n\r\nall\r\n--xyz--\r\n",
            id="multipart-unknown-charset",
        ),
        pytest.param(
            "application/x-www-form-urlencoded; charset=bogus",
            b"action=all",
            id="urlencoded-unknown-charset",
        ),
        pytest.param("application/x-www-form-urlencoded", b"action=%FF", id="not-utf8"),
        pytest.param("application/json", b'{"action": "all"}', id="json"),
    ],
)
async def test_a_broken_body_is_400(
    db: Database, clock: FakeClock, http: Client_, content_type: str, body: bytes
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)

    async with http.post(
        f"/u/{token}", data=body, headers={"Content-Type": content_type}
    ) as response:
        assert response.status == 400
        assert response.headers["Cache-Control"] == "no-store"
    assert await events(db, client) == []


async def test_a_file_is_400_and_other_methods_405(
    db: Database, clock: FakeClock, http: Client_
) -> None:
    client = await everyone(db)
    token = await link_token(db, clock, client)
    upload = FormData()
    upload.add_field("action", b"all", filename="action.txt")

    assert (await post(http, f"/u/{token}", upload))[0] == 400
    async with http.put(f"/u/{token}", data=b"") as response:
        assert response.status == 405
        assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert await events(db, client) == []


# -- the dispatcher honours it -----------------------------------------------------------------


async def test_a_dispatch_after_the_opt_out_skips_advertising_but_not_service(
    db: Database, clock: FakeClock, http: Client_, tmp_path: Path
) -> None:
    client = await add_client(db, phone=PHONE, ads=True)
    token = await link_token(db, clock, client)
    status, _, _ = await post(http, f"/u/{token}", [SAVE])  # SMS unchecked
    assert status == 303
    sms = FileSink("sms", tmp_path / "outbox")
    ad = await queue_message(db, clock, client, plan=("sms",))
    service = await queue_message(db, clock, client, plan=("sms",), kind=SERVICE)

    await make_dispatcher(db, {"sms": sms}, clock).drain()

    skipped = await message(db, ad)
    assert (skipped.state, skipped.reason) == (
        "skipped",
        "sms: the client unsubscribed from advertising",
    )
    assert (await message(db, service)).state == "sent"
    assert len(sms.path.read_text("utf-8").splitlines()) == 1
