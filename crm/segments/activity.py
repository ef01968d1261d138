"""Where clients are in their life with the dealer: lost, one-time, regular, never serviced."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import case, exists, func, literal, select
from sqlalchemy.orm import aliased

from crm.segments.analysis import cents
from crm.segments.base import (
    Column,
    Param,
    SegmentContext,
    SegmentSpec,
    SegmentSQL,
    choice,
    client_columns,
    whole,
)
from crm.visits import SALE
from storage.models import Car, Client, Visit
from storage.sqlfunc import days_between

# The seed's "lost clients" report groups them by how many visits they had in all.
LOST_GROUPS = ("1-3", "4-7", "8-10", "11-20", "21+")
POTENTIAL, ONE_TIME, REGULAR, LOST = "potential", "one_time", "regular", "lost"
STAGES = (POTENTIAL, ONE_TIME, REGULAR, LOST)


def _visit_stats(context: SegmentContext) -> Any:
    """Per client with visits up to today: count, first and last day, amount in kopecks."""
    return (
        select(
            Visit.client_id.label("client_id"),
            func.count().label("visits"),
            func.min(Visit.visited_on).label("first_visit"),
            func.max(Visit.visited_on).label("last_visit"),
            func.sum(cents(Visit.amount)).label("amount"),
        )
        .where(Visit.visited_on <= context.today)
        .group_by(Visit.client_id)
        .subquery("visit_stats")
    )


def build_lost(values: dict[str, Any], context: SegmentContext) -> SegmentSQL:
    days = values["days"] if values["days"] is not None else context.lifecycle.lost_after_days
    stats = _visit_stats(context)
    cutoff = context.today - timedelta(days=days)  # lost: more than `days` days ago
    n = stats.c.visits
    group = case(
        (n <= 3, LOST_GROUPS[0]),
        (n <= 7, LOST_GROUPS[1]),
        (n <= 10, LOST_GROUPS[2]),
        (n <= 20, LOST_GROUPS[3]),
        else_=LOST_GROUPS[4],
    )
    lost = select(stats, group.label("group")).where(stats.c.last_visit < cutoff).subquery("lost")
    where = [lost.c.group.in_(values["visits"])] if values["visits"] else []
    rows = (
        select(
            *client_columns(),
            lost.c.group.label("group"),
            lost.c.visits.label("visits"),
            lost.c.last_visit.label("last_visit"),
            days_between(literal(context.today), lost.c.last_visit).label("days_since"),
            lost.c.amount.label("amount"),
        )
        .join(Client, Client.id == lost.c.client_id)
        .where(*where)
        .order_by(lost.c.amount.desc(), lost.c.client_id)
    )
    summary = (
        select(
            lost.c.group.label("group"),
            func.count().label("clients"),
            func.sum(lost.c.amount).label("amount"),
        )
        .where(*where)
        .group_by(lost.c.group)
        .order_by(func.min(lost.c.visits))
    )
    return SegmentSQL(
        members=select(lost.c.client_id).where(*where),
        rows=rows,
        columns=(
            Column("group", "Visits group"),
            Column("visits", "Visits", "int"),
            Column("last_visit", "Last visit", "date"),
            Column("days_since", "Days since", "int"),
            Column("amount", "Amount", "money"),
        ),
        summary=summary,
        summary_columns=(
            Column("group", "Visits group"),
            Column("clients", "Clients", "int"),
            Column("amount", "Amount", "money"),
        ),
    )


LOST_SEGMENT = SegmentSpec(
    "lost",
    "clients with visits but none in the last `days` days, by how many visits they had",
    (
        Param("days", "days without a visit (default [segments] lost_after_days, 365)",
              whole(1, 36_500)),
        Param("visits", "keep these visit groups: " + ", ".join(LOST_GROUPS),
              choice(*LOST_GROUPS, many=True), (), "1-3"),
    ),
    build_lost,
)  # fmt: skip


def build_lifecycle(values: dict[str, Any], context: SegmentContext) -> SegmentSQL:
    rules = context.lifecycle
    stats = _visit_stats(context)
    cutoff = context.today - timedelta(days=rules.lost_after_days)
    stage = case(
        (stats.c.visits.is_(None), POTENTIAL),
        (stats.c.last_visit < cutoff, LOST),
        (stats.c.visits >= rules.regular_min_visits, REGULAR),
        else_=ONE_TIME,
    )
    staged = (
        select(
            Client.id.label("client_id"),
            stage.label("stage"),
            func.coalesce(stats.c.visits, 0).label("visits"),
            stats.c.first_visit,
            stats.c.last_visit,
        )
        .outerjoin(stats, stats.c.client_id == Client.id)
        .subquery("staged")
    )
    where = [staged.c.stage.in_(values["stage"])] if values["stage"] else []
    order = case({name: rank for rank, name in enumerate(STAGES)}, value=staged.c.stage)
    rows = (
        select(
            *client_columns(),
            staged.c.stage,
            staged.c.visits,
            staged.c.first_visit,
            staged.c.last_visit,
        )
        .join(Client, Client.id == staged.c.client_id)
        .where(*where)
        .order_by(order, staged.c.client_id)
    )
    summary = (
        select(staged.c.stage, func.count().label("clients"))
        .where(*where)
        .group_by(staged.c.stage)
        .order_by(func.min(order))
    )
    return SegmentSQL(
        members=select(staged.c.client_id).where(*where),
        rows=rows,
        columns=(
            Column("stage", "Stage"),
            Column("visits", "Visits", "int"),
            Column("first_visit", "First visit", "date"),
            Column("last_visit", "Last visit", "date"),
        ),
        summary=summary,
        summary_columns=(Column("stage", "Stage"), Column("clients", "Clients", "int")),
    )


LIFECYCLE = SegmentSpec(
    "lifecycle",
    "potential (no visits), one_time, regular, lost, by the rules in [segments]",
    (Param("stage", "keep these stages: " + ", ".join(STAGES), choice(*STAGES, many=True), (),
           REGULAR),),
    build_lifecycle,
)  # fmt: skip


def build_no_service_history(values: dict[str, Any], context: SegmentContext) -> SegmentSQL:
    sale = aliased(Visit)
    service = aliased(Visit)
    flagged = aliased(Car)
    bought = (
        select(sale.client_id.label("client_id"), sale.visited_on.label("day"))
        .where(sale.kind == SALE, sale.visited_on <= context.today)
        .union_all(
            select(flagged.client_id, func.date(flagged.created_at))
            .where(flagged.sold_here.is_(True), flagged.client_id.is_not(None))
        )
        .subquery("bought")
    )  # fmt: skip
    purchases = (
        select(bought.c.client_id, func.min(bought.c.day).label("bought_on"))
        .group_by(bought.c.client_id)
        .subquery("purchases")
    )
    serviced = exists().where(
        service.client_id == purchases.c.client_id,
        service.kind != SALE,
        service.visited_on <= context.today,
    )
    where: list[Any] = [~serviced]
    if values["days"]:
        latest = context.today - timedelta(days=values["days"])
        where.append(purchases.c.bought_on <= latest)
    cars = select(func.count()).where(Car.client_id == purchases.c.client_id).scalar_subquery()
    return SegmentSQL(
        members=select(purchases.c.client_id).where(*where),
        rows=select(
            *client_columns(),
            purchases.c.bought_on.label("bought_on"),
            cars.label("cars"),
        )
        .join(Client, Client.id == purchases.c.client_id)
        .where(*where)
        .order_by(purchases.c.bought_on, purchases.c.client_id),
        columns=(Column("bought_on", "Bought on", "date"), Column("cars", "Cars", "int")),
    )


NO_SERVICE_HISTORY = SegmentSpec(
    "no_service_history",
    "bought a car here (a sale visit, or a car marked sold_here) but never came for service",
    (Param("days", "bought at least this many days ago (default 0)", whole(0, 36_500), 0),),
    build_no_service_history,
)
