"""Calls an agent dials from the desktop softphone (``POST /api/calls/dial``, ``telephony.http``).

From the moment the call rings out the agent is on it, exactly as if the ACD had connected a queued call to
them: a ``connected`` call contact in the ``outbound`` queue carries the call id (``external_ref``), so

* the ACD offers the agent nothing meanwhile (their ``call`` is set under the same guard an accept uses),
* their web softphone may attach to the call and they may hold, send DTMF, transfer and hang up
  (``agents_own_their_calls`` / ``call_access`` look for that contact),
* hang-up, timed wrap-up and wrap-up codes go through the ACD as for any call.

The customer is found (or created) by the number; the call's conversation is the one the telephony ledger
writes ``call.started`` … ``call.ended`` to (both open it by the call id, idempotently).
"""

from __future__ import annotations

from bson import ObjectId

from agent_desktop.models import (
    OUTBOUND_QUEUE_ID,
    Agent,
    ContactKind,
    ContactStatus,
    NewContact,
    Presence,
    QueueConfig,
)
from agent_desktop.service import Desktop
from agent_desktop.store import agent_from_doc, contact_from_doc
from core.auth import User
from core.db import utcnow
from core.errors import Conflict
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, NewEvent
from telephony.http import DialedCall, PlaceCall

OUTBOUND_QUEUE = QueueConfig(id=OUTBOUND_QUEUE_ID, name="外呼 Outbound calls")
# presences from which an agent may call out: not offline (signed out of the ACD)
DIALING_PRESENCES = [Presence.available.value, Presence.break_.value, Presence.wrap_up.value]


class OutboundCalls:
    def __init__(self, desktop: Desktop) -> None:
        self.desktop = desktop

    async def dial(self, user: User, number: str, place: PlaceCall) -> DialedCall:
        """Put ``user`` on a new call to ``number`` (E.164), placed by ``place``. ``Conflict`` when the agent
        is offline, on a call or has an offer ringing; nothing is dialed then."""
        store = self.desktop.store
        await self._queue()
        agent = await self.desktop.agents.ensure(user)
        contact_id = ObjectId()
        claimed = await store.update_agent(
            {"_id": user.id, "call": None, "offer": None, "presence": {"$in": DIALING_PRESENCES}},
            {"$set": {"call": str(contact_id), "chats_blocked": agent.call_blocks_chats}},
        )
        if claimed is None:
            raise _busy(await self.desktop.agents.ensure(user))
        await self._agent_changed(agent_from_doc(claimed))
        try:
            call_id = await place(number)
        except BaseException:
            released = await store.update_agent(
                {"_id": user.id, "call": str(contact_id)}, {"$set": {"call": None, "chats_blocked": False}}
            )
            if released is not None:
                await self._agent_changed(agent_from_doc(released))
            raise
        omni = self.desktop.acd.omni
        customer, _ = await omni.customers.resolve([Identity(kind=IdentityKind.phone, value=number)])
        conversation, _ = await omni.conversations.open(
            customer.id,
            NewConversation(channel=Channel.voice, subject=f"outbound call → {number}", external_ref=call_id),
        )
        now = utcnow()
        new = NewContact(
            queue=OUTBOUND_QUEUE.id,
            kind=ContactKind.call,
            customer_id=customer.id,
            conversation_id=conversation.id,
            external_ref=call_id,
        )
        doc = {
            **new.model_dump(mode="json"),
            "_id": contact_id,
            "status": ContactStatus.connected.value,
            "agent_id": user.id,
            "offered_to": [user.id],
            "declined_by": [],
            "enqueued_at": now,
            "queue_entered_at": now,
            "connected_at": now,
            "updated_at": now,
        }
        await store.contacts.insert_one(doc)
        contact = contact_from_doc(doc)
        await omni.timeline.append(
            customer.id,
            NewEvent(
                kind="contact.connected",
                channel=Channel.voice,
                conversation_id=conversation.id,
                body={"contact_id": contact.id, "queue": OUTBOUND_QUEUE.id, "direction": "outbound"},
                idempotency_key=f"acd:{contact.id}:contact.connected",
            ),
            Actor(type="agent", id=user.id, name=user.display_name),
        )
        await self.desktop.acd.notifier.contact_changed(contact)
        # a number that fails at once (unknown, busy) may have ended the call before the contact existed,
        # so ``call.ended`` found no contact to end: end it now, as that event would have
        ended = await omni.timeline.page(
            customer.id, limit=1, kinds=["call.ended"], conversation_id=conversation.id
        )
        if ended.events:
            await self.desktop.acd.call_ended(call_id, str(ended.events[0].body.get("cause") or "failed"))
        return DialedCall(
            call_id=call_id,
            number=number,
            customer_id=customer.id,
            conversation_id=conversation.id,
            contact_id=contact.id,
        )

    async def _queue(self) -> None:
        """The ``outbound`` queue exists (its wrap-up time applies after the call); created on first use."""
        if not await self.desktop.store.queues.find_one({"_id": OUTBOUND_QUEUE.id}, {"_id": 1}):
            try:
                await self.desktop.store.create_queue(OUTBOUND_QUEUE)
            except Conflict:
                pass  # another web node created it at the same moment

    async def _agent_changed(self, agent: Agent) -> None:
        await self.desktop.acd.notifier.agent_changed(agent)


def _busy(agent: Agent) -> Conflict:
    if agent.presence is Presence.offline:
        return Conflict("go available (or on break) before calling out", code="agent_offline")
    if agent.offer is not None:
        return Conflict("answer or decline the offer ringing on your desktop first", code="offer_pending")
    return Conflict("finish your current call before calling out", code="already_on_call")
