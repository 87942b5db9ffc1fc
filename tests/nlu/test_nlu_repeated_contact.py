"""Repeated contact reaches the priority: the intent pipeline counts the customer's earlier contacts on their
timeline (``omnichannel.contacts``) and the analysis, and the ticket made from it, rank higher for it.

Runs on the real embedded MongoDB (``tests/conftest.py``); earlier contacts are timeline events dated back.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from asr.nlu import Analyzer, Priority
from core.db import Database, utcnow
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, NewEvent, Omnichannel
from omnichannel.channels.pipeline import IntentPipeline
from omnichannel.contacts import RecentContacts
from tickets import FakeClock, InMemoryScheduler, RecordingNotifier, TicketService, TicketStore, load_config

TEXT = "订单12345的退款怎么还没到账，太慢了"  # a refund, mildly negative: normal priority the first time


@pytest.fixture
async def omni(db: Database) -> Omnichannel:
    return Omnichannel.create(db, None)


@pytest.fixture
async def pipeline(omni: Omnichannel, db: Database, analyzer: Analyzer) -> IntentPipeline:
    scheduler = InMemoryScheduler()
    tickets = TicketService(
        TicketStore(db),
        omni,
        load_config(),
        clock=FakeClock(utcnow()),
        notifier=RecordingNotifier(),
        scheduler=scheduler,
    )
    scheduler.bind(tickets.sla.check)
    return IntentPipeline(omni.timeline, tickets, analyzer=lambda: analyzer, repeat_contact_hours=72)


async def sms_customer(omni: Omnichannel, phone: str) -> tuple[str, str]:
    customer, _ = await omni.customers.resolve([Identity(kind=IdentityKind.phone, value=phone)])
    conversation, _ = await omni.conversations.open(
        customer.id, NewConversation(channel=Channel.sms, external_ref=f"sms:{phone}")
    )
    return customer.id, conversation.id


async def inbound(
    omni: Omnichannel,
    customer_id: str,
    conversation_id: str | None,
    *,
    ago: dt.timedelta,
    channel: Channel = Channel.sms,
    kind: str = "message.in",
    actor: str = "customer",
) -> str:
    key = f"test:{uuid.uuid4().hex}"
    await omni.timeline.append(
        customer_id,
        NewEvent(
            kind=kind,
            channel=channel,
            conversation_id=conversation_id,
            ts=utcnow() - ago,
            body={"text": TEXT},
            idempotency_key=key,
        ),
        Actor(type="customer", id=customer_id)
        if actor == "customer"
        else Actor(type="system", name="dialer"),
    )
    return key


async def test_a_customer_writing_for_the_third_time_within_the_window_gets_a_higher_priority_ticket(
    omni: Omnichannel, pipeline: IntentPipeline
) -> None:
    first_timer, first_conversation = await sms_customer(omni, "+8613800000001")
    key = await inbound(omni, first_timer, first_conversation, ago=dt.timedelta(0))
    first = await pipeline.run(
        customer_id=first_timer,
        conversation_id=first_conversation,
        channel=Channel.sms,
        text=TEXT,
        source_key=key,
    )
    assert first.analysis is not None and first.analysis.priority is Priority.normal
    assert "repeated_contact" not in [reason.code for reason in first.analysis.reasons]

    customer_id, conversation_id = await sms_customer(omni, "+8613800000002")
    await inbound(omni, customer_id, conversation_id, ago=dt.timedelta(hours=30))
    await inbound(omni, customer_id, conversation_id, ago=dt.timedelta(hours=3))
    key = await inbound(omni, customer_id, conversation_id, ago=dt.timedelta(0))  # as the SMS service does
    third = await pipeline.run(
        customer_id=customer_id,
        conversation_id=conversation_id,
        channel=Channel.sms,
        text=TEXT,
        source_key=key,
    )

    assert third.analysis is not None and third.analysis.intent == "refund"
    [reason] = [reason for reason in third.analysis.reasons if reason.code == "repeated_contact"]
    assert reason.zh == "近期已联系 2 次" and reason.en == "Contacted us 2 times recently"
    assert third.analysis.priority is Priority.high
    assert third.outcome is not None and third.outcome.ticket is not None
    assert third.outcome.ticket.priority.value == "high"
    page = await omni.timeline.page(customer_id, kinds=["intent.recognised"])
    assert [event.body["priority"] for event in page.events] == ["high"]


async def test_only_separate_contacts_within_the_window_count(omni: Omnichannel) -> None:
    customer_id, sms = await sms_customer(omni, "+8613800000003")
    chat, _ = await omni.conversations.open(customer_id, NewConversation(channel=Channel.webchat))
    await inbound(omni, customer_id, sms, ago=dt.timedelta(hours=80))  # outside the 72 h window
    for minutes in (300, 295, 290):  # one burst of messages: one contact
        await inbound(omni, customer_id, sms, ago=dt.timedelta(minutes=minutes))
    await inbound(omni, customer_id, chat.id, ago=dt.timedelta(hours=1), channel=Channel.webchat)
    await inbound(
        omni,
        customer_id,
        None,
        ago=dt.timedelta(hours=2),
        channel=Channel.voice,
        kind="call.started",
        actor="system",
    )  # we called them: not their contact
    await inbound(omni, customer_id, sms, ago=dt.timedelta(minutes=1))  # the contact in hand

    contacts = RecentContacts(omni.timeline, omni.customers, window=dt.timedelta(hours=72))
    assert await contacts.before(customer_id, channel=Channel.sms, conversation_id=sms) == 2
    shorter = RecentContacts(omni.timeline, omni.customers, window=dt.timedelta(hours=2))
    assert await shorter.before(customer_id, channel=Channel.sms, conversation_id=sms) == 1


async def test_a_caller_is_counted_by_number_with_the_call_in_progress_left_out(omni: Omnichannel) -> None:
    customer, _ = await omni.customers.resolve([Identity(kind=IdentityKind.phone, value="+8613800000004")])
    for ago in (dt.timedelta(days=2), dt.timedelta(hours=5), dt.timedelta(minutes=2)):  # the last: this call
        call, _ = await omni.conversations.open(customer.id, NewConversation(channel=Channel.voice))
        await inbound(omni, customer.id, call.id, ago=ago, channel=Channel.voice, kind="call.started")

    contacts = RecentContacts(omni.timeline, omni.customers, window=dt.timedelta(hours=72))
    assert await contacts.for_caller("13800000004") == 2
    assert await contacts.for_caller("+8613900000000") == 0  # a number never seen


async def test_a_conversation_is_counted_once_while_the_customer_goes_on_writing(omni: Omnichannel) -> None:
    customer_id, conversation_id = await sms_customer(omni, "+8613800000009")
    await inbound(omni, customer_id, None, ago=dt.timedelta(hours=30), channel=Channel.wechat)
    now = [utcnow()]
    recent = RecentContacts(
        omni.timeline, omni.customers, window=dt.timedelta(hours=72), clock=lambda: now[0]
    )
    reads = 0
    page = omni.timeline.page

    async def counted_page(*args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return await page(*args, **kwargs)  # type: ignore[arg-type]

    omni.timeline.page = counted_page  # type: ignore[method-assign]
    for _ in range(5):  # five lines of one chat
        await inbound(omni, customer_id, conversation_id, ago=dt.timedelta(0))
        assert await recent.before(customer_id, channel=Channel.sms, conversation_id=conversation_id) == 1
    assert reads == 1

    await inbound(
        omni, customer_id, None, ago=dt.timedelta(minutes=1), channel=Channel.voice, kind="call.started"
    )
    now[0] += dt.timedelta(minutes=6)  # remembered for five minutes: then counted again, the call too
    assert await recent.before(customer_id, channel=Channel.sms, conversation_id=conversation_id) == 2
    assert reads == 2
