"""Every call step as a fact: the ``calls`` document and the caller's timeline.

``CallLedger.journal`` gives each call a ``CallJournal``: an ordered, background writer. The call's facts
are queued as they happen (with the time they happened) and written one after another — ``call.started``
first, which finds or creates the caller's customer by number and opens the call's conversation — retried
until MongoDB takes them. So answering a call never waits for the database, a database outage never stalls
a caller, and the timeline still reads in the order things happened. Idempotency keys come from the SIP
Call-ID, so a retried write (or a second writer, like the node-lost sweeper) never doubles an event.

Facts come in bursts (a key press ends one IVR step and the next node's step at once; the queue step, its
outcome and the voicemail prompt follow each other): the writer waits ``LINGER_SECONDS`` after the first
fact of a burst and writes what has gathered as one insert of timeline events and one update of the call
document. A writer that fell behind (the database slow) batches the same way, so its backlog shrinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import PyMongoError

from core.db import as_utc, utcnow
from core.errors import HuiliuError, Invalid
from core.log import get_logger
from omnichannel import (
    Actor,
    Channel,
    Identity,
    IdentityKind,
    NewConversation,
    NewEvent,
    Omnichannel,
    normalize_phone,
)
from telephony.api import CallerRecord, Direction, HangupCause, Recording
from telephony.sip import ANONYMOUS_USERS, Dialog
from telephony.store import TelephonyStore

log = get_logger(__name__)

SYSTEM = Actor(type="system", name="telephony")
CALLER = Actor(type="customer")
IVR = Actor(type="bot", name="ivr")
RETRY_MAX_DELAY = 5.0
LINGER_SECONDS = 0.3


def call_ref(call_id: str) -> str:
    """The Call-ID as used in idempotency keys (hashed when too long for one)."""
    if len(call_id) <= 120 and call_id.isprintable():
        return call_id
    return "sha1-" + hashlib.sha1(call_id.encode(), usedforsecurity=False).hexdigest()


def caller_identity(user: str, host: str, call_id: str, default_region: str) -> Identity:
    """Phone numbers identify customers; a SIP user ``alice@pbx`` is kept as a CRM-style id so repeat
    calls land together; an anonymous caller gets a customer of their own, for an agent to merge."""
    try:
        return Identity(kind=IdentityKind.phone, value=normalize_phone(user, default_region))
    except Invalid:
        pass
    if user.lower() in ANONYMOUS_USERS or not (user + host).isprintable():
        return Identity(kind=IdentityKind.crm_id, value=f"anonymous-call:{call_ref(call_id)}")
    return Identity(kind=IdentityKind.crm_id, value=f"sip:{user}@{host}"[:256])


@dataclass
class CallFacts:
    call_id: str
    caller: str  # E.164 or SIP user
    caller_user: str
    caller_host: str
    called: str
    direction: Direction
    started_at: dt.datetime
    customer_id: str | None = None
    conversation_id: str | None = None
    answered_at: dt.datetime | None = None
    steps: int = field(default=0)
    vip: bool = False
    recorded: asyncio.Event = field(default_factory=asyncio.Event)  # customer and conversation known

    def caller_record(self) -> CallerRecord | None:
        if self.customer_id is None or self.conversation_id is None:
            return None
        return CallerRecord(self.customer_id, self.conversation_id, self.vip)


class CallLedger:
    def __init__(
        self,
        store: TelephonyStore,
        omni: Omnichannel,
        *,
        worker_id: str,
        default_region: str,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.store = store
        self.omni = omni
        self.worker_id = worker_id
        self.default_region = default_region
        self.clock = clock
        self.journals: set[CallJournal] = set()

    def journal(self, facts: CallFacts) -> CallJournal:
        journal = CallJournal(self, facts)
        self.journals.add(journal)
        journal.started()
        return journal

    async def flush(self, within: float) -> None:
        """Wait (bounded) until every journal wrote what it has queued."""
        pending = [journal.flush() for journal in list(self.journals)]
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending), within)

    # -- shared by journals and the sweeper

    async def ensure_customer(self, facts: CallFacts, *, on_call_document: bool = True) -> None:
        """The caller's customer and the call's conversation (found or created, idempotent per Call-ID) on
        ``facts`` — and on the call document unless the caller is about to write that itself."""
        if facts.customer_id is not None and facts.conversation_id is not None:
            facts.recorded.set()
            return
        identity = caller_identity(facts.caller_user, facts.caller_host, facts.call_id, self.default_region)
        customer, _ = await self.omni.customers.resolve([identity])
        conversation, _ = await self.omni.conversations.open(
            customer.id,
            NewConversation(
                channel=Channel.voice,
                subject=f"{facts.direction.value} call {facts.caller} → {facts.called}"[:256],
                external_ref=facts.call_id[:256],
            ),
            expect_new=True,
        )
        facts.customer_id, facts.conversation_id, facts.vip = customer.id, conversation.id, customer.vip
        facts.recorded.set()
        if on_call_document:
            await self.store.update_call(
                facts.call_id, {"customer_id": customer.id, "conversation_id": conversation.id}
            )

    async def append_many(self, facts: CallFacts, events: list[CallEvent]) -> None:
        """Several facts of one call on the caller's timeline, in one write."""
        await self.ensure_customer(facts)
        assert facts.customer_id is not None
        await self.omni.timeline.append_many(
            facts.customer_id,
            [
                (
                    NewEvent(
                        kind=event.kind,
                        channel=Channel.voice,
                        conversation_id=facts.conversation_id,
                        ts=event.at,
                        body={"call_id": facts.call_id, **event.body},
                        idempotency_key=f"call:{call_ref(facts.call_id)}:{event.key}",
                    ),
                    event.actor,
                )
                for event in events
            ],
        )

    async def write_started(self, facts: CallFacts, fields: dict[str, Any] | None = None) -> None:
        """The call document (with ``fields`` learnt since, e.g. the dialog), after the caller's customer
        and the call's conversation, so it is written once, with them."""
        await self.ensure_customer(facts, on_call_document=False)
        stored = await self.store.insert_call(
            {
                "_id": facts.call_id,
                "worker_id": self.worker_id,
                "status": "active",
                "direction": facts.direction.value,
                "caller": facts.caller,
                "caller_user": facts.caller_user,
                "caller_host": facts.caller_host,
                "called": facts.called,
                "started_at": facts.started_at,
                "customer_id": facts.customer_id,
                "conversation_id": facts.conversation_id,
            },
            fields or {},
        )
        # a call document written before (a retry, or by another writer) may name them already
        facts.customer_id = stored.get("customer_id") or facts.customer_id
        facts.conversation_id = stored.get("conversation_id") or facts.conversation_id
        if stored.get("customer_id") is None:
            await self.store.update_call(
                facts.call_id, {"customer_id": facts.customer_id, "conversation_id": facts.conversation_id}
            )

    @staticmethod
    def started_event(facts: CallFacts) -> CallEvent:
        body = {"caller": facts.caller, "called": facts.called, "direction": facts.direction.value}
        actor = CALLER if facts.direction is Direction.inbound else SYSTEM
        return CallEvent("call.started", "started", body, facts.started_at, actor)

    async def finish(self, facts: CallFacts, ended: CallEnded) -> None:
        await self.store.finish_call(
            facts.call_id,
            {
                "ended_at": ended.at,
                "cause": ended.cause,
                "sip_status": ended.status,
                "duration_seconds": ended.duration(facts),
            },
        )

    async def close_conversation(self, facts: CallFacts) -> None:
        if facts.conversation_id is not None:
            await self.omni.conversations.close(facts.conversation_id)

    async def add_recording(self, facts: CallFacts, recording: CallRecording) -> None:
        await self.ensure_customer(facts)
        await self.store.add_recording(
            {**recording.doc, "customer_id": facts.customer_id, "conversation_id": facts.conversation_id}
        )

    async def end_lost_call(self, doc: dict[str, Any], ended_at: dt.datetime) -> bool:
        """End a live call whose worker is gone (cause ``node_lost``); False if it had already ended."""
        facts = CallFacts(
            call_id=doc["_id"],
            caller=doc.get("caller", ""),
            caller_user=doc.get("caller_user", ""),
            caller_host=doc.get("caller_host", ""),
            called=doc.get("called", ""),
            direction=Direction(doc.get("direction", "inbound")),
            started_at=as_utc(doc["started_at"]),
            customer_id=doc.get("customer_id"),
            conversation_id=doc.get("conversation_id"),
        )
        answered_at = as_utc(doc["answered_at"]) if doc.get("answered_at") else None
        await self.ensure_customer(facts)
        assert facts.customer_id is not None
        # The last heartbeat can predate what the worker still wrote before it died: end the call after
        # the newest fact of its conversation, so the timeline reads in order.
        newest = await self.omni.timeline.page(
            facts.customer_id, limit=1, conversation_id=facts.conversation_id
        )
        floor = newest.events[0].ts if newest.events else answered_at or facts.started_at
        ended_at = max(ended_at, floor + dt.timedelta(milliseconds=1))
        talk = round((ended_at - answered_at).total_seconds(), 3) if answered_at else 0.0
        duration = round((ended_at - facts.started_at).total_seconds(), 3)
        finished = await self.store.finish_call(
            facts.call_id,
            {
                "ended_at": ended_at,
                "cause": HangupCause.node_lost.value,
                "sip_status": 0,
                "duration_seconds": duration,
            },
        )
        if finished is None:
            return False
        # the worker may have died before writing call.started: write it (a no-op when it did)
        ended = CallEnded(HangupCause.node_lost.value, 0, talk, ended_at)
        await self.append_many(
            facts, [self.started_event(facts), ended.event(facts, worker_id=doc.get("worker_id"))]
        )
        await self.close_conversation(facts)
        return True

    async def sweep(self) -> list[dict[str, Any]]:
        """End the live calls of every worker whose heartbeat expired (any node); returns those calls."""
        now = self.clock()
        live = [doc["_id"] for doc in await self.store.live_workers(now)]
        ended = []
        for doc in await self.store.orphaned_calls(live):
            worker = await self.store.worker(doc.get("worker_id", ""))
            last_seen = as_utc(worker["last_seen"]) if worker and worker.get("last_seen") else now
            if await self.end_lost_call(doc, min(last_seen, now)):
                ended.append(doc)
                log.warning("call.node_lost", call_id=doc["_id"], worker_id=doc.get("worker_id"))
        return ended


Job = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class CallEvent:
    """One fact for the caller's timeline; ``key`` makes it idempotent within the call."""

    kind: str
    key: str
    body: dict[str, Any]
    at: dt.datetime
    actor: Actor


@dataclass(frozen=True)
class CallStarted:
    """Write the call document (the first fact of every call)."""


@dataclass(frozen=True)
class CallFields:
    """Fields to set on the call document."""

    fields: dict[str, Any]


@dataclass(frozen=True)
class CallRecording:
    """A recording's metadata (the customer and conversation are added when it is written)."""

    doc: dict[str, Any]


@dataclass(frozen=True)
class CallEnded:
    cause: str
    status: int
    talk_seconds: float
    at: dt.datetime

    def duration(self, facts: CallFacts) -> float:
        return round(max((self.at - facts.started_at).total_seconds(), 0.0), 3)

    def event(self, facts: CallFacts, **more: Any) -> CallEvent:
        body = {
            "cause": self.cause,
            "sip_status": self.status,
            "duration_seconds": self.duration(facts),
            "talk_seconds": self.talk_seconds,
            **more,
        }
        return CallEvent("call.ended", "ended", body, self.at, SYSTEM)


Item = CallEvent | CallStarted | CallFields | CallRecording | CallEnded


class CallJournal:
    """One call's facts, written in order in the background (see the module docstring)."""

    def __init__(self, ledger: CallLedger, facts: CallFacts) -> None:
        self.ledger = ledger
        self.facts = facts
        self._items: asyncio.Queue[Item] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    def enqueue(self, item: Item) -> None:
        self._idle.clear()
        self._items.put_nowait(item)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all(), name=f"journal:{self.facts.call_id}")

    async def flush(self) -> None:
        await self._idle.wait()

    async def caller_record(self, within: float) -> CallerRecord | None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.facts.recorded.wait(), within)
        return self.facts.caller_record()

    async def _write_all(self) -> None:
        while True:
            batch = [await self._items.get()]
            await asyncio.sleep(LINGER_SECONDS)  # let the rest of the burst gather
            while not self._items.empty():
                batch.append(self._items.get_nowait())
            for write in self._writes(batch):
                await self._retried(write)
            if self._items.empty():
                self._idle.set()
                if self._closed:
                    self.ledger.journals.discard(self)
                    self._writer = None
                    return

    def _writes(self, batch: list[Item]) -> list[Job]:
        """What ``batch`` takes, as few writes as keep the facts' order: the call document (written, or
        its fields set), recordings, the call's end on its document, the timeline events in one insert,
        and the conversation closed last."""
        ledger, facts = self.ledger, self.facts
        fields: dict[str, Any] = {}
        events: list[CallEvent] = []
        writes: list[Job] = []
        started = False
        ended: CallEnded | None = None
        for item in batch:
            if isinstance(item, CallEvent):
                events.append(item)
            elif isinstance(item, CallFields):
                fields.update(item.fields)
            elif isinstance(item, CallStarted):
                started = True
            elif isinstance(item, CallRecording):
                writes.append(functools.partial(ledger.add_recording, facts, item))
            else:
                ended = item
        if started:
            writes.insert(0, functools.partial(ledger.write_started, facts, fields))
        elif fields:
            writes.insert(0, functools.partial(ledger.store.update_call, facts.call_id, fields))
        if ended is not None:
            writes.append(functools.partial(ledger.finish, facts, ended))
        if events:
            writes.append(functools.partial(ledger.append_many, facts, events))
        if ended is not None:
            writes.append(functools.partial(ledger.close_conversation, facts))
        return writes

    async def _retried(self, write: Job) -> None:
        delay = 0.2
        while True:
            try:
                await write()
                return
            except (PyMongoError, OSError) as exc:
                log.warning("call.journal_retry", call_id=self.facts.call_id, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
            except HuiliuError as exc:  # refused for good (a bug, not an outage): keep the rest
                log.error("call.journal_refused", call_id=self.facts.call_id, error=exc.detail)
                return
            except Exception:
                log.exception("call.journal_failed", call_id=self.facts.call_id)
                return

    # -- the call's facts (called on the event loop as they happen)

    def started(self) -> None:
        self.enqueue(CallStarted())
        self.enqueue(self.ledger.started_event(self.facts))

    def answered(self, at: dt.datetime) -> None:
        self.facts.answered_at = at
        self.enqueue(CallFields({"answered_at": at}))
        self.enqueue(CallEvent("call.answered", "answered", {}, at, SYSTEM))

    def dialog(self, dialog: Dialog) -> None:
        """Kept on the call document so a sweeper can hang the caller up if this worker dies."""
        self.enqueue(CallFields({"dialog": dataclasses.asdict(dialog)}))

    def transferred(self, target: str, attended: bool, at: dt.datetime) -> None:
        key = self._step_key("transferred")
        self.enqueue(CallEvent("call.transferred", key, {"target": target, "attended": attended}, at, SYSTEM))

    def ended(self, cause: str, status: int, talk_seconds: float, at: dt.datetime) -> None:
        self._closed = True
        ended = CallEnded(cause, status, talk_seconds, at)
        self.enqueue(ended)
        self.enqueue(ended.event(self.facts))

    def record(self, kind: str, body: dict[str, Any]) -> None:
        at = self.ledger.clock()
        key = self._step_key(kind)
        actor = IVR if kind.startswith("ivr.") else SYSTEM
        self.enqueue(CallEvent(kind, key, dict(body), at, actor))

    def recording(self, recording: Recording, started_at: dt.datetime) -> None:
        """The recording's metadata, and ``call.recorded`` on the timeline — ``call.recording_failed``
        (with the error) when the file holds less than was recorded, so an admin sees the loss."""
        at = self.ledger.clock()
        failed = recording.error is not None
        error = recording.error.value if recording.error is not None else None
        self.enqueue(
            CallRecording(
                {
                    "_id": recording.id,
                    "call_id": self.facts.call_id,
                    "path": str(recording.path),
                    "duration_seconds": recording.duration_seconds,
                    "recorded_seconds": recording.recorded_seconds,
                    "ended_by": recording.ended_by,
                    "status": "failed" if failed else "complete",
                    "error": error,
                    "error_detail": recording.detail or None,
                    "started_at": started_at,
                    "created_at": at,
                    "deleted_at": None,
                }
            )
        )
        body: dict[str, Any] = {
            "recording_id": recording.id,
            "duration_seconds": recording.duration_seconds,
            "ended_by": recording.ended_by,
        }
        if failed:
            body |= {
                "error": error,
                "detail": recording.detail,
                "recorded_seconds": recording.recorded_seconds,
            }
        kind = "call.recording_failed" if failed else "call.recorded"
        key = self._step_key("recording_failed" if failed else "recorded")
        self.enqueue(CallEvent(kind, key, body, at, SYSTEM))

    def _step_key(self, kind: str) -> str:
        self.facts.steps += 1
        return f"{self.facts.steps}:{kind}"
