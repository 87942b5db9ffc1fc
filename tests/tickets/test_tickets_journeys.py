"""Journey 6 end to end with the controllable clock: a WeChat customer's "换货 + 已付款 + 库存不足" starts
warehouse, logistics and finance in parallel, each on its own SLA; the customer's progress link shows every
hop as it happens; completion reaches them on WeChat with the rating request, and their rating lands on
the ticket."""

from __future__ import annotations

from omnichannel import Channel, Identity, IdentityKind, Omnichannel
from tests.tickets.conftest import Staff, advance, said
from tickets import FakeClock, InMemoryScheduler, RecordingNotifier, TicketService, TicketStatus
from tickets.models import CustomerMessage


async def test_journey_6_exchange_paid_out_of_stock_seen_by_the_customer_hop_by_hop(
    tickets: TicketService,
    omni: Omnichannel,
    staff: Staff,
    clock: FakeClock,
    scheduler: InMemoryScheduler,
    notifier: RecordingNotifier,
) -> None:
    customer, _ = await omni.customers.resolve(
        [Identity(kind=IdentityKind.wechat_openid, value="oWx-journey-6")], name="王芳", language="zh"
    )
    outcome = await tickets.from_intent(
        said(
            customer,
            "exchange_request",
            text="我要换货，已经付款了，但是客服说新的没货",
            channel=Channel.wechat,
            entities={"order_number": "6006"},
            facts={"paid": True, "stock": "out_of_stock"},
        )
    )
    assert outcome.ticket is not None
    ticket = outcome.ticket
    owner = staff.assignee(ticket)
    to_customer = [n for n in notifier.sent if n.recipient.kind == "customer"]
    assert [(n.template, n.channel, n.recipient.address) for n in to_customer] == [
        ("ticket.created", "wechat", "oWx-journey-6")
    ]
    token = to_customer[0].params["link"].rsplit("/p/", 1)[1]

    async def page() -> dict[str, str]:
        view = await tickets.progress(token)
        return {step.title: step.state_label for step in view.steps}

    assert await page() == {"售后审核": "进行中"}
    await advance(clock, scheduler, minutes=40)
    await tickets.comment(ticket.id, "您好，已为您安排换货", True, owner)
    await tickets.complete_step(ticket.id, "review", facts={}, note="同意换货", who=owner)
    assert await page() == {
        "售后审核": "已完成",
        "仓库补货": "进行中",
        "物流上门取件": "进行中",
        "财务冻结差价": "进行中",
    }
    steps = {t.label: t for t in await tickets.sla.timers_of(ticket.id) if t.kind == "step"}
    assert steps["review"].state == "met"
    # Each parallel step has its own clock: finance's 4 working hours, warehouse and logistics 9.
    assert steps["hold_payment"].due_at < steps["restock"].due_at == steps["pickup"].due_at

    await tickets.complete_step(ticket.id, "restock", facts={}, note="", who=staff.who("wh"))
    await tickets.complete_step(ticket.id, "pickup", facts={}, note="", who=staff.who("lg"))
    assert (await page())["售后确认完成"] == "等待其他环节"
    # Finance sits on it past its own target: its assignee hears, then the finance lead by SMS.
    await advance(clock, scheduler, seconds=(steps["hold_payment"].due_at - clock.now()).total_seconds())
    await advance(clock, scheduler, minutes=30)
    escalated = [
        (e.body["label"], e.body["level"], e.body["to"])
        for e in await tickets.history(ticket.id)
        if e.kind == "ticket.escalated"
    ]
    assert escalated == [("hold_payment", 1, "assignee"), ("hold_payment", 2, "department_lead")]
    lead_sms = [n for n in notifier.sent if n.template == "sla.escalated" and n.channel == "sms"]
    assert [n.recipient.name for n in lead_sms] == ["fi_lead"]
    finance = (await tickets.get(ticket.id)).workflow.steps["hold_payment"].assignee_name  # type: ignore[union-attr]
    await tickets.complete_step(ticket.id, "hold_payment", facts={}, note="", who=staff.who(finance or ""))
    await tickets.complete_step(ticket.id, "confirm", facts={}, note="客户已确认", who=owner)
    assert set((await page()).values()) == {"已完成"}
    await tickets.transition(ticket.id, TicketStatus.resolved, "换货完成", owner)

    hops = [n for n in notifier.sent if n.recipient.kind == "customer"]
    assert [(n.template, n.channel) for n in hops] == [
        ("ticket.created", "wechat"),
        ("ticket.reply", "wechat"),
        ("ticket.step_started", "wechat"),
        ("ticket.step_started", "wechat"),
        ("ticket.step_started", "wechat"),
        ("ticket.step_started", "wechat"),
        ("ticket.resolved", "wechat"),
        ("ticket.csat_request", "wechat"),
    ]
    assert all("/p/" in n.text for n in hops if n.template not in ("ticket.csat_request", "ticket.reply"))
    view = await tickets.progress(token)
    assert view.status_label == "已解决"
    assert [event.text for event in view.events][-2:] == ["所有环节已完成", "已解决"]

    rating = CustomerMessage(
        customer_id=customer.id, channel=Channel.wechat, text="5 换货很顺利", message_key="wx-msg-1"
    )
    recorded = await tickets.on_customer_message(rating)
    assert recorded.action == "csat_recorded" and recorded.ticket is not None
    assert recorded.ticket.csat is not None and recorded.ticket.csat.score == 5
    assert (await tickets.progress(token)).events[-1].text == "感谢您的评价"
