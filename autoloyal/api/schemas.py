"""The JSON the integration API takes and gives, as pydantic models.

The same models validate requests and generate the OpenAPI document, so the document
cannot drift from what the server accepts. Money is a decimal with two places; it is
read from a JSON number or string and written as a string ("1500.00"), so no float ever
rounds a sum. Unknown fields are ignored, so a newer dealer system can talk to us.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

# No control characters: PostgreSQL refuses NUL in text, and no name needs a tab.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def line(max_length: int) -> StringConstraints:
    """One line of text: trimmed, not empty, at most `max_length` characters."""
    return StringConstraints(
        strip_whitespace=True, min_length=1, max_length=max_length, pattern=_PRINTABLE
    )


ExternalId = Annotated[str, line(64)]


def _a_number(value: object) -> object:
    """Sums come as JSON numbers or strings. Anything else is refused here: a JSON array
    would otherwise reach Decimal() as a tuple and be read as (sign, digits, exponent)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("expected a number or a numeric string")
    return value


Number = BeforeValidator(_a_number)
MAX = Decimal("999999999999.99")  # Numeric(14, 2)
Money = Annotated[Decimal, Number, Field(ge=0, le=MAX, decimal_places=2)]
Positive = Annotated[Decimal, Number, Field(gt=0, le=MAX, decimal_places=2)]
SignedMoney = Annotated[Decimal, Number, Field(ge=-MAX, le=MAX, decimal_places=2)]
Phone = Annotated[str, line(32)]
CardNumber = Annotated[str, line(40)]
Ref = Annotated[str, line(120)]
Recent = Annotated[int, Field(ge=0, le=100)]
Km = Annotated[int, Field(ge=0, le=3_000_000)]
Code = Annotated[str, line(32)]
"""A service's or a branch's code from the config."""
RowId = Annotated[int, Field(ge=1, le=2**31 - 1)]
"""A record's id as the API shows it (booking, campaign): a 32-bit integer column."""


def _in_range(value: datetime) -> datetime:
    """Years 2000 to 2100 only: an offset on year 1 or 9999 cannot even be turned into UTC.
    An instant without its offset passes; the service refuses it naming the field."""
    if not 2000 <= value.year <= 2100:
        raise PydanticCustomError("datetime_range", "must be between the years 2000 and 2100")
    return value


Instant = Annotated[datetime, AfterValidator(_in_range)]
""""2026-11-25T10:00:00+03:00": an ISO date and time with its UTC offset."""


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class ClientRef(Request):
    """Who referred the client: exactly one of phone, card, external_id."""

    phone: Annotated[str, line(32)] | None = None
    card: Annotated[str, line(40)] | None = None
    external_id: ExternalId | None = None


class ClientIn(Request):
    """A client as the dealer's system knows them. Fields left out are left as they are."""

    full_name: Annotated[str, line(200)] | None = Field(None, examples=["Смирнов Иван Петрович"])
    phone: Annotated[str, line(32)] | None = Field(None, examples=["+7 903 525-45-60"])
    email: Annotated[str, line(254)] | None = None
    birthday: date | None = None
    gender: Literal["male", "female", "М", "Ж", "м", "ж"] | None = None
    consent_ads: bool | None = Field(None, description="consent to advertising on any channel")
    card: Annotated[str, line(40)] | None = Field(
        None, description="the discount card the client holds; another one replaces theirs"
    )
    referred_by: ClientRef | None = None


class CarIn(Request):
    owner: ExternalId | None = Field(
        None, description="the owner's external id; required for a new car"
    )
    vin: Annotated[str, line(20)] | None = None
    plate: Annotated[str, line(20)] | None = None
    make: Annotated[str, line(64)] | None = None
    model: Annotated[str, line(64)] | None = None
    year: Annotated[int, Field(ge=1900, le=2100)] | None = None
    service_interval_km: Annotated[int, Field(ge=500, le=100_000)] | None = None
    service_interval_months: Annotated[int, Field(ge=1, le=60)] | None = None
    sold_here: bool | None = None


class VisitIn(Request):
    """A closed work order."""

    external_id: ExternalId = Field(description="the work order number")
    client: ExternalId = Field(description="the client's external id")
    car: ExternalId | None = Field(None, description="the car's external id")
    visited_on: date
    amount: Money
    margin: SignedMoney | None = None
    odometer: Km | None = None
    kind: Annotated[str, line(128)] | None = Field(None, examples=["ТО-2", "Кузовной ремонт"])
    department: Annotated[str, line(128)] | None = None


class RedemptionIn(Request):
    amount: Positive = Field(description="bonuses the client wants to pay with")
    bill: Positive = Field(description="the bill being paid; the percent cap applies to it")
    ref: Ref = Field(description="your reference for this payment; repeat it to retry safely")
    work_order: ExternalId | None = Field(
        None, description="the work order paid; its accrual is reduced by what bonuses paid"
    )
    allow_partial: bool = Field(True, description="accept less than asked when capped")


class OdometerIn(Request):
    km: Km
    read_on: date | None = Field(None, description="default: today")


BookingState = Literal[
    "requested", "confirmed", "arrived", "completed", "cancelled", "declined", "no_show"
]
DayStateName = Literal["free", "full", "closed", "out"]
BookingAction = Literal["confirm", "cancel", "arrive", "no_show", "decline"]


class BookingIn(Request):
    """A booking for a client named by `client` (external id) or by `phone`."""

    client: ExternalId | None = Field(None, description="the client's external id")
    phone: Phone | None = Field(
        None,
        examples=["+7 903 525-45-60"],
        description="instead of `client`: the client with this phone, or a new potential client",
    )
    name: Annotated[str, line(200)] | None = Field(
        None, examples=["Смирнов Иван Петрович"], description="a new potential client's name"
    )
    service: Code = Field(examples=["maintenance"], description="a service code")
    branch: Code | None = Field(
        None, description="a branch code; may be left out when only one branch takes bookings"
    )
    starts_at: Instant = Field(
        examples=["2026-11-25T10:00:00+03:00"], description="a free start, with its UTC offset"
    )
    car: ExternalId | None = Field(None, description="the client's car, by its external id")
    comment: Annotated[str, StringConstraints(max_length=500)] | None = None
    external_ref: Annotated[str, line(64)] | None = Field(
        None, description="your reference: the same ref again answers the booking it made"
    )


class BookingPatch(Request):
    """A step (`action`), a new time (`starts_at`: the booking is moved), or both: moved,
    then the step taken on the moved booking."""

    action: BookingAction | None = None
    starts_at: Instant | None = Field(None, examples=["2026-11-26T12:00:00+03:00"])


Channel = Literal["call", "walk_in", "bot", "website", "api"]
Purpose = Literal["service", "repair_question", "sales", "complaint", "other"]
Outcome = Literal["booked", "not_booked", "information"]


class ContactIn(Request):
    """One inbound contact: a call, a walk-in, a request from the site."""

    channel: Channel
    purpose: Purpose
    outcome: Outcome
    phone: Phone | None = Field(
        None, description="the caller; an unknown number becomes a potential client"
    )
    client: ExternalId | None = Field(None, description="the client's external id")
    name: Annotated[str, line(200)] | None = Field(
        None, description="a new potential client's name"
    )
    source: Annotated[str, line(64)] | None = Field(
        None, description='"how did you hear about us": one of the config\'s [contacts] sources'
    )
    campaign: RowId | None = Field(None, description="the campaign that brought them (its id)")
    staff: Annotated[str, line(128)] | None = Field(None, description="who took the contact")
    branch: Code | None = Field(None, description="a branch code")
    booking: RowId | None = Field(None, description="the booking it led to (its id)")
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None
    external_ref: Annotated[str, line(64)] | None = Field(
        None, description="your reference: the same ref again answers the contact it recorded"
    )
    happened_at: Instant | None = Field(None, description="with its UTC offset; default: now")


class TierOut(Response):
    name: str
    accrual_percent: Decimal
    discount_percent: Decimal
    spend: Decimal = Field(description="spend over the last year")
    pinned: bool = Field(description="the tier comes from the card, not from the spend")
    next: str | None
    to_next: Decimal | None


class CardOut(Response):
    number: str
    state: Literal["produced", "issued", "lost", "withdrawn", "replaced"]
    tier: str | None


class ClientOut(Response):
    id: int
    external_id: str | None
    full_name: str
    phone: str | None
    email: str | None
    birthday: date | None
    gender: str | None
    card: CardOut | None
    tier: TierOut
    balance: Decimal


class MovementOut(Response):
    id: int
    kind: str
    amount: Decimal
    created_at: datetime
    ref: str | None
    work_order: str | None
    bill: Decimal | None
    reason: str | None
    expires_on: date | None


class ExpiringOut(Response):
    amount: Decimal
    expires_on: date


class AccountOut(Response):
    client_id: int
    external_id: str | None
    balance: Decimal
    tier: TierOut
    card: CardOut | None
    movements: list[MovementOut]
    expiring: list[ExpiringOut]


class RedemptionOut(Response):
    accepted: Decimal
    balance: Decimal
    ref: str
    repeated: bool


class ReversalOut(Response):
    returned: Decimal = Field(description="bonuses given back (less any that expired since)")
    balance: Decimal
    ref: str = Field(description="the redemption's ref")
    repeated: bool


class CarOut(Response):
    id: int
    external_id: str
    owner: str | None
    vin: str | None
    plate: str | None
    make: str | None
    model: str | None
    year: int | None


class OdometerOut(Response):
    car: str
    km: int
    read_on: date
    created: bool


class BonusOut(Response):
    accrued: Decimal
    expires_on: date | None
    balance: Decimal
    tier: TierOut
    referral: Decimal = Field(description="referral bonus this visit earned the client")


class SurveyOut(Response):
    scheduled_at: datetime | None = Field(
        description="when the invitation to rate the visit is due (the scheduler queues it"
        " within minutes of the work order, to be sent then); null: none will be sent"
    )
    reason: str | None = Field(description="why no invitation will be sent; null when one will")


class VisitOut(Response):
    id: int
    external_id: str
    client: str
    created: bool
    kind: str
    bonus: BonusOut
    survey: SurveyOut | None = Field(
        description="the invitation to rate the visit; null when the work order was posted"
        " before or `[surveys] invite` is off"
    )


class DayOut(Response):
    date: date
    state: DayStateName = Field(
        description="free: has free starts; full: works, nothing free; closed: does not work;"
        " out: before the earliest bookable moment or past the horizon"
    )
    starts: list[datetime] = Field(description="free starts, with the branch's UTC offset")


class SlotsOut(Response):
    service: str
    branch: str
    days: list[DayOut]


class BookingOut(Response):
    id: int
    state: BookingState
    client_id: int
    client: str | None = Field(description="the client's external id; None: not known to you")
    car: str | None = Field(description="the car's external id")
    service: str
    service_name: str
    branch: str
    branch_name: str
    starts_at: datetime = Field(description="with the branch's UTC offset")
    ends_at: datetime
    comment: str | None
    source: str = Field(examples=["api", "bot", "staff"])
    external_ref: str | None
    requested_at: datetime
    confirmed_at: datetime | None
    arrived_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    declined_at: datetime | None
    no_show_at: datetime | None
    rescheduled_from: int | None = Field(description="the booking this one was moved from")
    visit: str | None = Field(description="the work order (its external id) that completed it")
    actor: str | None = Field(description="who took the last step")


class BookingsOut(Response):
    date: date
    bookings: list[BookingOut]


class ContactOut(Response):
    id: int
    happened_at: datetime
    channel: str
    purpose: str
    outcome: str
    source: str | None
    client_id: int | None
    client: str | None = Field(description="the client's external id")
    phone: str | None
    branch: str | None
    campaign: int | None
    booking: int | None
    staff: str | None
    note: str | None
    external_ref: str | None


class ErrorBody(Response):
    code: str = Field(examples=["not_found", "invalid", "insufficient_balance"])
    message: str
    field: str | None


class ErrorOut(Response):
    error: ErrorBody


class SlotTakenBody(ErrorBody):
    alternatives: list[datetime] = Field(
        default_factory=list,
        description="slot_taken only: the nearest free starts, with the branch's UTC offset",
    )


class SlotTakenOut(Response):
    """A conflict; when the start was taken (`slot_taken`), the starts to offer instead."""

    error: SlotTakenBody
