"""The ACD: contacts wait in queues, the router offers each to one agent (or, ring-all, to every eligible
agent at once), offers time out, contacts overflow after the queue's max wait (a chat that overflows to a
callback or a message is told so on its channel; callbacks wait in ``pending_callbacks`` for an agent).

Every web node runs the same loop (``start``): expire offers, end timed wrap-ups, overflow, then route the
waiting contacts. Nodes never coordinate in memory; each step is a guarded update
(``core.db.update_returning``) in MongoDB, so two nodes routing at once cannot offer one contact to two
agents, nor one agent two contacts:

1. contact ``waiting → routing`` (tagged with this attempt's token) — one node routes a contact at a time;
2. agent ``offer: None → contact`` under the eligibility guard — an agent holds at most one offer;
3. contact ``routing(token) → offered`` — then the screen-pop goes to the agent's socket room.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from agent_desktop.agents import AgentService
from agent_desktop.chat import REPLY_KIND
from agent_desktop.models import (
    LIVE_CONTACT_STATUSES,
    PRIORITY_RANK,
    Agent,
    Contact,
    ContactKind,
    ContactStatus,
    NewContact,
    Position,
    Presence,
    QueueConfig,
    ScreenPop,
    Strategy,
    WrapUp,
)
from agent_desktop.routing import (
    claim_filter,
    eligible,
    match_score,
    ordering,
    preferred_beyond,
    required_skills,
    with_preferences,
    working,
)
from agent_desktop.screenpop import PopParts, ScreenPopBuilder
from agent_desktop.store import AcdStore, agent_from_doc, contact_oid
from core.aio import stop_tasks
from core.auth import Role, User
from core.db import utcnow
from core.errors import Conflict, Forbidden, NotFound
from core.log import get_logger
from ivr_flows import CallbackRequest, QueueRequest
from ivr_flows.models import QueueOutcome, QueuePosition
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, NewEvent, Omnichannel

log = get_logger(__name__)

ROUTING_LEASE = dt.timedelta(seconds=5)  # a node that died mid-routing gives the contact back after this
DEFAULT_HANDLE_SECONDS = 180.0
# What a chat customer is told when their chat overflows to a callback or a message (no agent now).
OVERFLOW_NOTICES = {
    "callback": "抱歉，客服暂时都在忙。我们已记下您的请求，稍后会联系您。"
    "Sorry, all our agents are busy. We have noted your request and will get back to you soon.",
    "voicemail": "抱歉，客服暂时都在忙。请在这里留言，我们会尽快回复。"
    "Sorry, all our agents are busy. Leave us a message here and we will reply as soon as we can.",
}
NOTICE_ACTOR = Actor(type="system", name="汇流 Huiliu")


@dataclass(frozen=True)
class _Offer:
    contact: Contact
    agents: list[str]
    decided_at: float
    parts: asyncio.Task[PopParts]  # the pop's customer side, read while the agent was being picked


class DesktopNotifier(Protocol):
    """Where offers and state changes go: the Socket.IO rooms (``socket.py``) or a recording fake."""

    async def offer(self, agent_id: str, pop: ScreenPop) -> None: ...

    async def offer_withdrawn(self, agent_id: str, contact_id: str, reason: str) -> None: ...

    async def agent_changed(self, agent: Agent) -> None: ...

    async def contact_changed(self, contact: Contact) -> None: ...


class RecordingNotifier:
    """A working notifier in memory, for unit tests and benchmarks without sockets."""

    def __init__(self) -> None:
        self.offers: list[tuple[str, ScreenPop]] = []
        self.withdrawn: list[tuple[str, str, str]] = []
        self.agents: list[Agent] = []
        self.contacts: list[Contact] = []

    async def offer(self, agent_id: str, pop: ScreenPop) -> None:
        self.offers.append((agent_id, pop))

    async def offer_withdrawn(self, agent_id: str, contact_id: str, reason: str) -> None:
        self.withdrawn.append((agent_id, contact_id, reason))

    async def agent_changed(self, agent: Agent) -> None:
        self.agents.append(agent)

    async def contact_changed(self, contact: Contact) -> None:
        self.contacts.append(contact)


class Acd:
    def __init__(
        self,
        store: AcdStore,
        agents: AgentService,
        screenpop: ScreenPopBuilder,
        notifier: DesktopNotifier,
        omni: Omnichannel,
        *,
        tick_seconds: float = 0.25,
    ) -> None:
        self.store = store
        self.agents = agents
        self.screenpop = screenpop
        self.notifier = notifier
        self.omni = omni
        self.tick_seconds = tick_seconds
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False
        agents.on_offer_dropped(self._offer_dropped)

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._stopping = False
        self._loop = asyncio.create_task(self._run(), name="acd-router")

    async def stop(self) -> None:
        # The flag, not only the cancel: on Python 3.11 a cancel that lands as asyncio.timeout expires can
        # surface as TimeoutError, be suppressed below, and leave the loop running.
        self._stopping = True
        self._wake.set()
        await stop_tasks(self._loop)
        self._loop = None

    def wake(self) -> None:
        """Route soon (a contact arrived, an agent became free) instead of at the next tick."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_seconds):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.tick()
            except Exception as exc:  # a MongoDB hiccup must not stop routing for good
                log.warning("acd.tick_failed", error=repr(exc))

    async def tick(self) -> None:
        """One pass: expire offers, end wrap-ups, overflow and release stale routing, then route."""
        await self.expire_offers()
        await self.agents.end_wrap_ups()
        await self.overflow()
        await self.route_waiting()

    # ------------------------------------------------------------------------------------- contacts

    async def add(self, new: NewContact, queue: QueueConfig | None = None) -> Contact:
        """Queue a contact (idempotent per ``external_ref``); routing starts at once. ``queue``: its
        configuration when the caller has just read it."""
        queue = queue if queue is not None and queue.id == new.queue else await self.store.queue(new.queue)
        contact = await self.store.add_contact(new, with_preferences(dict(queue.skills), new.skills))
        await self.notifier.contact_changed(contact)
        self.wake()
        return contact

    async def withdraw(self, contact_id: str, reason: str) -> Contact | None:
        """Take a contact that is not yet connected out of its queue (caller hung up, overflow)."""
        contact = await self.store.update_contact(
            {
                "_id": contact_oid(contact_id),
                "status": {"$in": [status.value for status in LIVE_CONTACT_STATUSES]},
            },
            {"$set": {"status": ContactStatus.withdrawn.value, "ended_at": utcnow(), "withdrawn": reason}},
        )
        if contact is None:
            return None
        for agent_id in contact.offered_to:
            await self._release_agent(agent_id, contact.id, reason)
        await self.notifier.contact_changed(contact)
        return contact

    async def route_waiting(self) -> int:
        """Offer waiting contacts, the most urgent first; returns how many were offered."""
        waiting = await self.store.contacts_with_status(ContactStatus.waiting)
        if not waiting:
            return 0
        queues = {queue.id: queue for queue in await self.store.all_queues()}
        waiting = [contact for contact in waiting if contact.queue in queues]
        waiting.sort(
            key=lambda c: (-queues[c.queue].priority, -PRIORITY_RANK[c.priority], c.queue_entered_at)
        )
        pools: dict[str, list[str]] = {}
        deliveries: list[asyncio.Task[None]] = []
        for contact in waiting:
            offer = await self.route(contact, queues[contact.queue], pools)
            if offer is not None:
                # The screen-pop is built and sent while the next contact is being routed.
                deliveries.append(asyncio.create_task(self._deliver(offer), name=f"offer-{offer.contact.id}"))
        await asyncio.gather(*deliveries)
        return len(deliveries)

    async def route(
        self, contact: Contact, queue: QueueConfig, pools: dict[str, list[str]] | None = None
    ) -> _Offer | None:
        """Reserve an agent (ring-all: every eligible agent) for ``contact``; None when another node has it
        or no agent is free. The caller delivers the offer.

        ``pools`` caches, for one routing pass, the ordered eligible agents per queue, contact kind and
        skills: one query per pass instead of one per contact (SecantusDB sorts in Python, 1,000 agents take
        ~50 ms). A stale entry only costs a failed claim, because the claim re-checks the guard."""
        token = uuid.uuid4().hex
        oid = contact_oid(contact.id)
        claimed = await self.store.update_contact(
            {"_id": oid, "status": ContactStatus.waiting.value},
            {
                "$set": {
                    "status": ContactStatus.routing.value,
                    "routing_by": token,
                    "routing_until": utcnow() + ROUTING_LEASE,
                }
            },
        )
        if claimed is None:
            return None
        offered: list[str] = []
        pools = {} if pools is None else pools
        parts: asyncio.Task[PopParts] | None = None
        try:
            skills = required_skills(queue, claimed)
            if claimed.declined_by and await self._declines_lapsed(claimed, queue, skills):
                claimed = (
                    await self.store.update_contact(
                        {"_id": oid, "status": ContactStatus.routing.value, "routing_by": token},
                        {"$set": {"declined_by": []}, "$unset": {"declined_at": ""}},
                    )
                    or claimed
                )
            preferred = preferred_beyond(claimed, skills)
            if preferred and await self._waits_for_preferred(
                claimed, queue, with_preferences(skills, preferred)
            ):
                skills, preferred = with_preferences(skills, preferred), {}
            guard = eligible(claimed, skills)
            pool = await self._pool(claimed, queue, guard, skills, preferred, pools)
            allowed = [agent_id for agent_id in pool if agent_id not in claimed.declined_by]
            if allowed:  # someone is likely free: read the customer's side of the pop meanwhile
                parts = asyncio.create_task(self.screenpop.gather(claimed), name=f"pop-{claimed.id}")
            for agent_id in await self._candidates(claimed, queue, allowed):
                if agent_id in pool:  # claimed now or gone: either way not free for this pass
                    pool.remove(agent_id)
                agent = await self.store.update_agent(
                    claim_filter(agent_id, guard),
                    {"$set": {"offer": claimed.id, "offer_at": utcnow()}},
                )
                if agent is not None:
                    offered.append(agent_id)
                    if queue.strategy is not Strategy.ring_all:
                        break
            if not offered:
                return None
            decided_at = time.time()
            expires = utcnow() + dt.timedelta(seconds=queue.offer_timeout_seconds)
            contact_now = await self.store.update_contact(
                {"_id": oid, "status": ContactStatus.routing.value, "routing_by": token},
                {
                    "$set": {
                        "status": ContactStatus.offered.value,
                        "offered_to": offered,
                        "offer_expires_at": expires,
                    },
                    "$unset": {"routing_by": "", "routing_until": ""},
                },
            )
            if contact_now is None:  # our lease ran out and the sweep gave it back: undo our claims
                for agent_id in offered:
                    await self._release_agent(agent_id, claimed.id, "lease_lost", notify=False)
                offered = []
                return None
        finally:
            if not offered:
                if parts is not None:
                    parts.cancel()
                await self.store.update_contact(
                    {"_id": oid, "status": ContactStatus.routing.value, "routing_by": token},
                    {
                        "$set": {"status": ContactStatus.waiting.value},
                        "$unset": {"routing_by": "", "routing_until": ""},
                    },
                )
        assert parts is not None  # offered implies allowed was not empty
        return _Offer(contact_now, offered, decided_at, parts)

    async def _deliver(self, offer: _Offer) -> None:
        pop = self.screenpop.assemble(await offer.parts, offer.contact, offer.decided_at)
        await asyncio.gather(*(self.notifier.offer(agent_id, pop) for agent_id in offer.agents))
        await self.notifier.contact_changed(offer.contact)

    async def _waits_for_preferred(
        self, contact: Contact, queue: QueueConfig, wanted: dict[str, int]
    ) -> bool:
        """Whether ``contact`` is still to be offered only to agents with all its preferred skills: within
        the queue's ``preference_seconds``, and only while someone at work has them."""
        waited = (utcnow() - contact.queue_entered_at).total_seconds()
        if waited >= queue.preference_seconds:
            return False
        return await self.store.any_agent(working(wanted))

    async def _declines_lapsed(self, contact: Contact, queue: QueueConfig, skills: dict[str, int]) -> bool:
        """Whether ``contact`` is to be offered again to the agents who declined it: everyone at work who
        could take it declined, and the last decline is a cool-down (the queue's offer timeout) old. Not
        never: a contact nobody else can take would otherwise wait until it overflows, or for ever."""
        declined_at = contact.declined_at or contact.queue_entered_at
        if (utcnow() - declined_at).total_seconds() < queue.offer_timeout_seconds:
            return False
        return not await self.store.any_agent({**working(skills), "_id": {"$nin": contact.declined_by}})

    async def _pool(
        self,
        contact: Contact,
        queue: QueueConfig,
        guard: dict[str, object],
        skills: dict[str, int],
        preferred: dict[str, int],
        pools: dict[str, list[str]],
    ) -> list[str]:
        key = f"{queue.id}|{contact.kind.value}|{sorted(skills.items())}|{sorted(preferred.items())}"
        if key not in pools:
            shared = {field: value for field, value in guard.items() if field != "_id"}
            docs = await self.store.candidates(shared, ordering(queue.strategy, skills))
            if preferred:  # stable: the strategy's order among agents who match as well
                docs.sort(key=lambda doc: -match_score(doc.get("skills", {}), preferred))
            pools[key] = [str(doc["_id"]) for doc in docs]
        return pools[key]

    async def _candidates(self, contact: Contact, queue: QueueConfig, ids: list[str]) -> list[str]:
        if queue.strategy is not Strategy.sticky:
            return ids
        since = utcnow() - dt.timedelta(hours=queue.sticky_lookback_hours)
        last = await self.store.last_served_by(contact.customer_id, since)
        if last is None:
            return ids
        waited = (utcnow() - contact.queue_entered_at).total_seconds()
        if waited < queue.sticky_seconds:
            last_doc = await self.store.agents_where({"_id": last})
            if last_doc and last_doc[0]["presence"] != Presence.offline.value:
                return [last] if last in ids else []  # keep it for them until sticky_seconds pass
        return [last, *(agent_id for agent_id in ids if agent_id != last)] if last in ids else ids

    # --------------------------------------------------------------------------------------- offers

    async def accept(self, user: User, contact_id: str) -> Contact:
        oid = contact_oid(contact_id)
        before = await self.store.contact(contact_id)
        contact = await self.store.update_contact(
            {"_id": oid, "status": ContactStatus.offered.value, "offered_to": user.id},
            {
                "$set": {
                    "status": ContactStatus.connected.value,
                    "agent_id": user.id,
                    "connected_at": utcnow(),
                    "offered_to": [user.id],
                }
            },
        )
        if contact is None:
            raise Conflict("this offer is no longer yours", code="offer_gone")
        for other in before.offered_to:
            if other != user.id:
                await self._release_agent(other, contact.id, "taken")
        agent_doc = await self.store.agent_doc(user.id)
        if contact.kind is ContactKind.call:
            update: dict[str, object] = {
                "$set": {
                    "offer": None,
                    "call": contact.id,
                    "chats_blocked": agent_doc.get("call_blocks_chats", True),
                }
            }
        else:
            update = {"$set": {"offer": None}, "$push": {"chats": contact.id}, "$inc": {"chat_slots": -1}}
        doc = await self.store.update_agent({"_id": user.id, "offer": contact.id}, update)
        if doc is not None:
            await self.notifier.agent_changed(agent_from_doc(doc))
        await self._timeline(contact, "contact.connected", user, {"queue": contact.queue})
        await self.notifier.contact_changed(contact)
        return contact

    async def decline(self, user: User, contact_id: str) -> Contact:
        oid = contact_oid(contact_id)
        contact = await self.store.update_contact(
            {"_id": oid, "status": ContactStatus.offered.value, "offered_to": user.id},
            {
                "$pull": {"offered_to": user.id},
                "$addToSet": {"declined_by": user.id},
                "$set": {"declined_at": utcnow()},
            },
        )
        if contact is None:
            raise Conflict("this offer is no longer yours", code="offer_gone")
        await self._release_agent(user.id, contact.id, "declined", notify=False)
        if not contact.offered_to:
            contact = await self._back_to_waiting(contact)
        self.wake()
        return contact

    async def _offer_dropped(self, agent_id: str, contact_id: str, reason: str) -> None:
        """The agent went offline or on a break with this offer ringing (their own offer is released):
        the contact goes to the next agent now; they did not decline it."""
        contact = await self.store.update_contact(
            {"_id": contact_oid(contact_id), "status": ContactStatus.offered.value, "offered_to": agent_id},
            {"$pull": {"offered_to": agent_id}},
        )
        if contact is not None and not contact.offered_to:
            await self._back_to_waiting(contact)
        await self.notifier.offer_withdrawn(agent_id, contact_id, reason)
        self.wake()

    async def _back_to_waiting(self, contact: Contact) -> Contact:
        """An offered contact nobody is offered any more waits to be routed again."""
        back = await self.store.update_contact(
            {
                "_id": contact_oid(contact.id),
                "status": ContactStatus.offered.value,
                "offered_to": {"$size": 0},
            },
            {"$set": {"status": ContactStatus.waiting.value, "offer_expires_at": None}},
        )
        return back or contact

    async def expire_offers(self) -> None:
        """Offers nobody answered: the agents go not-ready, the contact goes back to be routed again."""
        now = utcnow()
        for contact in await self.store.contacts_with_status(ContactStatus.offered):
            if contact.offer_expires_at is None or contact.offer_expires_at > now:
                continue
            back = await self.store.update_contact(
                {
                    "_id": contact_oid(contact.id),
                    "status": ContactStatus.offered.value,
                    "offer_expires_at": contact.offer_expires_at,
                },
                {"$set": {"status": ContactStatus.waiting.value, "offered_to": [], "offer_expires_at": None}},
            )
            if back is None:
                continue
            for agent_id in contact.offered_to:
                await self.agents.not_ready(agent_id, contact.id)
                await self.notifier.offer_withdrawn(agent_id, contact.id, "timeout")
            self.wake()

    async def _release_agent(
        self, agent_id: str, contact_id: str, reason: str, *, notify: bool = True
    ) -> None:
        doc = await self.store.update_agent({"_id": agent_id, "offer": contact_id}, {"$set": {"offer": None}})
        if notify and doc is not None:
            await self.notifier.offer_withdrawn(agent_id, contact_id, reason)

    # --------------------------------------------------------------------------------- after connect

    async def end(self, user: User, contact_id: str) -> Contact:
        """The call hung up or the chat closed: the agent enters timed wrap-up (calls) or frees a slot."""
        contact = await self.store.contact(contact_id)
        if contact.agent_id != user.id and not user.allows(Role.supervisor):
            raise Forbidden("this contact is not yours", code="not_your_contact")
        ended = await self.store.update_contact(
            {"_id": contact_oid(contact_id), "status": ContactStatus.connected.value},
            {"$set": {"status": ContactStatus.ended.value, "ended_at": utcnow()}},
        )
        if ended is None:
            raise Conflict(f"contact is {contact.status.value}, not connected", code="not_connected")
        await self._free_agent(ended)
        await self.notifier.contact_changed(ended)
        return ended

    async def call_ended(self, call_id: str, cause: str) -> Contact | None:
        """The call ``call_id`` ended on the phone side (the caller hung up, the line dropped) while an
        agent had it: the contact ends and the agent goes to wrap-up, as if they had hung up. None when no
        agent had it connected (the agent hung up first, or it never reached one)."""
        ended = await self.store.update_contact(
            {
                "external_ref": call_id,
                "kind": ContactKind.call.value,
                "status": ContactStatus.connected.value,
            },
            {"$set": {"status": ContactStatus.ended.value, "ended_at": utcnow(), "end_cause": cause}},
        )
        if ended is None:
            return None
        await self._free_agent(ended)
        await self.notifier.contact_changed(ended)
        return ended

    async def _free_agent(self, contact: Contact) -> None:
        assert contact.agent_id is not None
        queue = await self.store.queue(contact.queue)
        now = utcnow()
        if contact.kind is ContactKind.call:
            sets: dict[str, object] = {"call": None, "chats_blocked": False}
            if queue.wrap_up_seconds > 0:
                sets |= {
                    "presence": Presence.wrap_up.value,
                    "since": now,
                    "wrap_up_until": now + dt.timedelta(seconds=queue.wrap_up_seconds),
                }
            else:
                sets["idle_since"] = now
            update: dict[str, object] = {"$set": sets}
            guard: dict[str, object] = {"_id": contact.agent_id, "call": contact.id}
        else:
            update = {"$pull": {"chats": contact.id}, "$inc": {"chat_slots": 1}, "$set": {"idle_since": now}}
            guard = {"_id": contact.agent_id, "chats": contact.id}
        doc = await self.store.update_agent(guard, update)
        if doc is not None:
            await self.notifier.agent_changed(agent_from_doc(doc))
        self.wake()

    async def wrap_up(self, user: User, contact_id: str, wrap: WrapUp) -> Contact:
        """Record wrap-up codes (ending the contact if still connected); the agent is available again."""
        contact = await self.store.contact(contact_id)
        if contact.agent_id != user.id:
            raise Forbidden("this contact is not yours", code="not_your_contact")
        if contact.status is ContactStatus.connected:
            contact = await self.end(user, contact_id)
        updated = await self.store.update_contact(
            {"_id": contact_oid(contact_id), "status": ContactStatus.ended.value},
            {"$set": {"wrap_up_codes": wrap.codes, "wrap_up_note": wrap.note}},
        )
        if updated is None:
            raise Conflict(f"contact is {contact.status.value}", code="not_ended")
        await self._timeline(updated, "contact.wrapped_up", user, {"codes": wrap.codes, "note": wrap.note})
        now = utcnow()
        doc = await self.store.update_agent(
            {"_id": user.id, "presence": Presence.wrap_up.value},
            {
                "$set": {
                    "presence": Presence.available.value,
                    "since": now,
                    "idle_since": now,
                    "wrap_up_until": None,
                }
            },
        )
        if doc is not None:
            await self.notifier.agent_changed(agent_from_doc(doc))
        self.wake()
        return updated

    async def _timeline(self, contact: Contact, kind: str, user: User, body: dict[str, object]) -> None:
        channel = Channel.voice
        if contact.kind is not ContactKind.call:
            # A chat's events belong to its own channel (web chat, WeChat, SMS…), named by whoever queued it.
            named = str(contact.context.get("channel"))
            channel = Channel(named) if named in {known.value for known in Channel} else Channel.webchat
        await self.omni.timeline.append(
            contact.customer_id,
            NewEvent(
                kind=kind,
                channel=channel,
                conversation_id=contact.conversation_id,
                body={"contact_id": contact.id, **body},
                idempotency_key=f"acd:{contact.id}:{kind}",
            ),
            Actor(type="agent", id=user.id, name=user.display_name),
        )

    # ------------------------------------------------------------------------------------- overflow

    async def overflow(self) -> None:
        """Contacts past their queue's max wait move on; stale routing leases are given back."""
        now = utcnow()
        queues = {queue.id: queue for queue in await self.store.all_queues()}
        for contact in await self.store.contacts_with_status(ContactStatus.waiting, ContactStatus.routing):
            oid = contact_oid(contact.id)
            if contact.status is ContactStatus.routing:
                await self.store.update_contact(
                    {"_id": oid, "status": ContactStatus.routing.value, "routing_until": {"$lt": now}},
                    {"$set": {"status": ContactStatus.waiting.value}, "$unset": {"routing_by": ""}},
                )
                continue
            queue = queues.get(contact.queue)
            if queue is None or queue.overflow is None:
                continue
            if (now - contact.queue_entered_at).total_seconds() < queue.max_wait_seconds:
                continue
            guard = {"_id": oid, "status": ContactStatus.waiting.value, "queue": contact.queue}
            target = queues.get(queue.overflow.queue or "")
            if queue.overflow.to == "queue" and target is not None:
                moved = await self.store.update_contact(
                    guard,
                    {
                        # the agents who declined it here may be just right for the next queue
                        "$set": {
                            "queue": target.id,
                            "queue_entered_at": now,
                            "skills": dict(target.skills),
                            "declined_by": [],
                        },
                        "$unset": {"declined_at": ""},
                        "$push": {"overflowed_from": contact.queue},
                    },
                )
            else:
                moved = await self.store.update_contact(
                    guard,
                    {
                        "$set": {
                            "status": ContactStatus.overflowed.value,
                            "overflow": queue.overflow.to,
                            "ended_at": now,
                        }
                    },
                )
            if moved is not None:
                log.info("acd.overflowed", contact=contact.id, to=queue.overflow.to, queue=moved.queue)
                if moved.status is ContactStatus.overflowed and moved.kind is ContactKind.chat:
                    moved = await self._tell_overflowed_chat(moved)
                await self.notifier.contact_changed(moved)

    async def _tell_overflowed_chat(self, contact: Contact) -> Contact:
        """Tell a chat's customer, on their channel, that no agent comes now: a ``message.sent`` on the
        conversation, the way an agent's reply reaches them (web chat from the bus, WeChat, SMS and email
        through the channels); the contact keeps the message's id (``overflow_notice``)."""
        text = OVERFLOW_NOTICES.get(contact.overflow or "")
        if text is None or contact.conversation_id is None:
            return contact
        conversation = await self.omni.conversations.get(contact.conversation_id)
        event, _ = await self.omni.timeline.append(
            contact.customer_id,
            NewEvent(
                kind=REPLY_KIND,
                channel=conversation.channel,
                conversation_id=contact.conversation_id,
                body={"text": text, "contact_id": contact.id, "notice": f"overflow.{contact.overflow}"},
                idempotency_key=f"acd:{contact.id}:overflow_notice",
            ),
            NOTICE_ACTOR,
        )
        noted = await self.store.update_contact(
            {"_id": contact_oid(contact.id)}, {"$set": {"overflow_notice": event.id}}
        )
        return noted or contact

    # ------------------------------------------------------------------------------------ callbacks

    async def pending_callbacks(self, user: User) -> list[Contact]:
        """Contacts waiting for a callback nobody took yet: in the queues the agent serves (supervisors:
        all), oldest first."""
        queues = None
        if not user.allows(Role.supervisor):
            await self.agents.ensure(user)
            queues = await self.queues_of(user.id)
        return await self.store.pending_callbacks(queues)

    async def take_callback(self, user: User, contact_id: str) -> Contact:
        """One agent (of the contact's queue) takes a pending callback; anyone else gets ``Conflict``."""
        await self.check_may_read(user, await self.store.contact(contact_id))
        taken = await self.store.update_contact(
            {
                "_id": contact_oid(contact_id),
                "status": ContactStatus.overflowed.value,
                "overflow": "callback",
                "callback_by": None,
            },
            {"$set": {"callback_by": user.id, "callback_taken_at": utcnow()}},
        )
        if taken is None:
            raise Conflict("this callback is taken or no longer pending", code="callback_taken")
        await self.notifier.contact_changed(taken)
        return taken

    async def check_may_read(self, user: User, contact: Contact) -> None:
        """Agents see the contacts of the queues they serve (and their own); supervisors see all."""
        if user.allows(Role.supervisor) or contact.agent_id == user.id:
            return
        await self.agents.ensure(user)
        if contact.queue not in await self.queues_of(user.id):
            raise Forbidden("this contact is in a queue you do not serve", code="not_your_queue")

    # ----------------------------------------------------------------------------------- read models

    async def position(self, contact_id: str) -> Position:
        """Place in line (1 = next) and the expected wait from recent handle times and staffed agents."""
        contact = await self.store.contact(contact_id)
        if contact.status not in LIVE_CONTACT_STATUSES:
            return Position(
                contact_id=contact.id,
                queue=contact.queue,
                status=contact.status,
                position=None,
                expected_wait_seconds=None,
            )
        rank = PRIORITY_RANK[contact.priority]
        ahead = sum(
            1
            for other in await self.store.contacts_with_status(ContactStatus.waiting, ContactStatus.routing)
            if other.queue == contact.queue
            and other.id != contact.id
            and (PRIORITY_RANK[other.priority], -other.queue_entered_at.timestamp())
            > (rank, -contact.queue_entered_at.timestamp())
        )
        queue = await self.store.queue(contact.queue)
        staffed = len(await self.store.agents_where(_staffed_filter(queue)))
        handled = await self.store.recent_handle_seconds(queue.id)
        handle = sum(handled) / len(handled) if handled else DEFAULT_HANDLE_SECONDS
        position = ahead + 1
        expected = (
            0.0 if contact.status is ContactStatus.offered else math.ceil(position / max(staffed, 1)) * handle
        )
        return Position(
            contact_id=contact.id,
            queue=contact.queue,
            status=contact.status,
            position=position,
            expected_wait_seconds=expected,
        )

    async def queues_of(self, user_id: str) -> list[str]:
        """The queues an agent's skills qualify them for (their Socket.IO rooms)."""
        doc = await self.store.agent_doc(user_id)
        skills: dict[str, int] = doc.get("skills", {})
        return [
            queue.id
            for queue in await self.store.all_queues()
            if all(skills.get(skill, 0) >= level for skill, level in queue.skills.items())
        ]


def _staffed_filter(queue: QueueConfig) -> dict[str, object]:
    query: dict[str, object] = {"presence": {"$ne": Presence.offline.value}}
    for skill, level in queue.skills.items():
        query[f"skills.{skill}"] = {"$gte": level}
    return query


def call_preferences(language: str, vip: bool) -> dict[str, int]:
    """What a queued call prefers in its agent: the language the caller chose in the IVR, and a VIP agent
    for a VIP customer (the same skill names the bot's chat handoffs use)."""
    preferred = {f"lang_{language}": 1} if language in ("zh", "en") else {}
    if vip:
        preferred["vip"] = 1
    return preferred


class AcdQueueGateway:
    """``ivr_flows.QueueGateway`` on the ACD: the IVR queues the call with its context for the screen-pop.

    The contact and queue a call was queued with are kept (per call, until it leaves the queue) so waiting
    and withdrawing need not look them up again; a call queued by another process is looked up."""

    KEPT_CALLS = 10_000

    def __init__(self, acd: Acd, omni: Omnichannel, *, poll_seconds: float = 0.1) -> None:
        self.acd = acd
        self.omni = omni
        self.poll_seconds = poll_seconds
        self._queued: dict[str, tuple[str, QueueConfig]] = {}  # call id -> (contact id, its queue)

    async def enqueue(self, request: QueueRequest) -> None:
        if request.customer_id is not None and request.conversation_id is not None:
            # the call's journal found the customer and opened the conversation as the call started
            customer_id, conversation_id, vip = request.customer_id, request.conversation_id, request.vip
        else:
            customer, _ = await self.omni.customers.resolve(
                [Identity(kind=IdentityKind.phone, value=request.caller)]
            )
            conversation, _ = await self.omni.conversations.open(
                customer.id, NewConversation(channel=Channel.voice, external_ref=request.call_id)
            )
            customer_id, conversation_id, vip = customer.id, conversation.id, customer.vip
        queue = await self.acd.store.queue(request.queue)
        contact = await self.acd.add(
            NewContact(
                queue=request.queue,
                kind=ContactKind.call,
                customer_id=customer_id,
                conversation_id=conversation_id,
                external_ref=request.call_id,
                priority=request.priority,
                skills={skill: 1 for skill in request.skills},
                preferred_skills=call_preferences(request.context.language, vip),
                context=request.context.model_dump(mode="json"),
            ),
            queue,
        )
        if len(self._queued) >= self.KEPT_CALLS:  # calls that never left through wait/withdraw
            self._queued.pop(next(iter(self._queued)))
        self._queued[request.call_id] = (contact.id, queue)

    async def _queued_call(self, call_id: str) -> tuple[str, QueueConfig] | None:
        kept = self._queued.get(call_id)
        if kept is not None:
            return kept
        contact = await self.acd.store.contact_by_ref(call_id)
        if contact is None:
            return None
        return contact.id, await self.acd.store.queue(contact.queue)

    async def wait(self, call_id: str, max_wait: float) -> QueueOutcome:
        queued = await self._queued_call(call_id)
        if queued is None:
            return "unavailable"
        contact_id, queue = queued
        if not await self.acd.store.agents_where(_staffed_filter(queue)):
            return "unavailable"
        deadline = asyncio.get_running_loop().time() + max_wait
        while True:
            contact = await self.acd.store.contact(contact_id)
            if contact.status in (ContactStatus.connected, ContactStatus.ended):
                self._queued.pop(call_id, None)
                return "connected"
            if contact.status in (ContactStatus.overflowed, ContactStatus.withdrawn):
                return "timeout"
            if asyncio.get_running_loop().time() >= deadline:
                return "timeout"
            await asyncio.sleep(self.poll_seconds)

    async def withdraw(self, call_id: str, reason: str) -> None:
        queued = await self._queued_call(call_id)
        if queued is not None:
            await self.acd.withdraw(queued[0], reason)
        self._queued.pop(call_id, None)

    async def position(self, call_id: str) -> QueuePosition | None:
        queued = await self._queued_call(call_id)
        if queued is None:
            return None
        place = await self.acd.position(queued[0])
        if place.position is None or place.expected_wait_seconds is None:
            return None
        return QueuePosition(position=place.position, expected_wait_seconds=place.expected_wait_seconds)

    async def request_callback(self, request: CallbackRequest) -> None:
        """A callback marker: an overflowed contact of ``request.queue`` with ``overflow="callback"``."""
        contact = await self.acd.store.contact_by_ref(request.call_id)
        if contact is None:
            raise NotFound(f"call {request.call_id!r} was never queued", code="contact_not_found")
        await self.acd.store.update_contact(
            {"_id": contact_oid(contact.id)},
            {
                "$set": {
                    "status": ContactStatus.overflowed.value,
                    "overflow": "callback",
                    "callback_number": request.number,
                }
            },
        )
