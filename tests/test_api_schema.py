"""The OpenAPI document tells the truth about the server, and no request makes the server fail.

The document is checked against the OpenAPI 3.1 specification and against the routes the
server registers. Then schemathesis generates requests from it, valid ones and ones that
break it, and sends them to a real server (SQLite) seeded with client C1, car K1 and a
visit: whatever a dealer's system sends, the answer is never a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.schemas import OpenApiSchema

from autoloyal.api import make_api
from autoloyal.api.openapi import OPERATIONS, PREFIX
from autoloyal.app import App
from tests.conftest import NOW
from tests.support.api import TOKEN, api_settings, serve_api, serve_in_thread
from tests.support.clock import FakeClock
from tests.support.databases import Database, copy_sqlite

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Examples per operation: requests that fit the schema and requests that break it; about
# 800 requests in all, the same ones every run (derandomized).
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 60}
KNOWN = {"client": "C1", "car": "K1"}  # what the seeded world holds


async def test_the_document_is_served_without_a_token_and_is_valid_openapi_3_1(
    db: Database, clock: FakeClock
) -> None:
    async with serve_api(db, clock) as api:
        answer = await api.call("GET", "/openapi.json", token=None)

    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.body["openapi"] == "3.1.0"
    validate(answer.body)


async def test_the_document_describes_exactly_the_routes_the_server_has(
    db: Database, clock: FakeClock
) -> None:
    app = App(api_settings(db.url), db.engine, db.sessions, clock)
    async with serve_api(db, clock) as api:
        document = (await api.call("GET", "/openapi.json", token=None)).body

    routes = {
        (route.method, PREFIX + route.resource.canonical)
        for route in make_api(app).router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    described = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }

    assert routes - described == {("GET", f"{PREFIX}/openapi.json")}
    assert described - routes == set()


# ------------------------------------------------------------------------------ fuzzing


@pytest.fixture(scope="module")
def server(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server on a SQLite copy, with client C1, car K1 and a visit; its base URL."""
    url = copy_sqlite(sqlite_template, tmp_path_factory.mktemp("fuzz") / "autoloyal.db")
    with serve_in_thread(url, FakeClock(NOW)) as base_url, requests.Session() as http:
        http.headers.update(AUTH)
        seeded = [
            http.put(f"{base_url}{PREFIX}/clients/C1", json={
                "full_name": "Смирнов Иван Петрович", "phone": "+79035254560",
                "card": "20000001",
            }),
            http.put(f"{base_url}{PREFIX}/cars/K1", json={"owner": "C1", "plate": "А123ВС77"}),
            http.post(f"{base_url}{PREFIX}/visits", json={
                "external_id": "WO-1", "client": "C1", "car": "K1", "visited_on": "2026-11-20",
                "amount": "20000", "odometer": 42000,
            }),
        ]  # fmt: skip
        assert [answer.status_code for answer in seeded] == [201, 201, 201]
        yield base_url


@pytest.fixture(scope="module")
def schema(server: str) -> OpenApiSchema:
    return schemathesis.openapi.from_url(f"{server}{PREFIX}/openapi.json")


def _known(case: Case) -> Case:
    """The case aimed at the seeded records: path ids and the visit's client and car."""
    if "external_id" in (case.path_parameters or {}):
        path = case.operation.path
        known = {"external_id": "K1" if "/cars/" in path else "C1"}
        case.path_parameters = {**case.path_parameters, **known}
    if isinstance(case.body, dict) and case.operation.path.endswith("/visits"):
        case.body = case.body | KNOWN
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation_id", [operation.id for operation in OPERATIONS])
def test_no_generated_request_makes_the_server_fail(
    server: str, schema: OpenApiSchema, operation_id: str, mode: GenerationMode
) -> None:
    operation = schema.find_operation_by_id(operation_id)
    generated = operation.as_strategy(generation_mode=mode)
    failures: list[str] = []  # every request that failed, as curl, not only the first one

    @hypothesis.settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(st.one_of(generated, generated.map(_known)))
    def send(case: Case) -> None:
        try:
            case.call_and_validate(base_url=server, headers=AUTH, checks=[not_a_server_error])
        except FailureGroup as failed:
            titles = ", ".join(failure.title for failure in failed.exceptions)
            failures.append(f"{titles}: {case.as_curl_command(headers=AUTH)}")

    send()

    assert failures == []
