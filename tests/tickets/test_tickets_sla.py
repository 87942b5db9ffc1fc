"""Journey 4: an urgent ticket nobody answers escalates — once — up the chain by SMS; reminders come before
the breach; waiting for the customer stops the clock; office hours and holidays count; collaboration
requests have their own ten minutes. The clock is fake: thirty minutes pass in milliseconds."""

from __future__ import annotations

import asyncio
import datetime as dt

from omnichannel import Customer
from tests.tickets.conftest import SHANGHAI, Staff, advance, said
from tickets import (
    FakeClock,
    InMemoryScheduler,
    Priority,
    Reason,
    RecordingNotifier,
    TicketService,
    TicketStatus,
)
from tickets.sla import BusinessCalendar

ANGRY = Reason(code="angry", zh="客户情绪激动", en="the customer is angry")


async def urgent_ticket(tickets: TicketService, customer: Customer) -> str:
    outcome = await tickets.from_intent(
        said(
            customer,
            "cancel_order",
            text="马上给我取消订单！",
            entities={"order_number": "7"},
            priority=Priority.urgent,
            reasons=[ANGRY],
        )
    )
    assert outcome.ticket is not None and outcome.ticket.priority == "urgent"
    return outcome.ticket.id


def sent(notifier: RecordingNotifier, template: str) -> list[tuple[str | None, str, str | None]]:
    return [
        (n.recipient.name, n.channel, n.recipient.address) for n in notifier.sent if n.template == template
    ]


async def test_urgent_ticket_unanswered_for_30_minutes_escalates_once(
    tickets: TicketService,
    customer: Customer,
    staff: Staff,
    clock: FakeClock,
    scheduler: InMemoryScheduler,
    notifier: RecordingNotifier,
) -> None:
    ticket_id = await urgent_ticket(tickets, customer)
    assignee = (await tickets.get(ticket_id)).assignee_name
    [first_response] = [t for t in await tickets.sla.timers_of(ticket_id) if t.kind == "first_response"]
    assert first_response.due_at == clock.now() + dt.timedelta(minutes=30)

    await advance(clock, scheduler, minutes=23)
    assert sent(notifier, "sla.reminder") == []
    await advance(clock, scheduler, minutes=1)
    assert sent(notifier, "sla.reminder") == [(assignee, "web", None)]
    await advance(clock, scheduler, minutes=5, seconds=59)
    assert sent(notifier, "sla.escalated") == []

    await advance(clock, scheduler, seconds=1)
    escalations = [
        (assignee, "web", None),
        ("zhao", "sms", "+8613900000001"),
        ("wang", "sms", "+8613900000009"),
    ]
    assert sent(notifier, "sla.escalated") == escalations
    sms = [n for n in notifier.sent if n.template == "sla.escalated" and n.channel == "sms"]
    assert sms[0].text.startswith("【升级】工单 T-20261125-0001 的首次响应已超时")

    # The same check delivered again and again, the sweep on top, later checks: nothing more.
    await asyncio.gather(*(tickets.sla.check(first_response.id) for _ in range(5)))
    await tickets.sweep()
    await advance(clock, scheduler, hours=2)
    await tickets.sweep()
    assert sent(notifier, "sla.escalated") == escalations
    assert len(sent(notifier, "sla.reminder")) == 1

    history = await tickets.history(ticket_id)
    escalated = [
        e.body for e in history if e.kind == "ticket.escalated" and e.body["sla"] == "first_response"
    ]
    assert [(e["level"], e["to"]) for e in escalated] == [
        (1, "assignee"),
        (2, "department_lead"),
        (3, "supervisor"),
    ]
    [timer] = [t for t in await tickets.sla.timers_of(ticket_id) if t.kind == "first_response"]
    assert timer.level == 3 and timer.breached_at == first_response.due_at


async def test_an_answer_in_time_stops_the_clock(
    tickets: TicketService,
    customer: Customer,
    staff: Staff,
    clock: FakeClock,
    scheduler: InMemoryScheduler,
    notifier: RecordingNotifier,
) -> None:
    ticket_id = await urgent_ticket(tickets, customer)
    await advance(clock, scheduler, minutes=10)
    ticket = await tickets.get(ticket_id)
    ticket = await tickets.comment(ticket_id, "马上为您处理", True, staff.assignee(ticket))
    assert ticket.first_response_at == clock.now()
    await advance(clock, scheduler, minutes=60)
    assert sent(notifier, "sla.reminder") == [] and sent(notifier, "sla.escalated") == []
    replies = [n for n in notifier.sent if n.template == "ticket.reply"]
    assert [(n.channel, n.text) for n in replies] == [("sms", "马上为您处理")]


async def test_waiting_for_the_customer_pauses_the_clock(
    tickets: TicketService,
    customer: Customer,
    staff: Staff,
    clock: FakeClock,
    scheduler: InMemoryScheduler,
    notifier: RecordingNotifier,
) -> None:
    ticket_id = await urgent_ticket(tickets, customer)
    assignee = staff.assignee(await tickets.get(ticket_id))
    await advance(clock, scheduler, minutes=10)
    await tickets.transition(ticket_id, TicketStatus.pending_customer, "需要客户提供订单截图", assignee)
    await advance(clock, scheduler, hours=3)
    await tickets.sweep()
    assert sent(notifier, "sla.reminder") == [] and sent(notifier, "sla.escalated") == []

    # The customer calls back about the same order: the ticket is theirs again and the clock runs on.
    again = await tickets.from_intent(
        said(customer, "cancel_order", text="截图发过去了", entities={"order_number": "7"})
    )
    assert again.action == "appended" and again.ticket is not None and again.ticket.status == "open"
    [timer] = [t for t in await tickets.sla.timers_of(ticket_id) if t.kind == "first_response"]
    assert timer.state == "running" and timer.due_at == clock.now() + dt.timedelta(minutes=20)
    await advance(clock, scheduler, minutes=13)
    assert sent(notifier, "sla.reminder") == []
    await advance(clock, scheduler, minutes=1)
    assert len(sent(notifier, "sla.reminder")) == 1
    await advance(clock, scheduler, minutes=6)
    assert len(sent(notifier, "sla.escalated")) == 3


async def test_a_collaboration_request_unanswered_for_ten_minutes_texts_the_department_lead(
    tickets: TicketService,
    customer: Customer,
    staff: Staff,
    clock: FakeClock,
    scheduler: InMemoryScheduler,
    notifier: RecordingNotifier,
) -> None:
    outcome = await tickets.from_intent(said(customer, "cancel_order", entities={"order_number": "8"}))
    assert outcome.ticket is not None
    asker = staff.assignee(outcome.ticket)
    answered = await tickets.request_collaboration(outcome.ticket.id, "finance", "退款到账了吗？", asker)
    await advance(clock, scheduler, minutes=4)
    await tickets.answer_collaboration(outcome.ticket.id, answered.id, "已到账", staff.who("fi"))
    ignored = await tickets.request_collaboration(outcome.ticket.id, "finance", "发票开了吗？", asker)
    await advance(clock, scheduler, minutes=9, seconds=59)
    assert sent(notifier, "collaboration.escalated") == []
    await advance(clock, scheduler, seconds=1)
    assert sent(notifier, "collaboration.escalated") == [("fi_lead", "sms", "+8613900000002")]
    [text] = [n.text for n in notifier.sent if n.template == "collaboration.escalated"]
    assert "向财务的协作请求" in text  # the department as the lead reads it, not its id
    await advance(clock, scheduler, minutes=30)
    assert len(sent(notifier, "collaboration.escalated")) == 1
    timers = {t.label: t for t in await tickets.sla.timers_of(outcome.ticket.id) if t.kind == "collaboration"}
    assert timers[answered.id].state == "met" and timers[ignored.id].level == 1
    kinds = [e.kind for e in await tickets.history(outcome.ticket.id)]
    assert (
        kinds.count("ticket.collaboration_requested") == 2
        and kinds.count("ticket.collaboration_answered") == 1
    )


async def test_a_crash_between_the_escalation_and_its_sms_is_finished_once(
    tickets: TicketService,
    customer: Customer,
    staff: Staff,
    clock: FakeClock,
    scheduler: InMemoryScheduler,
    notifier: RecordingNotifier,
) -> None:
    ticket_id = await urgent_ticket(tickets, customer)
    await advance(clock, scheduler, minutes=24)
    notifier.fail(1)  # the SMS provider is down when the breach comes
    await advance(clock, scheduler, minutes=6)
    assert sent(notifier, "sla.escalated") == []
    [timer] = [t for t in await tickets.sla.timers_of(ticket_id) if t.kind == "first_response"]
    assert timer.level == 1  # the move is made and kept; its effects wait for a retry
    stored = await tickets.store.timers.find_one({"_id": timer.id})
    assert stored["effects_pending"] and "unavailable" in stored["effects_error"]

    await advance(clock, scheduler, seconds=10)
    await tickets.sweep()
    await advance(clock, scheduler, minutes=5)
    assert [to for to, _, _ in sent(notifier, "sla.escalated")][1:] == ["zhao", "wang"]
    assert len(sent(notifier, "sla.escalated")) == 3
    escalated = [e for e in await tickets.history(ticket_id) if e.kind == "ticket.escalated"]
    assert len(escalated) == 3


def test_business_hours_holidays_and_adjusted_workdays(tickets: TicketService) -> None:
    office: BusinessCalendar = tickets.config.sla.calendar("office")

    def local(*parts: int) -> dt.datetime:
        return dt.datetime(*parts, tzinfo=SHANGHAI)  # type: ignore[misc]

    hours = dt.timedelta(hours=1)
    # Friday 17:30 + 4 working hours: half an hour on Friday, then Saturday's 10:00-16:00.
    assert office.add(local(2026, 11, 27, 17, 30), 4 * hours) == local(2026, 11, 28, 13, 30)
    # Saturday 15:00 + 2 h: one on Saturday, none on Sunday, one on Monday.
    assert office.add(local(2026, 11, 28, 15, 0), 2 * hours) == local(2026, 11, 30, 10, 0)
    # Before the National Day holidays: Wednesday 30 September 17:00 + 2 h → Thursday 8 October 10:00.
    assert office.add(local(2026, 9, 30, 17, 0), 2 * hours) == local(2026, 10, 8, 10, 0)
    # Saturday 10 October is an adjusted working day (调休) with weekday hours.
    assert office.add(local(2026, 10, 10, 8, 0), hours / 2) == local(2026, 10, 10, 9, 30)
    assert office.elapsed(local(2026, 11, 27, 17, 0), local(2026, 11, 30, 10, 0)) == 8 * hours
    assert not office.is_open(local(2026, 10, 1, 11, 0)) and office.is_open(local(2026, 10, 10, 17, 0))


async def test_a_normal_ticket_opened_on_friday_evening_is_due_in_working_time(
    tickets: TicketService, customer: Customer, staff: Staff, clock: FakeClock
) -> None:
    clock.set(dt.datetime(2026, 11, 27, 17, 30, tzinfo=SHANGHAI))
    outcome = await tickets.from_intent(said(customer, "invoice", text="我要开发票"))
    assert outcome.ticket is not None and outcome.ticket.priority == "normal"
    timers = {t.kind: t for t in await tickets.sla.timers_of(outcome.ticket.id)}
    assert timers["first_response"].due_at == dt.datetime(2026, 11, 28, 13, 30, tzinfo=SHANGHAI)
    # 80 % of four working hours is 3 h 12 min: half an hour on Friday, 2 h 42 min on Saturday.
    assert timers["first_response"].remind_at == dt.datetime(2026, 11, 28, 12, 42, tzinfo=SHANGHAI)
    # Two office days (18 working hours): Friday 0.5, Saturday 6, Monday 9, Tuesday 2.5.
    assert timers["resolution"].due_at == dt.datetime(2026, 12, 1, 11, 30, tzinfo=SHANGHAI)
