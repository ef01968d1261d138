"""No log line keeps a client's personal /u/{token} link: the page's visits and its errors,
and the access log the app is served with, show the token's fingerprint instead, at every
level and in every logger (aiohttp.access included). (The webhook's secret: see
test_webhook_hardening.py.)"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from autoloyal.unsubscribe import fingerprint, redacted
from gateway.logsafe import loggable
from tests.support.api import serve_api
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.test_unsubscribe_page import ALL, COMPANY, SAVE, everyone, link_token, post


def holding(records: Sequence[logging.LogRecord], secret: str) -> list[str]:
    """The records whose message, arguments or any other field holds `secret`."""
    return [
        f"{record.name}: {record.getMessage()[:200]}"
        for record in records
        if secret in record.getMessage() or secret in repr(record.__dict__)
    ]


async def test_a_visit_to_the_page_leaves_no_token_in_any_log(
    db: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await everyone(db)
    token = await link_token(db, clock, client)
    path = f"/u/{token}"

    async with serve_api(db, clock, company={"name": COMPANY}) as api:
        http = api.client
        for query in ("", "?saved=1"):
            async with http.get(path + query) as response:
                assert response.status == 200
        async with http.head(path) as response:
            assert response.status == 200
        assert (await post(http, path, [SAVE, ("channel", "sms")]))[0] == 303
        assert (await post(http, path, [("action", f"{token}\nforged")]))[0] == 400
        assert (await post(http, path, [SAVE, ("channel", "fax\r\n")]))[0] == 400
        garbled = {"Content-Type": "application/x-www-form-urlencoded; charset=x-none"}
        async with http.post(path, data=b"action=all", headers=garbled) as response:
            assert response.status == 400
        assert (await post(http, path, {"List-Unsubscribe": "One-Click"}))[0] == 200
        assert (await post(http, path, [ALL]))[0] == 303
        async with http.get(f"{path}/more") as response:
            assert response.status == 404
        async with http.get(path[:-3]) as response:
            assert response.status == 404

    assert not holding(caplog.records, token)
    assert not holding(caplog.records, token[:-3]), "nor a token cut short"
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(access) == 11, access
    assert all(f"/u/{fingerprint(token)}" in line for line in access[:-1]), access
    assert f"'/u/{fingerprint(token)}?saved=1'" in access[1]
    refused = [r.getMessage() for r in caplog.records if r.name == "autoloyal.unsubscribe"]
    assert len(refused) == 3, refused
    assert all(line.startswith(f"POST '/u/{fingerprint(token)}': ") for line in refused)
    assert all(line.isprintable() for line in access + refused)


def test_a_fingerprint_is_short_stable_and_tells_links_apart() -> None:
    first, second = fingerprint("AQA.first-token"), fingerprint("AQA.second-token")
    assert first == fingerprint("AQA.first-token")
    assert first != second
    assert len(first) == 9
    assert first.startswith("~")
    assert redacted("/u/AQA.first-token") == f"/u/{first}"
    assert redacted("/u/AQA.first-token/more") == f"/u/{first}/more"
    assert redacted("/u") == "/u"
    assert redacted("/api/v1/clients") == "/api/v1/clients"


def test_loggable_escapes_and_shortens() -> None:
    assert loggable("Стоп") == "'Стоп'"
    assert loggable("a\nb\r\x1b\x00\u2028\u202e") == "'a\\nb\\r\\x1b\\x00\\u2028\\u202e'"
    assert loggable("a" * 1000, 3) == "'aaa'… (1000 chars)"
    assert loggable(12) == "'12'"
    assert loggable("\ud800") == "'\\ud800'"
