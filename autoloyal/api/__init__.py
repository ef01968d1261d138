"""The integration API for the dealer's system, mounted at /api/v1 (see `openapi.py`)."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.exc import DBAPIError, IntegrityError

from autoloyal.api.handlers import Api
from autoloyal.api.openapi import PREFIX, openapi_document
from autoloyal.app import App
from crm.booking import SlotTaken
from crm.errors import Conflict, DomainError, NotFound
from gateway.logsafe import loggable

log = logging.getLogger("autoloyal.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS = {NotFound: 404, Conflict: 409}
_OPEN = (f"{PREFIX}/openapi.json",)


def make_api(app: App) -> web.Application:
    """The /api/v1 sub-application: Bearer auth, JSON errors, the routes."""
    api = Api(app)
    token = app.settings.http.api_token.encode()
    document = json.dumps(openapi_document(), ensure_ascii=False).encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            refused = None if request.path in _OPEN else _refusal(request, token)
            if refused is not None:
                return error(401, "unauthorized", refused)
            return await handler(request)
        except DomainError as exc:
            status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 400)
            offered = None
            if isinstance(exc, SlotTaken):
                offered = [start.isoformat() for start in exc.alternatives]
            return error(status, exc.code, str(exc), exc.field, alternatives=offered)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error(exc.status, _http_code(exc.status), exc.reason)
        except IntegrityError:
            log.info("%s %s: a concurrent request changed the same record", request.method,
                     loggable(request.path))  # fmt: skip
            return error(
                409, "conflict", "another request changed the same record at the same time; retry"
            )
        except DBAPIError as exc:
            if "deadlock" in str(exc.orig).lower():
                return error(409, "conflict", "the request met a concurrent one; retry")
            log.exception("%s %s failed", request.method, loggable(request.path))
            return error(500, "internal", "the server failed; the request was not applied")
        except Exception:
            log.exception("%s %s failed", request.method, loggable(request.path))
            return error(500, "internal", "the server failed; the request was not applied")

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    async def close(_: web.Application) -> None:
        await api.close()

    sub = web.Application(middlewares=[guard])
    sub.on_cleanup.append(close)
    router = sub.router
    router.add_get("/openapi.json", openapi)
    router.add_put("/clients/{external_id}", api.upsert_client)
    router.add_get("/clients/{external_id}", api.get_client)
    router.add_get("/clients/{external_id}/bonuses", api.bonuses)
    router.add_post("/clients/{external_id}/redemptions", api.redeem)
    router.add_post("/clients/{external_id}/redemptions/{ref}/reversal", api.reverse)
    router.add_get("/lookup", api.lookup)
    router.add_put("/cars/{external_id}", api.upsert_car)
    router.add_post("/cars/{external_id}/odometer", api.odometer)
    router.add_post("/visits", api.post_visit)
    router.add_get("/slots", api.slots)
    router.add_post("/bookings", api.post_booking)
    router.add_get("/bookings", api.day_bookings)
    router.add_get("/bookings/{id}", api.get_booking)
    router.add_patch("/bookings/{id}", api.patch_booking)
    router.add_post("/contacts", api.post_contact)
    return sub


def error(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    *,
    alternatives: list[str] | None = None,
) -> web.Response:
    """The JSON error; `alternatives`: the free starts a `slot_taken` offers instead."""
    inner: dict[str, object] = {"code": code, "message": message, "field": field}
    if alternatives is not None:
        inner["alternatives"] = alternatives
    body = {"error": inner}
    headers = {"WWW-Authenticate": 'Bearer realm="autoloyal"'} if status == 401 else None
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _refusal(request: web.Request, token: bytes) -> str | None:
    """Why the request is not let in, or None when its Bearer token is the configured one."""
    if not token:
        return "the API is off: set [http] api_token in the config"
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "send the header Authorization: Bearer <token>"
    if not hmac.compare_digest(given.strip().encode(), token):
        return "wrong token"
    return None


def _http_code(status: int) -> str:
    return {
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        413: "too_large",
        415: "unsupported_media_type",
    }.get(status, "http_error")
