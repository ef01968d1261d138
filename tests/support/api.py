"""The integration API served over loopback HTTP for tests, and a client that speaks to it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

from autoloyal.app import App, prepare_database
from autoloyal.config import Settings, parse_settings
from autoloyal.http import AccessLog, make_http_app
from storage import create_engine, make_session_factory
from tests.support.clock import FakeClock
from tests.support.databases import Database

TOKEN = "test-token-0123456789abcdef"
BOT = "dealer_bot"
_UNSET: Any = object()


def api_settings(url: str, **sections: Mapping[str, Any]) -> Settings:
    """The settings of an API process on `url`: a token, a client bot; `sections` override."""
    raw: dict[str, dict[str, Any]] = {
        "database": {"url": url},
        "http": {"api_token": TOKEN},
        "telegram": {"bot_username": BOT},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return parse_settings(raw)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # the parsed JSON, or the text when it is not JSON
    headers: CIMultiDictProxy[str]

    @property
    def error(self) -> dict[str, Any]:
        """The error body's inner object; fails the test when the body is not an error."""
        assert set(self.body) == {"error"}, self.body
        error: dict[str, Any] = self.body["error"]
        assert set(error) == {"code", "message", "field"}, error
        return error


class ApiClient:
    """Requests to /api/v1 with the Bearer token (or another, or none: `token=None`)."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    async def call(
        self,
        method: str,
        path: str,
        body: Any = _UNSET,
        *,
        data: bytes | None = None,
        token: str | None = TOKEN,
        query: Mapping[str, str] | None = None,
        prefix: str = "/api/v1",
    ) -> Answer:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        if body is not _UNSET:
            data = json.dumps(body, ensure_ascii=False).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.client.request(
            method, prefix + path, data=data, headers=headers, params=query
        ) as response:
            text = await response.text()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            return Answer(response.status, parsed, response.headers)

    async def get(self, path: str, **query: str) -> Answer:
        return await self.call("GET", path, query=query or None)

    async def put(self, path: str, body: Any) -> Answer:
        return await self.call("PUT", path, body)

    async def post(self, path: str, body: Any) -> Answer:
        return await self.call("POST", path, body)

    async def patch(self, path: str, body: Any) -> Answer:
        return await self.call("PATCH", path, body)


@asynccontextmanager
async def serve_api(
    db: Database, clock: FakeClock, **sections: Mapping[str, Any]
) -> AsyncIterator[ApiClient]:
    """The HTTP app (health and /api/v1) on a loopback port, over the test's database, its
    access log (on, at aiohttp.access) written by the app's own AccessLog."""
    app = App(api_settings(db.url, **sections), db.engine, db.sessions, clock)
    server = TestServer(make_http_app(app), host="127.0.0.1")
    await server.start_server(access_log_class=AccessLog)  # TestServer() drops runner options
    async with TestClient(server) as client:
        yield ApiClient(client)


@contextmanager
def serve_in_thread(url: str, clock: FakeClock) -> Iterator[str]:
    """The HTTP app over the database at `url` as a process serves it, on a free loopback
    port, run by its own event loop in a background thread (for clients that block, like
    schemathesis'); yields the server's base URL."""
    started = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        engine = create_engine(url)
        app = App(api_settings(url), engine, make_session_factory(engine), clock)
        runner = web.AppRunner(make_http_app(app))
        try:
            await prepare_database(app)  # as `autoloyal run` does: the schema, the branches
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            stop = asyncio.Event()
            state.update(loop=asyncio.get_running_loop(), stop=stop, port=runner.addresses[0][1])
            started.set()
            await stop.wait()
        finally:
            await runner.cleanup()
            await engine.dispose()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the test by the `started` check below
            state["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="api-server", daemon=True)
    thread.start()
    assert started.wait(30), "the API server did not start in 30 s"
    assert "error" not in state, state.get("error")
    try:
        yield f"http://127.0.0.1:{state['port']}"
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(30)
