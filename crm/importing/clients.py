"""Import clients: upsert by external_id, merge duplicates found by phone or e-mail.

How a row finds its client, in order:
- its external_id is a client's: the row updates it (non-empty cells overwrite);
- its external_id is an alias (a duplicate merged earlier): the row only fills empty fields,
  so re-importing a file that caused a merge changes nothing;
- its phone, else its e-mail, is a client's: the row is merged into that client (empty fields
  filled, the row's external_id kept as an alias) and the report lists the merge; a row with
  no external_id is simply that client's update. An e-mail match with a different phone is
  another person (families share addresses, not phones);
- otherwise it is a new client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.consent import ADVERTISING, ALL_CHANNELS
from crm.contacts import normalize_email, normalize_phone
from crm.importing.base import ImportContext, Rejects, read
from crm.importing.reader import Columns, Row
from crm.importing.report import ImportReport, Merge, RowError
from crm.importing.values import parse_bool, parse_date, parse_int, parse_text
from crm.names import (
    NAME_PART_MAX,
    gender_from_patronymic,
    parse_gender,
    split_full_name,
    too_long,
)
from storage.bulk import insert_returning_ids, insert_rows
from storage.models import Client, ClientAlias, ClientConsent

COLUMNS = Columns(
    aliases={
        "external_id": ("код", "код клиента", "id", "ид", "внешний код"),
        "full_name": ("фио", "клиент", "наименование", "контрагент", "name"),
        "phone": ("телефон", "мобильный телефон", "моб. телефон", "тел.", "тел"),
        "email": ("e-mail", "эл. почта", "электронная почта", "почта"),
        "birthday": ("дата рождения", "birth_date", "date_of_birth"),
        "gender": ("пол", "sex"),
        "telegram_id": ("telegram", "телеграм"),
        "consent_ads": ("согласие на рассылку", "согласие на рекламу", "рассылка"),
    },
    required=(("external_id", "phone", "email"),),
)

FIELDS = (
    "external_id", "last_name", "first_name", "middle_name", "gender", "birthday", "phone",
    "email", "telegram_id",
)  # fmt: skip
# New clients of a batch differ in these (a row that shares one with another is merged into
# it), so the ids the database gives them are matched back by them.
IDENTITY = ("external_id", "phone", "email")
TELEGRAM_ID_MAX = 2**53
SOURCE = "import"


@dataclass(frozen=True)
class ClientRow:
    values: dict[str, Any]  # FIELDS that the row fills (non-empty cells only)
    consent_ads: bool | None

    def get(self, name: str) -> Any:
        return self.values.get(name)


class ClientImporter:
    kind = "clients"
    columns = COLUMNS

    def parse(self, row: Row, ctx: ImportContext) -> ClientRow:
        name = split_full_name(row.cells.get("full_name", ""))
        if too_long(name):
            raise RowError("full_name", f"a name part is longer than {NAME_PART_MAX} characters")
        gender = read(row, "gender", parse_gender) or gender_from_patronymic(name.middle_name)
        birthday = read(row, "birthday", parse_date, today=ctx.today)
        if birthday is not None and not date(1900, 1, 1) <= birthday <= ctx.today:
            raise RowError("birthday", f"{birthday:%d.%m.%Y} is not a birthday of a living client")
        phone_text = row.cells.get("phone", "").strip()
        email_text = row.cells.get("email", "").strip()
        values = {
            "external_id": read(row, "external_id", parse_text, max_length=64),
            "last_name": name.last_name,
            "first_name": name.first_name,
            "middle_name": name.middle_name,
            "gender": gender,
            "birthday": birthday,
            "phone": read(row, "phone", normalize_phone, region=ctx.region) if phone_text else None,
            "email": read(row, "email", normalize_email) if email_text else None,
            "telegram_id": read(row, "telegram_id", parse_int, low=1, high=TELEGRAM_ID_MAX),
        }
        if not (values["external_id"] or values["phone"] or values["email"]):
            raise RowError(None, "no external_id, phone or e-mail to recognise the client by")
        filled = {key: value for key, value in values.items() if value is not None}
        return ClientRow(filled, read(row, "consent_ads", parse_bool))

    async def apply(
        self,
        session: AsyncSession,
        batch: list[tuple[Row, ClientRow]],
        report: ImportReport,
        ctx: ImportContext,
    ) -> Rejects:
        world = await _ClientWorld.load(session, [parsed for _, parsed in batch])
        rejects: Rejects = []
        for row, parsed in batch:
            try:
                outcome = world.take(row, parsed, report)
            except RowError as error:
                rejects.append((row, error))
                continue
            setattr(report, outcome, getattr(report, outcome) + 1)
        await world.save(session, ctx.clock())
        return rejects


@dataclass
class _Pending:
    """A client as the batch will leave it; `id` is None until a new client is inserted."""

    id: int | None
    values: dict[str, Any]
    original: dict[str, Any] | None  # None for a new client
    consent: bool | None = None
    consent_before: bool | None = None
    aliases: list[str] | None = None


class _ClientWorld:
    """The clients a batch touches, loaded at once, changed in memory, written in bulk."""

    def __init__(self) -> None:
        self.clients: list[_Pending] = []
        self.by_external: dict[str, _Pending] = {}
        self.by_alias: dict[str, _Pending] = {}
        self.by_phone: dict[str, _Pending] = {}
        self.by_email: dict[str, _Pending] = {}
        self.by_telegram: dict[int, _Pending] = {}

    @classmethod
    async def load(cls, session: AsyncSession, rows: list[ClientRow]) -> _ClientWorld:
        world = cls()
        keys = {name: {r.get(name) for r in rows} - {None} for name in ("external_id", "phone")}
        emails = {r.get("email") for r in rows} - {None}
        telegram_ids = {r.get("telegram_id") for r in rows} - {None}
        alias_rows = await session.execute(
            select(ClientAlias.external_id, ClientAlias.client_id).where(
                ClientAlias.external_id.in_(keys["external_id"])
            )
        )
        alias_of = dict(alias_rows.all())
        conditions = [
            Client.external_id.in_(keys["external_id"]),
            Client.phone.in_(keys["phone"]),
            Client.email.in_(emails),
            Client.telegram_id.in_(telegram_ids),
            Client.id.in_(set(alias_of.values())),
        ]
        columns = [getattr(Client, name) for name in FIELDS]
        found = await session.execute(
            select(Client.id, *columns).where(or_(*conditions)).order_by(Client.id)
        )
        by_id: dict[int, _Pending] = {}
        for client_id, *values in found:
            state = dict(zip(FIELDS, values, strict=True))
            by_id[client_id] = world._add(_Pending(client_id, state, dict(state)))
        for external_id, client_id in alias_of.items():
            world.by_alias[external_id] = by_id[client_id]
        await world._load_consents(session, list(by_id))
        return world

    async def _load_consents(self, session: AsyncSession, client_ids: list[int]) -> None:
        rows = await session.execute(
            select(ClientConsent.client_id, ClientConsent.granted).where(
                ClientConsent.client_id.in_(client_ids),
                ClientConsent.channel == ALL_CHANNELS,
                ClientConsent.purpose == ADVERTISING,
            )
        )
        granted = dict(rows.all())
        for client in self.clients:
            client.consent_before = client.consent = granted.get(client.id) if client.id else None

    def _add(self, client: _Pending) -> _Pending:
        self.clients.append(client)
        self._index(client)
        return client

    def _index(self, client: _Pending) -> None:
        values = client.values
        if values.get("external_id"):
            self.by_external[values["external_id"]] = client
        if values.get("phone"):
            self.by_phone[values["phone"]] = client
        if values.get("email"):
            self.by_email.setdefault(values["email"], client)
        if values.get("telegram_id"):
            self.by_telegram[values["telegram_id"]] = client

    def take(self, row: Row, parsed: ClientRow, report: ImportReport) -> str:
        """Apply one row to the batch's clients and say what it did ("imported", "updated",
        "unchanged" or "merged"); raise RowError on a conflict."""
        external_id = parsed.get("external_id")
        if external_id in self.by_external:
            return self._update(self.by_external[external_id], parsed, overwrite=True)
        if external_id in self.by_alias:
            return self._update(self.by_alias[external_id], parsed, overwrite=False)
        for key, index in (("phone", self.by_phone), ("email", self.by_email)):
            target = index.get(parsed.get(key))
            if target is None or _other_person(target, parsed):
                continue
            if external_id is None:
                return self._update(target, parsed, overwrite=True)
            self._merge(row, target, parsed, matched_by=key, report=report)
            return "merged"
        self._check_unique(None, parsed.values)
        self._add(_Pending(None, dict(parsed.values), None, consent=parsed.consent_ads))
        return "imported"

    def _update(self, client: _Pending, parsed: ClientRow, *, overwrite: bool) -> str:
        changes = {
            key: value
            for key, value in parsed.values.items()
            if key != "external_id"
            and client.values.get(key) != value
            and (overwrite or client.values.get(key) is None)
        }
        self._check_unique(client, changes)
        client.values.update(changes)
        consent_changed = (
            parsed.consent_ads is not None
            and parsed.consent_ads != client.consent
            and (overwrite or client.consent is None)
        )
        if consent_changed:
            client.consent = parsed.consent_ads
        self._index(client)
        return "updated" if changes or consent_changed else "unchanged"

    def _merge(
        self,
        row: Row,
        client: _Pending,
        parsed: ClientRow,
        *,
        matched_by: str,
        report: ImportReport,
    ) -> None:
        external_id = parsed.get("external_id")
        self._update(client, parsed, overwrite=False)
        if client.values.get("external_id") is None:
            client.values["external_id"] = external_id
            self.by_external[external_id] = client
        else:
            client.aliases = [*(client.aliases or []), external_id]
            self.by_alias[external_id] = client
        report.merges.append(
            Merge(
                row.line, external_id, client.id or 0, client.values.get("external_id"), matched_by
            )
        )

    def _check_unique(self, client: _Pending | None, values: dict[str, Any]) -> None:
        phone, telegram_id = values.get("phone"), values.get("telegram_id")
        owners = {
            "phone": self.by_phone.get(phone) if phone else None,
            "telegram_id": self.by_telegram.get(telegram_id) if telegram_id else None,
        }
        for key, owner in owners.items():
            if owner is not None and owner is not client:
                who = owner.values.get("external_id") or f"#{owner.id}"
                raise RowError(key, f"{values[key]} already belongs to client {who}")

    async def save(self, session: AsyncSession, now: datetime) -> None:
        new = [c for c in self.clients if c.id is None]
        changed = [c for c in self.clients if c.id is not None and c.values != c.original]
        if new:
            rows = [{**_complete(c.values), "created_at": now, "updated_at": now} for c in new]
            ids = await insert_returning_ids(session, Client, rows, key=IDENTITY)
            for client in new:
                client.id = ids[tuple(client.values.get(name) for name in IDENTITY)]
        if changed:
            await session.execute(
                update(Client),
                [{"id": c.id, **_complete(c.values), "updated_at": now} for c in changed],
            )
        await self._save_aliases(session, now)
        await self._save_consents(session, now)

    async def _save_aliases(self, session: AsyncSession, now: datetime) -> None:
        rows = [
            {"external_id": alias, "client_id": c.id, "created_at": now}
            for c in self.clients
            for alias in c.aliases or ()
        ]
        await insert_rows(session, ClientAlias, rows)

    async def _save_consents(self, session: AsyncSession, now: datetime) -> None:
        for client in self.clients:
            if client.consent is None or client.consent == client.consent_before:
                continue
            values = {"granted": client.consent, "changed_at": now, "source": SOURCE}
            if client.consent_before is None:
                session.add(
                    ClientConsent(
                        client_id=client.id, channel=ALL_CHANNELS, purpose=ADVERTISING, **values
                    )
                )
            else:
                await session.execute(
                    update(ClientConsent)
                    .where(
                        ClientConsent.client_id == client.id,
                        ClientConsent.channel == ALL_CHANNELS,
                        ClientConsent.purpose == ADVERTISING,
                    )
                    .values(**values)
                )
        await session.flush()


def _other_person(client: _Pending, parsed: ClientRow) -> bool:
    """Family members share an e-mail address, not a phone: different phones, different people."""
    phone, theirs = parsed.get("phone"), client.values.get("phone")
    return phone is not None and theirs is not None and phone != theirs


def _complete(values: dict[str, Any]) -> dict[str, Any]:
    return {name: values.get(name) for name in FIELDS}
