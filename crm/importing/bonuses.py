"""Import opening bonus balances from the dealer's old loyalty system: one credit per client.

A row finds its client by client_id (the external id, or an alias left by a merge), else by
phone, else by the number of any card ever issued to them; the first key that matches wins.
Each balance is a credit of kind `opening` under the reference `opening:<client id>`, so a
client gets one opening balance ever: a later row with the same amount (the same file again)
is unchanged, one with another amount is rejected, as the first may already have been spent.
The expiry date is not compared: an empty one means "the program's usual term from the day
of the first import", which a re-import cannot reproduce. A zero balance carries nothing over
and is counted unchanged without looking for its client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.bonuses import OPENING, Entry, credit
from crm.cards import card_number
from crm.clock import Moment
from crm.contacts import normalize_phone
from crm.errors import DomainError
from crm.importing.base import ImportContext, Rejects, read
from crm.importing.reader import Columns, Row
from crm.importing.references import ClientRefs
from crm.importing.report import ImportReport, RowError
from crm.importing.values import parse_date, parse_money, parse_text
from storage.bonuses import DiscountCard
from storage.models import Client

COLUMNS = Columns(
    aliases={
        "client_id": ("код клиента", "клиент", "client"),
        "phone": ("телефон",),
        "card": ("номер карты", "карта", "дисконтная карта", "card_number"),
        "balance": ("баланс", "бонусы", "остаток бонусов", "сумма бонусов"),
        "expires_on": ("действуют до", "срок действия", "сгорают"),
    },
    required=(("balance",), ("client_id", "phone", "card")),
)
KEYS = ("client_id", "phone", "card")  # in the order a row's client is looked for
ACTOR = "import"


@dataclass(frozen=True)
class OpeningRow:
    keys: dict[str, str]  # KEYS the row fills -> the value, normalised
    amount: Decimal
    expires_on: date | None


@dataclass(frozen=True)
class BonusImporter:
    """`valid_days`: the program's term for a lot whose row gives no date (None: forever)."""

    valid_days: int | None
    kind = "bonuses"
    columns = COLUMNS

    def parse(self, row: Row, ctx: ImportContext) -> OpeningRow:
        keys = {
            "client_id": read(row, "client_id", parse_text, max_length=64),
            "phone": _cell(row, "phone", normalize_phone, region=ctx.region),
            "card": _cell(row, "card", card_number),
        }
        found = {key: value for key, value in keys.items() if value is not None}
        if not found:
            raise RowError(None, "no client_id, phone or card to recognise the client by")
        amount = read(row, "balance", parse_money)
        if amount is None:
            raise RowError("balance", "empty")
        if amount < 0:
            raise RowError("balance", f"{amount} is negative: a balance cannot be carried as debt")
        expires_on = read(row, "expires_on", parse_date, today=ctx.today)
        if expires_on is not None:
            _days_left(expires_on, ctx.today)
        return OpeningRow(found, amount, expires_on)

    async def apply(
        self,
        session: AsyncSession,
        batch: list[tuple[Row, OpeningRow]],
        report: ImportReport,
        ctx: ImportContext,
    ) -> Rejects:
        rows = [(row, parsed) for row, parsed in batch if parsed.amount > 0]
        report.unchanged += len(batch) - len(rows)
        finder = await _ClientFinder.load(session, [parsed for _, parsed in rows])
        moment = Moment(ctx.clock(), ctx.today)
        rejects: Rejects = []
        for row, parsed in rows:
            try:
                await self._take(session, row, parsed, finder.find(parsed), moment, report)
            except RowError as error:
                rejects.append((row, error))
        return rejects

    async def _take(
        self,
        session: AsyncSession,
        row: Row,
        parsed: OpeningRow,
        client_id: int,
        moment: Moment,
        report: ImportReport,
    ) -> None:
        valid_days = self.valid_days
        if parsed.expires_on is not None:  # checked again: the day may have turned since parse
            valid_days = _days_left(parsed.expires_on, moment.today)
        entry = Entry(
            OPENING,
            parsed.amount,
            ref=f"opening:{client_id}",
            reason=f"opening balance, line {row.line}",
            actor=ACTOR,
        )
        try:
            moved = await credit(session, client_id, entry, moment, valid_days=valid_days)
        except DomainError as error:
            raise RowError(None, str(error)) from None
        if not moved.repeated:
            report.imported += 1
            report.carried_over += moved.amount
        elif moved.amount == parsed.amount:
            report.unchanged += 1
        else:
            raise RowError(
                "balance",
                f"an opening balance of {moved.amount} was already imported for this client",
            )


class _ClientFinder:
    """The batch's client ids by each key a row may use, loaded at once."""

    def __init__(self, refs: ClientRefs, by_key: dict[str, dict[str, int]]) -> None:
        self.refs = refs
        self.by_key = by_key

    @classmethod
    async def load(cls, session: AsyncSession, rows: list[OpeningRow]) -> _ClientFinder:
        wanted = {key: {r.keys[key] for r in rows if key in r.keys} for key in KEYS}
        refs = await ClientRefs.load(session, wanted["client_id"])
        phones = await session.execute(
            select(Client.phone, Client.id).where(Client.phone.in_(wanted["phone"]))
        )
        # Any card ever issued: a replaced or lost card keeps its holder, and the old system
        # knew the client by the card they had then.
        cards = await session.execute(
            select(DiscountCard.number, DiscountCard.client_id).where(
                DiscountCard.number.in_(wanted["card"]), DiscountCard.client_id.is_not(None)
            )
        )
        by_key = {"phone": _pairs(phones.all()), "card": _pairs(cards.all())}
        return cls(refs, by_key)

    def find(self, parsed: OpeningRow) -> int:
        for key, value in parsed.keys.items():
            found = self.refs.get(value) if key == "client_id" else self.by_key[key].get(value)
            if found is not None:
                return found
        first, *others = parsed.keys.items()
        also = "".join(f", nor by {key} {value}" for key, value in others)
        raise RowError(first[0], f"no client {first[1]!r}{also}")


def _pairs(rows: Iterable[tuple[str | None, int | None]]) -> dict[str, int]:
    return {key: value for key, value in rows if key is not None and value is not None}


def _cell(row: Row, column: str, normalize: Callable[..., str], **options: object) -> str | None:
    """A phone or card cell normalised, None when empty (the normalisers refuse empty text)."""
    if not row.cells.get(column, "").strip():
        return None
    return read(row, column, normalize, **options)


def _days_left(expires_on: date, today: date) -> int:
    """The lot's term in days; a date not after today has expired (a lot is usable until
    its expiry date, exclusive), and 0 days would mean "forever" to the ledger."""
    days = (expires_on - today).days
    if days <= 0:
        raise RowError("expires_on", f"{expires_on:%d.%m.%Y}: already expired")
    return days
