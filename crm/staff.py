"""Staff: who works here (config `[[staff]]`) and what each role may do.

The one table of permissions is `PERMISSIONS`; the bots check it in one middleware, the
staff chat and booking read it too. A person not in `[[staff]]` may do nothing staff do,
whatever chat they write from: being in the staff chat is not enough.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    OPERATOR = "operator"


class Permission(StrEnum):
    """Something a member of staff may do; named by what it does in the dealer's words."""

    RECEIVE_ALERTS = "receive_alerts"
    """See complaints and channel alerts in the staff chat."""
    TAKE_COMPLAINT = "take_complaint"
    """Take a complaint to work on it, and resolve it."""
    VIEW_CLIENTS = "view_clients"
    """Look a client up: card, visits, balance."""
    ADJUST_BONUSES = "adjust_bonuses"
    """Credit or debit bonuses by hand."""
    RUN_CAMPAIGNS = "run_campaigns"
    """Create, start and cancel campaigns and greetings."""
    MANAGE_BOOKINGS = "manage_bookings"
    """Confirm, move and cancel service bookings."""
    VIEW_REPORTS = "view_reports"
    """Statistics, charts and exports."""
    MANAGE_STAFF = "manage_staff"
    """Settings that change what others may do."""


_EVERYTHING = frozenset(Permission)

PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.ADMIN: _EVERYTHING,
    Role.MANAGER: _EVERYTHING - {Permission.MANAGE_STAFF},
    Role.OPERATOR: frozenset(
        {
            Permission.RECEIVE_ALERTS,
            Permission.TAKE_COMPLAINT,
            Permission.VIEW_CLIENTS,
            Permission.MANAGE_BOOKINGS,
        }
    ),
}
"""What each role may do: the one table. A manager runs the marketing; an operator (a
service adviser) answers clients and books them, and touches neither money nor mailings."""


@dataclass(frozen=True, slots=True)
class StaffMember:
    telegram_id: int
    name: str
    role: Role
    branch: str | None = None
    """The branch code they work at; None: every branch."""

    def may(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]


class StaffDirectory:
    """The staff by Telegram account, as configured; looked up on every staff update."""

    def __init__(self, members: Iterable[StaffMember] = ()) -> None:
        self._by_telegram = {member.telegram_id: member for member in members}

    def find(self, telegram_id: int | None) -> StaffMember | None:
        return None if telegram_id is None else self._by_telegram.get(telegram_id)

    def who_may(self, permission: Permission) -> list[StaffMember]:
        return [member for member in self._by_telegram.values() if member.may(permission)]

    def __len__(self) -> int:
        return len(self._by_telegram)
