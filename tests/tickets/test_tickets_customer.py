"""The customer's side of a ticket: the signed progress link in every notice and what it shows (that
ticket's hops, nothing else), the rating asked for after the resolution, and a reply that reopens."""

from __future__ import annotations

import datetime as dt

import pytest

from core.errors import Forbidden
from omnichannel import Channel, Customer, NewConversation, Omnichannel
from tests.tickets.conftest import PROGRESS_BASE, PROGRESS_SECRET, Staff, advance, said
from tickets import FakeClock, InMemoryScheduler, RecordingNotifier, TicketService, TicketStatus
from tickets.models import CustomerMessage
from tickets.progress import LinkExpired, ProgressLinks
from tickets.service import parse_rating


def link_in(notifier: RecordingNotifier, template: str, ticket_id: str | None = None) -> str:
    """The token of the progress link in the last ``template`` notice (of ``ticket_id``)."""
    [notice] = [n for n in notifier.sent if n.template == template and ticket_id in (None, n.ticket_id)][-1:]
    link = notice.params["link"]
    assert notice.text.endswith(link) and link.startswith(f"{PROGRESS_BASE}/p/")
    return str(link).rsplit("/p/", 1)[1]


async def test_the_progress_link_shows_that_tickets_hops_and_nothing_internal(
    tickets: TicketService, customer: Customer, staff: Staff, notifier: RecordingNotifier
) -> None:
    outcome = await tickets.from_intent(
        said(
            customer,
            "exchange_request",
            entities={"order_number": "88"},
            facts={"paid": True, "stock": "out_of_stock"},
        )
    )
    assert outcome.ticket is not None
    ticket = outcome.ticket
    owner = staff.assignee(ticket)
    await tickets.comment(ticket.id, "内部备注：客户上次也退过货", False, owner)
    ticket = await tickets.complete_step(ticket.id, "review", facts={}, note="同意换货", who=owner)
    other = await tickets.from_intent(said(customer, "refund", entities={"order_number": "99"}))
    assert other.ticket is not None

    token = link_in(notifier, "ticket.step_started")
    view = await tickets.progress(token)
    assert view.number == ticket.number and view.status_label == "已受理"
    assert [(step.title, step.state_label) for step in view.steps] == [
        ("售后审核", "已完成"),
        ("仓库补货", "进行中"),
        ("物流上门取件", "进行中"),
        ("财务冻结差价", "进行中"),
    ]
    assert [step.department for step in view.steps] == ["售后", "仓储", "物流", "财务"]
    assert [event.text for event in view.events][:3] == ["工单已受理", "开始：售后审核", "完成：售后审核"]
    shown = view.model_dump_json()
    for internal in ("内部备注", "同意换货", other.ticket.number, "assignee", customer.id, "13800138000"):
        assert internal not in shown
    for username in staff.users:
        assert f'"{username}"' not in shown

    english = await tickets.progress(token, "en")
    assert english.steps[1].title == "Warehouse restocks the replacement"
    assert english.steps[1].state_label == "In progress"


async def test_a_changed_or_expired_link_shows_nothing(
    tickets: TicketService, customer: Customer, notifier: RecordingNotifier, clock: FakeClock
) -> None:
    first = await tickets.from_intent(said(customer, "return_request", entities={"order_number": "1"}))
    second = await tickets.from_intent(said(customer, "refund", entities={"order_number": "2"}))
    assert first.ticket is not None and second.ticket is not None
    token = link_in(notifier, "ticket.created", first.ticket.id)
    ticket_id, expires, signature = token.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    forged = [
        f"{ticket_id}.{expires}.{flipped}",
        f"{second.ticket.id}.{expires}.{signature}",  # another ticket with this ticket's signature
        f"{ticket_id}.{int(expires) + 86_400}.{signature}",  # a longer life
        f"{ticket_id}.{expires}",
        "",
    ]
    for bad in forged:
        with pytest.raises(Forbidden) as refused:
            await tickets.progress(bad)
        assert refused.value.code == "progress_link_invalid"
    other_key = ProgressLinks("another-secret-of-another-install", PROGRESS_BASE)
    with pytest.raises(Forbidden):
        await tickets.progress(other_key.token(ticket_id, clock.now()))

    assert (await tickets.progress(token)).number  # still fine on day 29
    clock.advance(days=30)
    with pytest.raises(LinkExpired) as expired:
        await tickets.progress(token)
    assert expired.value.status == 410 and expired.value.code == "progress_link_expired"
    fresh = ProgressLinks(PROGRESS_SECRET, PROGRESS_BASE).token(ticket_id, clock.now())
    assert (await tickets.progress(fresh)).number == first.ticket.number


def test_ratings_are_told_from_other_words() -> None:
    assert parse_rating("5") == (5, "")
    assert parse_rating(" 5 很满意") == (5, "很满意")
    assert parse_rating("4分，还行吧") == (4, "还行吧")
    assert parse_rating("五星！") == (5, "")
    assert parse_rating("2 stars - slow") == (2, "slow")
    for other in ("还是坏的", "12345", "6", "0", "订单 5 还没到", "3件都坏了"):
        assert parse_rating(other) is None, other


async def sms_conversation(omni: Omnichannel, customer: Customer) -> str:
    conversation, _ = await omni.conversations.open(
        customer.id, NewConversation(channel=Channel.sms, external_ref="sms:+8613800138000")
    )
    return conversation.id


async def test_after_the_resolution_the_customer_rates_by_sms_and_a_later_reply_reopens(
    tickets: TicketService,
    omni: Omnichannel,
    customer: Customer,
    call: str,
    staff: Staff,
    notifier: RecordingNotifier,
    clock: FakeClock,
    scheduler: InMemoryScheduler,
) -> None:
    outcome = await tickets.from_intent(
        said(customer, "cancel_order", entities={"order_number": "5"}, conversation_id=call)
    )
    assert outcome.ticket is not None
    owner = staff.assignee(outcome.ticket)
    ticket = await tickets.transition(outcome.ticket.id, TicketStatus.resolved, "已取消", owner)
    templates = [(n.template, n.channel) for n in notifier.sent if n.recipient.kind == "customer"]
    assert templates[-2:] == [("ticket.resolved", "sms"), ("ticket.csat_request", "sms")]
    assert ticket.csat is not None and ticket.csat.channel == "sms" and ticket.csat.score is None

    sms = await sms_conversation(omni, customer)
    rating = CustomerMessage(
        customer_id=customer.id, channel=Channel.sms, conversation_id=sms, text="5 很满意", message_key="m1"
    )
    recorded = await tickets.on_customer_message(rating)
    assert recorded.action == "csat_recorded" and recorded.ticket is not None
    assert recorded.notified == f"感谢您对工单 {ticket.number} 的评价！"
    assert recorded.ticket.status == "resolved" and recorded.ticket.csat is not None
    assert (recorded.ticket.csat.score, recorded.ticket.csat.comment) == (5, "很满意")
    again = await tickets.on_customer_message(rating)  # the gateway delivered it twice
    assert again.action == "csat_recorded"
    kinds = [entry.kind for entry in await tickets.history(ticket.id)]
    assert kinds.count("ticket.csat_recorded") == 1 and "ticket.csat_requested" in kinds
    timeline = await omni.timeline.page(customer.id, kinds=["ticket.csat_recorded"])
    assert [event.body["score"] for event in timeline.events] == [5]

    clock.advance(hours=2)
    complaint = rating.model_copy(update={"text": "还是没有取消，又扣款了", "message_key": "m2"})
    reopened = await tickets.on_customer_message(complaint)
    assert reopened.action == "reopened" and reopened.ticket is not None
    assert reopened.ticket.status == "reopened" and reopened.ticket.reopen_count == 1
    assert reopened.notified is not None and "重新打开" in reopened.notified
    history = await tickets.history(ticket.id)
    assert [e.body["text"] for e in history if e.kind == "ticket.customer_replied"] == [
        "还是没有取消，又扣款了"
    ]
    change = [e for e in history if e.kind == "ticket.status_changed"][-1]
    assert (change.body["to"], change.actor.type) == ("reopened", "customer")
    resolution = [t for t in await tickets.sla.timers_of(ticket.id) if t.kind == "resolution"]
    assert [(t.label, t.state) for t in resolution] == [("resolution", "met"), ("resolution", "running")]
    assert resolution[1].started_at == clock.now()

    # The policy's resolution clock runs again and escalates like the first one.
    await advance(clock, scheduler, seconds=(resolution[1].due_at - clock.now()).total_seconds() + 1)
    escalated = [e for e in await tickets.history(ticket.id) if e.kind == "ticket.escalated"]
    assert escalated and escalated[0].body["timer_id"] == resolution[1].id
    # While the ticket is open again, the customer's messages are the channel's business.
    later = rating.model_copy(update={"text": "4", "message_key": "m3"})
    assert (await tickets.on_customer_message(later)).action == "none"


async def test_a_reply_reopens_only_recent_tickets_of_that_conversation_or_channel(
    tickets: TicketService,
    omni: Omnichannel,
    customer: Customer,
    call: str,
    staff: Staff,
    clock: FakeClock,
) -> None:
    outcome = await tickets.from_intent(
        said(customer, "cancel_order", entities={"order_number": "6"}, conversation_id=call)
    )
    assert outcome.ticket is not None
    owner = staff.assignee(outcome.ticket)
    await tickets.transition(outcome.ticket.id, TicketStatus.pending_customer, "等客户确认", owner)
    on_wechat = CustomerMessage(
        customer_id=customer.id, channel=Channel.wechat, text="好的", message_key="w1"
    )
    assert (await tickets.on_customer_message(on_wechat)).action == "none"  # not how we reach them
    answer = CustomerMessage(
        customer_id=customer.id, channel=Channel.voice, conversation_id=call, text="确认", message_key="v1"
    )
    resumed = await tickets.on_customer_message(answer)
    assert resumed.action == "resumed" and resumed.ticket is not None and resumed.ticket.status == "open"

    await tickets.transition(outcome.ticket.id, TicketStatus.resolved, "done", owner)
    clock.advance(days=8)
    late = CustomerMessage(
        customer_id=customer.id,
        channel=Channel.sms,
        conversation_id=await sms_conversation(omni, customer),
        text="还有个问题",
        message_key="s9",
    )
    assert (await tickets.on_customer_message(late)).action == "none"
    assert (await tickets.get(outcome.ticket.id)).status == "resolved"
    assert late.conversation_id is not None
    assert dt.timedelta(days=7) == tickets.config.reopen_window
