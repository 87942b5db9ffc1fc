"""A caller who got in touch again and again lately (SMS, WeChat, earlier calls) is heard as more urgent: the
IVR counts their customer's recent contacts on the real timeline (``omnichannel.contacts.RecentContacts``, as
``ivr_flows.line`` wires it) and the ticket and the queue get the higher priority, with the reason."""

from __future__ import annotations

import datetime as dt
import uuid

from core.db import Database, utcnow
from ivr_flows import FakeCall, RecordingTicketGateway, ScriptedSpeech
from ivr_flows.validation import Revision
from omnichannel import Actor, Channel, Identity, IdentityKind, NewEvent, Omnichannel
from omnichannel.contacts import RecentContacts
from tests.ivr.conftest import MakeExecutor

SAID = "我要退货，订单号 12345"  # a plain return request: normal priority from a first-time caller
CALLER = "+8613800007777"


async def _wrote_before(omni: Omnichannel, hours_ago: list[float]) -> None:
    customer, _ = await omni.customers.resolve([Identity(kind=IdentityKind.phone, value=CALLER)])
    for hours in hours_ago:
        await omni.timeline.append(
            customer.id,
            NewEvent(
                kind="message.in",
                channel=Channel.sms,
                conversation_id=None,
                ts=utcnow() - dt.timedelta(hours=hours),
                body={"text": "退货进度怎么样了"},
                idempotency_key=f"test:{uuid.uuid4().hex}",
            ),
            Actor(type="customer", id=customer.id),
        )


async def _ticket_priority(make_executor: MakeExecutor, main_flow: Revision, omni: Omnichannel) -> str:
    tickets = RecordingTicketGateway()
    recent = RecentContacts(omni.timeline, omni.customers, window=dt.timedelta(hours=72))
    executor = make_executor(
        speech=ScriptedSpeech([SAID]), tickets=tickets, recent_contacts=recent.for_caller
    )
    context = await executor.run(main_flow, FakeCall(dtmf="1", caller=CALLER))
    [request] = tickets.requests
    assert context.intents[0].intent == "return_request"
    assert context.variables["priority"] == request.priority
    return request.priority


async def test_a_caller_who_wrote_three_times_this_week_is_urgent_and_a_first_timer_is_not(
    make_executor: MakeExecutor, main_flow: Revision, db: Database
) -> None:
    omni = Omnichannel.create(db, None)
    assert await _ticket_priority(make_executor, main_flow, omni) == "normal"  # a number never seen

    await _wrote_before(omni, [100.0])  # outside the 72 h window: forgotten
    assert await _ticket_priority(make_executor, main_flow, omni) == "normal"

    await _wrote_before(omni, [50.0, 30.0, 5.0])
    assert await _ticket_priority(make_executor, main_flow, omni) == "high"


async def test_a_timeline_that_cannot_be_read_costs_only_the_urgency(
    make_executor: MakeExecutor, main_flow: Revision
) -> None:
    async def down(caller: str) -> int:
        raise ConnectionError("MongoDB is restarting")

    tickets = RecordingTicketGateway()
    executor = make_executor(speech=ScriptedSpeech([SAID]), tickets=tickets, recent_contacts=down)
    context = await executor.run(main_flow, FakeCall(dtmf="1", caller=CALLER))
    assert context.outcome == "queued" and [r.priority for r in tickets.requests] == ["normal"]
