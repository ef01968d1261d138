"""The OpenAPI 3.1 document of the integration API, generated from its pydantic models."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import autoloyal
from autoloyal.api import schemas as s

PREFIX = "/api/v1"
REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    id: str
    summary: str
    body: type[BaseModel] | None = None
    answers: dict[int, tuple[type[BaseModel], str]] = field(default_factory=dict)
    query: tuple[tuple[str, dict[str, Any], str], ...] = ()
    required: tuple[str, ...] = ()
    """The query parameters that must be given."""
    errors: tuple[int, ...] = (400, 401, 404)


_PATH_PARAMETERS = {
    "external_id": {"type": "string", "minLength": 1, "maxLength": 64},
    "ref": {"type": "string", "minLength": 1, "maxLength": 120},
    "id": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
}
_CODE = {"type": "string", "minLength": 1, "maxLength": 32}
_DATE = {"type": "string", "format": "date"}
_TAKEN = (
    s.SlotTakenOut,
    "conflicts with what is recorded: slot_taken (with `alternatives`, the nearest free "
    "starts), already_booked, ref_conflict, wrong_state, too_early",
)

OPERATIONS = (
    Operation(
        "put", "/clients/{external_id}", "upsertClient",
        "Create or update a client by the dealer's external id",
        body=s.ClientIn,
        answers={200: (s.ClientOut, "updated"), 201: (s.ClientOut, "created")},
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "get", "/clients/{external_id}", "getClient", "A client with card, tier and balance",
        answers={200: (s.ClientOut, "the client")},
    ),
    Operation(
        "get", "/clients/{external_id}/bonuses", "getBonuses",
        "Balance, tier, card, recent movements and bonuses about to expire",
        answers={200: (s.AccountOut, "the account")},
        query=(("movements", {"type": "integer", "minimum": 0, "maximum": 100, "default": 20},
                "how many recent movements"),),
    ),
    Operation(
        "post", "/clients/{external_id}/redemptions", "redeemBonuses",
        "Pay part of a bill with bonuses; answers with the amount accepted",
        body=s.RedemptionIn,
        answers={201: (s.RedemptionOut, "accepted"),
                 200: (s.RedemptionOut, "this ref was accepted before: the same answer")},
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "post", "/clients/{external_id}/redemptions/{ref}/reversal", "reverseRedemption",
        "Give back what a redemption took (its bill was cancelled), once",
        answers={201: (s.ReversalOut, "given back"),
                 200: (s.ReversalOut, "given back before: the same answer")},
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "get", "/lookup", "lookupClient", "Find a client by phone, card number or external id",
        answers={200: (s.ClientOut, "the client")},
        query=(
            ("phone", {"type": "string", "maxLength": 32}, "any common notation"),
            ("card", {"type": "string", "maxLength": 40}, "any card the client ever held"),
            ("external_id", {"type": "string", "maxLength": 64}, "or an id merged into it"),
        ),
    ),
    Operation(
        "put", "/cars/{external_id}", "upsertCar", "Create or update a car by external id",
        body=s.CarIn,
        answers={200: (s.CarOut, "updated"), 201: (s.CarOut, "created")},
    ),
    Operation(
        "post", "/cars/{external_id}/odometer", "postOdometer", "Record an odometer reading",
        body=s.OdometerIn,
        answers={201: (s.OdometerOut, "recorded"), 200: (s.OdometerOut, "already recorded")},
    ),
    Operation(
        "post", "/visits", "postVisit",
        "Post a closed work order: records the visit and odometer, accrues bonuses, "
        "says when the survey invitation is due",
        body=s.VisitIn,
        answers={201: (s.VisitOut, "recorded"),
                 200: (s.VisitOut, "posted before with the same figures: the same answer")},
        errors=(400, 401, 404, 409),
    ),
    Operation(
        "get", "/slots", "getSlots",
        "Free starts of a service at a branch: one day, or every day of the horizon",
        answers={200: (s.SlotsOut, "the days, each with its state and free starts")},
        query=(
            ("service", _CODE, "a service code ([[service]] code)"),
            ("branch", _CODE, "a branch code; may be left out when only one branch books"),
            ("date", _DATE, "the branch's calendar day; left out: every day of the horizon"),
        ),
        required=("service",),
    ),
    Operation(
        "post", "/bookings", "postBooking",
        "Book a free start for a client (by external id, or by phone: a new phone makes a "
        "potential client); records the inbound contact too",
        body=s.BookingIn,
        answers={201: (s.BookingOut, "booked"),
                 200: (s.BookingOut, "this external_ref booked it before: the same booking"),
                 409: _TAKEN},
    ),
    Operation(
        "get", "/bookings", "listBookings", "The bookings of a day, by branch and start",
        answers={200: (s.BookingsOut, "the day's bookings")},
        query=(
            ("date", _DATE, "the branch's calendar day; default: today"),
            ("branch", _CODE, "a branch code; default: every branch"),
        ),
    ),
    Operation(
        "get", "/bookings/{id}", "getBooking", "One booking",
        answers={200: (s.BookingOut, "the booking")},
    ),
    Operation(
        "patch", "/bookings/{id}", "patchBooking",
        "Confirm, cancel, decline, mark arrived or no-show, or move a booking to another "
        "start (a new booking linked to this one)",
        body=s.BookingPatch,
        answers={200: (s.BookingOut, "the booking after the step (the new one when moved)"),
                 409: _TAKEN},
    ),
    Operation(
        "post", "/contacts", "postContact",
        "Record an inbound contact (a call, a walk-in, a request from the site)",
        body=s.ContactIn,
        answers={201: (s.ContactOut, "recorded"),
                 200: (s.ContactOut, "this external_ref was recorded before: the same contact")},
        errors=(400, 401, 404, 409),
    ),
)  # fmt: skip

_ERRORS = {
    400: "bad JSON, a missing or invalid field (named in `field`)",
    401: "no or wrong Bearer token",
    404: "no such client, car, card, booking, service or branch",
    409: "conflicts with what is recorded (insufficient_balance, ref_conflict, visit_exists...)",
}


def openapi_document() -> dict[str, Any]:
    models: set[type[BaseModel]] = {s.ErrorOut}
    for operation in OPERATIONS:
        if operation.body is not None:
            models.add(operation.body)
        models.update(model for model, _ in operation.answers.values())
    ordered = sorted(models, key=lambda model: model.__name__)
    _, schema = models_json_schema(
        [(model, "validation" if issubclass(model, s.Request) else "serialization")
         for model in ordered],
        ref_template=REF,
    )  # fmt: skip
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(PREFIX + operation.path, {})[operation.method] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "autoloyal integration API",
            "version": autoloyal.__version__,
            "description": (
                "For the dealer's system (1C or any DMS): clients, cars, closed work orders, "
                "bonus balances and redemptions, service bookings and inbound contacts. "
                "Times carry their UTC offset; a booking's are on its branch's clock. Every "
                "request but this document needs `Authorization: Bearer <[http] api_token>`. "
                "Money is a decimal string with two places. "
                'Errors are `{"error": {"code", "message", "field"}}`; nothing is half-applied.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(operation: Operation) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    for name in re.findall(r"{(\w+)}", operation.path):
        parameters.append(
            {"name": name, "in": "path", "required": True, "schema": _PATH_PARAMETERS[name]}
        )
    for name, schema, description in operation.query:
        parameters.append(
            {"name": name, "in": "query", "required": name in operation.required,
             "schema": schema, "description": description}
        )  # fmt: skip
    responses: dict[str, Any] = {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
        }
        for status, (model, description) in operation.answers.items()
    }
    for status in operation.errors:
        if str(status) in responses:
            continue
        responses[str(status)] = {
            "description": _ERRORS[status],
            "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorOut")}}},
        }
    document: dict[str, Any] = {
        "operationId": operation.id,
        "summary": operation.summary,
        "parameters": parameters,
        "responses": responses,
    }
    if operation.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=operation.body.__name__)}}
            },
        }
    return document
