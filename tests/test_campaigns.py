"""Campaigns and the outbox's door: queue once, all or nothing, cancel, account for every message."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm.campaigns import (
    CampaignError,
    CampaignPlan,
    campaign_report,
    cancel_campaign,
    count_recipients,
    create_campaign,
    prepare_campaign,
)
from crm.preferences import PAGE, LinkSigner, LinkToken, link_secret, opt_out
from crm.segments import SegmentContext, SegmentError
from crm.templates import TemplateLibrary
from gateway import lifecycle
from gateway.channels.filesink import FileSink
from gateway.consent import SERVICE
from gateway.optout import OptOut
from gateway.outbox import PlanError, Recipient, enqueue
from gateway.render import TemplateProblem
from storage.models import Client
from storage.outbox import Campaign, Message
from tests.support.clock import FakeClock
from tests.support.databases import Database
from tests.support.messaging import (
    COMPANY,
    add_client,
    add_visit,
    make_dispatcher,
    message,
    queue_message,
)


async def plan_for(
    db: Database,
    clock: FakeClock,
    *,
    template: str = "winback",
    channels: str = "telegram,sms",
    kind: str = "advertising",
    segment: str = "all",
    params: dict[str, str] | None = None,
    library: TemplateLibrary | None = None,
) -> CampaignPlan:
    async with db.sessions() as session:
        return await prepare_campaign(
            session,
            library or TemplateLibrary(),
            segment=segment,
            params=params or {},
            template=template,
            channels=channels,
            kind=kind,
            starts_at=clock(),
            context=SegmentContext(today=clock().date()),
        )


async def launch(db: Database, clock: FakeClock, plan: CampaignPlan, batch_size: int = 2) -> int:
    async with db.sessions() as session, session.begin():
        campaign, _ = await create_campaign(
            session, plan, COMPANY, now=clock(), today=clock().date(), batch_size=batch_size
        )
        return campaign.id


async def count(db: Database, model: type[Message] | type[Campaign]) -> int:
    async with db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_enqueueing_the_same_key_twice_queues_one_message(
    db: Database, clock: FakeClock
) -> None:
    client = await add_client(db, first_name="Анна", middle_name="Сергеевна", gender="female")
    first = await queue_message(db, clock, client, key="birthday:1:2026", kind=SERVICE)
    async with db.sessions() as session, session.begin():
        template = await TemplateLibrary().get(session, "winback")
        again = await enqueue(
            session,
            template,
            [Recipient(client, "birthday:1:2026", {"unused": True})],
            plan=("telegram",),
            kind=SERVICE,
            now=clock(),
        )

    assert (again.queued, again.duplicates) == (0, 1)
    assert await count(db, Message) == 1
    assert (await message(db, first)).kind == SERVICE


async def test_a_campaign_queues_one_personalised_message_per_client(
    db: Database, clock: FakeClock
) -> None:
    anna = await add_client(
        db, first_name="Анна", middle_name="Сергеевна", gender="female", telegram_id=42
    )
    ivan = await add_client(
        db, first_name="Иван", middle_name="", gender=None, phone="+79035254560"
    )
    later = clock() + timedelta(hours=3)
    plan = await plan_for(db, clock)
    plan = dataclasses.replace(plan, starts_at=later)

    campaign_id = await launch(db, clock, plan, batch_size=1)

    async with db.sessions() as session:
        messages = list(await session.scalars(select(Message).order_by(Message.client_id)))
    assert [m.idempotency_key for m in messages] == [
        f"campaign:{campaign_id}:{anna}",
        f"campaign:{campaign_id}:{ivan}",
    ]
    assert messages[0].content["telegram"]["text"].startswith("👋 <b>Уважаемая Анна Сергеевна!</b>")
    assert messages[1].content["sms"]["text"].startswith("Иван, давно не виделись!")
    # Only the channels a client has an address for are rendered.
    assert (list(messages[0].content), list(messages[1].content)) == (["telegram"], ["sms"])
    assert {m.next_attempt_at for m in messages} == {later}
    assert {(m.state, m.plan, m.kind) for m in messages} == {
        ("queued", "telegram,sms", "advertising")
    }


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        pytest.param(
            {"template": "maintenance_reminder"},
            CampaignError,
            "template maintenance_reminder needs maintenance",
            id="occasion-template",
        ),
        pytest.param(
            {"channels": "telegram,fax"}, PlanError, "unknown channel 'fax'", id="channel"
        ),
        pytest.param({"channels": "sms,sms"}, PlanError, "appears twice", id="twice"),
        pytest.param({"kind": "promo"}, PlanError, "unknown message kind 'promo'", id="kind"),
        pytest.param({"segment": "vip"}, SegmentError, "unknown segment 'vip'", id="segment"),
        pytest.param({"params": {"days": "30"}}, SegmentError, "takes no parameters", id="params"),
    ],
)
async def test_a_campaign_that_cannot_work_is_refused_before_anything_is_queued(
    db: Database,
    clock: FakeClock,
    options: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        await plan_for(db, clock, **options)  # type: ignore[arg-type]


async def test_a_plan_naming_a_channel_the_template_lacks_is_refused(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    (tmp_path / "sms_only.j2").write_text("{% block sms %}Привет{% endblock %}", "utf-8")

    with pytest.raises(PlanError, match="template sms_only has no telegram block"):
        await plan_for(db, clock, template="sms_only", library=TemplateLibrary(tmp_path))


async def test_a_campaign_that_fails_for_one_client_leaves_nothing_behind(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    (tmp_path / "car_offer.j2").write_text(
        "{% block sms %}{{ client.name }}, для {{ car.title }} скидка{% endblock %}", "utf-8"
    )
    for number in range(5):  # none of them has a car: the template cannot render
        await add_client(db, phone=f"+7903525456{number}")
    plan = await plan_for(
        db, clock, template="car_offer", channels="sms", library=TemplateLibrary(tmp_path)
    )

    with pytest.raises(TemplateProblem, match="car_offer, line 1"):
        await launch(db, clock, plan)

    assert await count(db, Campaign) == 0
    assert await count(db, Message) == 0


async def test_cancelling_stops_what_has_not_left_and_keeps_what_was_sent(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    for number in range(4):
        await add_client(db, telegram_id=100 + number)
    campaign_id = await launch(db, clock, await plan_for(db, clock, channels="telegram"))
    sink = FileSink("telegram", tmp_path)
    async with db.sessions() as session, session.begin():
        [first] = await lifecycle.claim(session, "dispatcher", clock(), timedelta(minutes=5), 1)
    await make_dispatcher(db, {"telegram": sink}, clock, max_in_flight=1)._deliver(first)
    async with db.sessions() as session, session.begin():
        [held] = await lifecycle.claim(session, "other", clock(), timedelta(minutes=5), 1)

    async with db.sessions() as session, session.begin():
        cancelled = await cancel_campaign(session, campaign_id, clock())

    assert cancelled == 3  # two queued, and one held by a worker that had not sent it yet
    assert (await message(db, first)).state == "sent"
    assert (await message(db, held)).state == "cancelled"
    async with db.sessions() as session:
        report = await campaign_report(session, campaign_id, clock())
    assert (report.status, report.by_state) == ("cancelled", {"sent": 1, "cancelled": 3})
    with pytest.raises(CampaignError, match="already cancelled"):
        async with db.sessions() as session, session.begin():
            await cancel_campaign(session, campaign_id, clock())


async def test_the_report_accounts_for_every_message_by_state_channel_and_reason(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    await add_client(db, telegram_id=501)
    await add_client(db, phone="+79035254560")
    await add_client(db, phone="+79035254561", ads=None)
    await add_client(db)
    campaign_id = await launch(db, clock, await plan_for(db, clock))
    channels = {"telegram": FileSink("telegram", tmp_path), "sms": FileSink("sms", tmp_path)}

    await make_dispatcher(db, channels, clock).drain()

    async with db.sessions() as session:
        report = await campaign_report(session, campaign_id, clock())
    assert report.status == "finished"
    assert report.total == 4
    assert report.by_state == {"sent": 2, "skipped": 2}
    assert report.by_channel == {"-": {"skipped": 2}, "sms": {"sent": 1}, "telegram": {"sent": 1}}
    assert sorted(report.reasons) == [
        ("telegram: not linked to Telegram; sms: no consent to advertising", 1),
        ("telegram: not linked to Telegram; sms: no phone number", 1),
    ]


async def test_a_campaign_waits_for_its_start_time(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    await add_client(db, telegram_id=777)
    plan = await plan_for(db, clock, channels="telegram")
    starts = clock() + timedelta(hours=2)
    campaign_id = await launch(
        db,
        clock,
        dataclasses.replace(plan, starts_at=starts),
    )
    dispatcher = make_dispatcher(db, {"telegram": FileSink("telegram", tmp_path)}, clock)

    assert await dispatcher.drain() == 0
    async with db.sessions() as session:
        assert (await campaign_report(session, campaign_id, clock())).status == "scheduled"

    clock.set(starts)
    assert await dispatcher.drain() == 1


async def test_a_contact_added_after_queueing_is_left_for_the_next_message(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    client = await add_client(db, phone="+79035254560")
    campaign_id = await launch(db, clock, await plan_for(db, clock, channels="telegram,sms"))
    async with db.sessions() as session, session.begin():
        (await session.get_one(Client, client)).telegram_id = 4242
    channels = {"telegram": FileSink("telegram", tmp_path), "sms": FileSink("sms", tmp_path)}

    await make_dispatcher(db, channels, clock).drain()

    async with db.sessions() as session:
        sent = await session.scalar(select(Message).where(Message.campaign_id == campaign_id))
    assert sent is not None
    assert (sent.state, sent.channel) == ("sent", "sms")
    assert sent.reason == "telegram: no address yet when the message was queued"


async def test_a_campaign_to_an_expression_of_segments_reaches_just_its_clients(
    db: Database, clock: FakeClock
) -> None:
    recent = await add_client(db, telegram_id=1)
    lost = await add_client(db, telegram_id=2)
    await add_client(db, telegram_id=3)  # no visits: neither
    await add_visit(db, recent, date(2026, 9, 1), 1000)
    await add_visit(db, lost, date(2024, 9, 1), 1000)
    plan = await plan_for(db, clock, segment="lifecycle(stage=one_time) or lost(days=365)")
    async with db.sessions() as session:
        assert (await count_recipients(session, plan))["clients"] == 2

    campaign_id = await launch(db, clock, plan)

    async with db.sessions() as session:
        keys = set(await session.scalars(select(Message.idempotency_key)))
    assert keys == {f"campaign:{campaign_id}:{recent}", f"campaign:{campaign_id}:{lost}"}


async def launch_with_links(
    db: Database, clock: FakeClock, plan: CampaignPlan
) -> tuple[int, LinkSigner]:
    async with db.sessions() as session, session.begin():
        signer = LinkSigner(await link_secret(session, clock()), "https://loyal.example.ru")
        campaign, _ = await create_campaign(
            session,
            plan,
            COMPANY,
            now=clock(),
            today=clock().date(),
            links=signer,
            opt_out=OptOut("Отказ: {link}"),
        )
        return campaign.id, signer


async def test_advertising_carries_each_clients_own_way_out(db: Database, clock: FakeClock) -> None:
    ivan = await add_client(db, telegram_id=7, phone="+79161234567", email="ivan@example.ru")
    anna = await add_client(
        db, telegram_id=8, phone="+79161234568", email="anna@example.ru", first_name="Анна"
    )
    plan = dataclasses.replace(
        await plan_for(db, clock, channels="telegram,sms,email"), email_account="news"
    )

    campaign_id, signer = await launch_with_links(db, clock, plan)

    async with db.sessions() as session:
        messages = (await session.scalars(select(Message).order_by(Message.client_id))).all()
    for sent, client in zip(messages, (ivan, anna), strict=True):
        link = signer.url(client, campaign_id)
        assert sent.content["sms"]["text"].endswith(f"— {COMPANY.name} Отказ: {link}")
        assert sent.content["email"]["list_unsubscribe"] == f"{link}?channel=email"
        assert sent.content["telegram"]["text"].endswith(
            f'\n\n<a href="{link}">Отписаться от рассылки</a>'
        )
        assert f'href="{link}"' in sent.content["email"]["html"], "the footer's link"
        assert sent.account == "news"
        token = link.rsplit("/", 1)[1]
        assert signer.read(token) == LinkToken(client, campaign_id)


async def test_service_messages_carry_no_opt_out_line(db: Database, clock: FakeClock) -> None:
    await add_client(db, telegram_id=7, phone="+79161234567", email="ivan@example.ru")
    plan = await plan_for(db, clock, channels="telegram,sms,email", kind=SERVICE)

    await launch_with_links(db, clock, plan)

    async with db.sessions() as session:
        [sent] = (await session.scalars(select(Message))).all()
    assert "Отказ" not in sent.content["sms"]["text"]
    assert "Отписаться" not in sent.content["telegram"]["text"]
    assert "list_unsubscribe" not in sent.content["email"]
    assert sent.account is None


async def test_the_report_counts_the_opt_outs_a_campaign_caused(
    db: Database, clock: FakeClock
) -> None:
    clients = [await add_client(db, phone=f"+7916123456{n}") for n in range(3)]
    campaign_id, _ = await launch_with_links(db, clock, await plan_for(db, clock, channels="sms"))
    async with db.sessions() as session, session.begin():
        for client in clients[:2]:
            await opt_out(
                session, client, ["sms"], source=PAGE, now=clock(), campaign_id=campaign_id
            )
        await opt_out(session, clients[0], None, source=PAGE, now=clock(), campaign_id=campaign_id)
        await opt_out(session, clients[2], ["sms"], source=PAGE, now=clock(), campaign_id=None)

    async with db.sessions() as session:
        report = await campaign_report(session, campaign_id, clock())
    assert report.opt_outs == 2
