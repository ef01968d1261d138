"""/balance: the balance, the tier and what the next one needs, what expires soon, and the
last movements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from bot.screens.ui import Screen, esc
from bot.texts import Texts
from crm.bonuses.account import Account, Movement

EXPIRING_WITHIN_DAYS = 30
LAST_MOVEMENTS = 5


def balance(t: Texts, account: Account, today: date, invite: Invitation | None = None) -> Screen:
    standing = account.standing
    lines = [
        t._("💰 <b>Your balance: {amount}</b>").format(amount=t.money(account.balance)),
        t._("Tier: «{tier}», {percent}% back in bonuses").format(
            tier=esc(standing.tier.name), percent=t.number(standing.tier.accrual_percent)
        ),
    ]
    if standing.next is not None and standing.to_next is not None:
        lines.append(
            t._("{amount} more to «{tier}»").format(
                amount=t.money(standing.to_next), tier=esc(standing.next.name)
            )
        )
    if account.expiring:
        lines += ["", t._("⏳ <b>Expiring soon</b>")]
        lines += [
            t._("{amount} on {day} ({left})").format(
                amount=t.money(lot.amount),
                day=t.date(lot.expires_on),
                left=_days_left(t, (lot.expires_on - today).days),
            )
            for lot in account.expiring
        ]
    if account.movements:
        lines += ["", t._("<b>Last movements</b>")]
        lines += [_movement(t, m) for m in account.movements[:LAST_MOVEMENTS]]
    else:
        lines += ["", t._("No movements yet: bonuses come with every paid visit.")]
    if invite is not None:
        lines += ["", _invitation(t, invite)]
    return Screen("\n".join(lines))


@dataclass(frozen=True, slots=True)
class Invitation:
    """The client's referral code, the link that carries it, and what a referral earns."""

    code: str
    link: str | None
    referrer_gets: Decimal
    friend_gets: Decimal


def _invitation(t: Texts, invite: Invitation) -> str:
    where = invite.link or t._("your code {code}").format(code=invite.code)
    text = t._("🤝 Invite a friend: {where}").format(where=esc(where))
    if invite.referrer_gets > 0 or invite.friend_gets > 0:
        text += "\n" + t._(
            "After their first paid visit you get {yours} and your friend {theirs}."
        ).format(yours=t.money(invite.referrer_gets), theirs=t.money(invite.friend_gets))
    return text


def _days_left(t: Texts, days: int) -> str:
    if days <= 0:
        return t._("today")
    return t.n_("in {n} day", "in {n} days", days)


def _movement(t: Texts, movement: Movement) -> str:
    sign = "+" if movement.amount > 0 else "−"
    amount = f"{sign}{t.money(abs(movement.amount))}"
    return t._("{day}: {amount}, {what}").format(
        day=t.date(movement.created_at.date(), "dd.MM.yyyy"),
        amount=amount,
        what=_kind(t, movement.kind),
    )


def _kind(t: Texts, kind: str) -> str:
    names = {
        "accrual": t._("for a visit"),
        "welcome": t._("welcome bonus"),
        "birthday": t._("birthday gift"),
        "referral": t._("for a friend's invitation"),
        "opening": t._("carried over"),
        "adjustment": t._("adjustment"),
        "redemption": t._("paid with bonuses"),
        "reversal": t._("returned"),
        "expiry": t._("expired"),
        "gift": t._("holiday gift"),
    }
    return names.get(kind, kind)
