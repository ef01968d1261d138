"""The visit survey: CSAT 1-5, then NPS 0-10, then an optional comment."""

from __future__ import annotations

from bot.callbacks import SurveyTap
from bot.screens.ui import Button, Rows, Screen, esc, grid
from bot.texts import Texts
from crm.feedback import DONE, NPS, SurveyState, SurveyVisit

SKIP = -1


def csat_buttons(visit_id: int) -> Rows:
    """1-5 stars in one row; the invitation message carries the same buttons."""
    return [
        [
            Button(f"{score}⭐", SurveyTap(visit=visit_id, question="csat", score=score).pack())
            for score in range(1, 6)
        ]
    ]


def nps_buttons(visit_id: int) -> Rows:
    return grid(
        [
            Button(str(score), SurveyTap(visit=visit_id, question="nps", score=score).pack())
            for score in range(11)
        ],
        6,
    )


def _visit_line(t: Texts, visit: SurveyVisit) -> str:
    line = t._("Your visit on {day}").format(day=t.date(visit.visited_on, "d MMMM yyyy"))
    if visit.car:
        line += f", {esc(visit.car)}"
    if visit.branch:
        line += f" ({esc(visit.branch)})"
    return line


def ask_csat(t: Texts, visit: SurveyVisit) -> Screen:
    text = "\n".join(
        [
            _visit_line(t, visit),
            "",
            t._("How satisfied are you with the service? 1 is very bad, 5 is excellent."),
        ]
    )
    return Screen(text, buttons=csat_buttons(visit.visit_id))


def ask_nps(t: Texts, visit: SurveyVisit, csat: int) -> Screen:
    text = "\n".join(
        [
            _visit_line(t, visit),
            t._("Your rating: {score} of 5.").format(score=csat),
            "",
            t._("How likely are you to recommend us to a friend? 0 is not at all, 10 is surely."),
        ]
    )
    return Screen(text, buttons=nps_buttons(visit.visit_id))


def ask_comment(t: Texts, visit: SurveyVisit, state: SurveyState) -> Screen:
    text = "\n".join(
        [
            _visit_line(t, visit),
            _scores(t, state),
            "",
            t._("Anything to add? Write it in one message, or skip."),
        ]
    )
    skip = SurveyTap(visit=visit.visit_id, question="comment", score=SKIP).pack()
    return Screen(text, buttons=[[Button(t._("Skip"), skip)]])


def thanks(t: Texts, visit: SurveyVisit, state: SurveyState, *, complaint: bool) -> Screen:
    lines = [_visit_line(t, visit), _scores(t, state)]
    if state.comment:
        lines.append(t._("Your comment: {comment}").format(comment=esc(state.comment)))
    lines += ["", t._("Thank you! Your answer is recorded.")]
    if complaint:
        lines.append(t._("We are sorry it was not perfect: a manager will contact you soon."))
    return Screen("\n".join(lines), menu=True)


def current(t: Texts, visit: SurveyVisit, state: SurveyState | None) -> Screen:
    """The survey where the client stands: what an old or repeated tap is edited to."""
    if state is None:
        return ask_csat(t, visit)
    if state.step == NPS and state.csat is not None:
        return ask_nps(t, visit, state.csat)
    if state.step == DONE:
        return thanks(t, visit, state, complaint=False)
    return ask_comment(t, visit, state)


def not_yours(t: Texts) -> Screen:
    return Screen(t._("This survey is not for you, or it is no longer open."), menu=True)


def _scores(t: Texts, state: SurveyState) -> str:
    parts = []
    if state.csat is not None:
        parts.append(t._("Your rating: {score} of 5.").format(score=state.csat))
    if state.nps is not None:
        parts.append(t._("Recommendation: {score} of 10.").format(score=state.nps))
    return " ".join(parts)
