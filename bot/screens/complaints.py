"""Complaints as the staff chat sees them: the alert, who took it, how it ended."""

from __future__ import annotations

from bot.callbacks import ComplaintTap
from bot.screens.ui import Button, Screen, esc
from bot.texts import Texts
from crm.feedback import OPEN, RESOLVED, TAKEN, ComplaintFacts


def alert(t: Texts, facts: ComplaintFacts, zone_date: str | None = None) -> Screen:
    lines = [
        t._("⚠️ <b>Complaint #{id}</b>: a low rating of a visit").format(id=facts.id),
        t._("Client: {name}").format(name=esc(facts.client_name) or "—"),
        t._("Phone: {phone}").format(phone=esc(facts.phone) or "—"),
    ]
    if facts.car:
        lines.append(t._("Car: {car}").format(car=esc(facts.car)))
    lines.append(
        t._("Visit: {day}, {branch}, {amount}").format(
            day=t.date(facts.visited_on, "dd.MM.yyyy"),
            branch=esc(facts.branch) or "—",
            amount=t.money(facts.amount),
        )
    )
    scores = []
    if facts.csat is not None:
        scores.append(t._("satisfaction {score}/5").format(score=facts.csat))
    if facts.nps is not None:
        scores.append(t._("recommendation {score}/10").format(score=facts.nps))
    lines.append(t._("Scores: {scores}").format(scores=", ".join(scores) or "—"))
    if facts.comment:
        lines.append(t._("Comment: {comment}").format(comment=esc(facts.comment)))
    lines.append(_state(t, facts))
    return Screen("\n".join(lines), buttons=_buttons(t, facts))


def comment_added(t: Texts, facts: ComplaintFacts) -> Screen:
    text = t._("💬 Complaint #{id}, the client adds: {comment}").format(
        id=facts.id, comment=esc(facts.comment)
    )
    return Screen(text)


def _state(t: Texts, facts: ComplaintFacts) -> str:
    if facts.state == TAKEN:
        return t._("🛠 Taken by {who}").format(who=esc(facts.taken_by))
    if facts.state == RESOLVED:
        return t._("✅ Resolved by {who}: {note}").format(
            who=esc(facts.resolved_by), note=esc(facts.resolution)
        )
    return t._("🆕 Open")


def _buttons(t: Texts, facts: ComplaintFacts) -> list[list[Button]]:
    if facts.state == OPEN:
        return [[Button(t._("Take it"), ComplaintTap(action="take", complaint=facts.id).pack())]]
    if facts.state == TAKEN:
        return [
            [Button(t._("Resolved"), ComplaintTap(action="resolve", complaint=facts.id).pack())]
        ]
    return []
