"""Journey 1 from the ticket side: what the caller said becomes a ticket with the order number, the caller
is texted its number, nobody asks twice — and a second request while one is open joins it."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import Conflict
from omnichannel import Customer, Omnichannel
from tests.tickets.conftest import Staff, all_tickets, said
from tickets import RecordingNotifier, TicketService, TicketStatus


async def test_return_request_with_order_number_makes_a_ticket_with_it(
    tickets: TicketService,
    omni: Omnichannel,
    customer: Customer,
    call: str,
    staff: Staff,
    notifier: RecordingNotifier,
) -> None:
    outcome = await tickets.from_intent(
        said(
            customer,
            "return_request",
            text="我要退货，订单号 12345",
            entities={"order_number": "12345"},
            conversation_id=call,
        )
    )
    assert outcome.action == "created" and outcome.ticket is not None
    ticket = outcome.ticket
    assert ticket.number == "T-20261125-0001"
    assert (ticket.category, ticket.intent, ticket.entities) == (
        "return",
        "return_request",
        {"order_number": "12345"},
    )
    assert (ticket.channel, ticket.conversation_id, ticket.status) == ("voice", call, TicketStatus.new)
    assert ticket.department == "after_sales" and ticket.assignee_id in {staff.id("li"), staff.id("zhao")}
    assert ticket.workflow is not None and ticket.workflow.steps["review"].state == "active"

    sms = [n for n in notifier.sent if n.template == "ticket.created"]
    assert len(sms) == 1 and sms[0].channel == "sms" and sms[0].recipient.address == "+8613800138000"
    assert "T-20261125-0001" in sms[0].text

    page = await omni.timeline.page(customer.id, kinds=["ticket.*"])
    created = [event for event in page.events if event.kind == "ticket.created"]
    assert len(created) == 1
    assert created[0].conversation_id == call and created[0].channel == "voice"
    assert (
        created[0].body["entities"] == {"order_number": "12345"}
        and created[0].body["number"] == ticket.number
    )
    kinds = [entry.kind for entry in await tickets.history(ticket.number)]
    assert kinds[:3] == ["ticket.created", "ticket.assigned", "ticket.workflow_started"]


async def test_a_missing_order_number_is_asked_for_in_the_callers_language(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    outcome = await tickets.from_intent(said(customer, "return_request", text="我要退货"))
    assert outcome.action == "needs_input" and outcome.ticket is None
    assert [item.field for item in outcome.missing] == ["order_number"]
    assert outcome.prompt == "请告诉我您要退货的订单号。"
    english = await tickets.from_intent(said(customer, "refund", language="en", text="I want my money back"))
    assert english.prompt == "Please tell me the order number to refund."
    assert (await all_tickets(tickets)) == []


async def test_the_same_request_while_a_ticket_is_open_joins_it(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    first = await tickets.from_intent(said(customer, "logistics", text="快递三天没动了"))
    again = await tickets.from_intent(
        said(customer, "logistics", text="还是没到", entities={"order_number": "A9"})
    )
    assert first.action == "created" and again.action == "appended"
    assert first.ticket is not None and again.ticket is not None and again.ticket.id == first.ticket.id
    assert again.ticket.appended_count == 1 and again.ticket.entities == {"order_number": "A9"}
    history = await tickets.history(first.ticket.id)
    assert [entry.body["text"] for entry in history if entry.kind == "ticket.appended"] == ["还是没到"]

    lg = staff.who("lg")
    await tickets.transition(first.ticket.id, TicketStatus.resolved, "delivered", lg)
    later = await tickets.from_intent(said(customer, "logistics", text="又一个包裹没到"))
    assert later.action == "created" and later.ticket is not None and later.ticket.id != first.ticket.id


async def test_two_simultaneous_requests_make_one_ticket(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    outcomes = await asyncio.gather(
        *(
            tickets.from_intent(said(customer, "logistics", text=f"第 {n} 次催件", channel="wechat"))
            for n in range(5)
        )
    )
    assert sorted(outcome.action for outcome in outcomes) == ["appended"] * 4 + ["created"]
    assert len({outcome.ticket.id for outcome in outcomes if outcome.ticket}) == 1
    [ticket] = await all_tickets(tickets)
    assert ticket.appended_count == 4


async def test_a_retried_signal_changes_nothing_twice(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    signal = said(customer, "logistics", text="快递丢了", idempotency_key="utterance-7")
    first = await tickets.from_intent(signal)
    retry = await tickets.from_intent(signal)
    assert (first.action, retry.action) == ("created", "created")
    assert retry.ticket is not None and retry.ticket.appended_count == 0
    follow_up = said(customer, "logistics", text="还有", idempotency_key="utterance-8")
    assert (await tickets.from_intent(follow_up)).action == "appended"
    assert (await tickets.from_intent(follow_up)).ticket.appended_count == 1  # type: ignore[union-attr]


async def test_unsure_or_chatty_intents_make_no_ticket(tickets: TicketService, customer: Customer) -> None:
    unsure = await tickets.from_intent(said(customer, "logistics", confidence=0.2))
    assert unsure.action == "ignored" and "0.20" in unsure.reason
    assert (await tickets.from_intent(said(customer, "greeting"))).action == "ignored"
    assert (await tickets.from_intent(said(customer, "weather"))).action == "ignored"


async def test_a_vip_customer_gets_high_priority_and_says_why(
    tickets: TicketService, omni: Omnichannel, customer: Customer, staff: Staff
) -> None:
    from omnichannel.models import CustomerPatch

    await omni.customers.update(customer.id, CustomerPatch(vip=True))
    outcome = await tickets.from_intent(said(customer, "invoice", text="开发票"))
    assert outcome.ticket is not None and outcome.ticket.priority == "high"
    assert [reason.code for reason in outcome.ticket.priority_reasons] == ["vip"]


async def test_an_agent_cannot_open_a_second_active_ticket_for_the_same_intent(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    from tickets import NewTicket

    first = await tickets.from_intent(said(customer, "invoice"))
    assert first.ticket is not None
    new = NewTicket(customer_id=customer.id, category="invoice", subject="发票", intent="invoice")
    with pytest.raises(Conflict) as refused:
        await tickets.create(new, staff.who("fi"))
    assert refused.value.code == "duplicate_ticket" and first.ticket.number in refused.value.detail
