"""Every call step as a fact: the ``calls`` document and the caller's timeline.

``CallLedger.journal`` gives each call a ``CallJournal``: an ordered, background writer. The call's facts
are queued as they happen (with the time they happened) and written one after another — ``call.started``
first, which finds or creates the caller's customer by number and opens the call's conversation — retried
until MongoDB takes them. So answering a call never waits for the database, a database outage never stalls
a caller, and the timeline still reads in the order things happened. Idempotency keys come from the SIP
Call-ID, so a retried write (or a second writer, like the node-lost sweeper) never doubles an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
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
from telephony.api import Direction, HangupCause, Recording
from telephony.sip import ANONYMOUS_USERS, Dialog
from telephony.store import TelephonyStore

log = get_logger(__name__)

SYSTEM = Actor(type="system", name="telephony")
CALLER = Actor(type="customer")
IVR = Actor(type="bot", name="ivr")
RETRY_MAX_DELAY = 5.0


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
        journal.enqueue(journal._write_started)
        return journal

    async def flush(self, within: float) -> None:
        """Wait (bounded) until every journal wrote what it has queued."""
        pending = [journal.flush() for journal in list(self.journals)]
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending), within)

    # -- shared by journals and the sweeper

    async def ensure_customer(self, facts: CallFacts) -> None:
        if facts.customer_id is not None and facts.conversation_id is not None:
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
        )
        facts.customer_id, facts.conversation_id = customer.id, conversation.id
        await self.store.update_call(
            facts.call_id, {"customer_id": customer.id, "conversation_id": conversation.id}
        )

    async def append(
        self, facts: CallFacts, kind: str, key: str, body: dict[str, Any], at: dt.datetime, actor: Actor
    ) -> None:
        await self.ensure_customer(facts)
        assert facts.customer_id is not None
        await self.omni.timeline.append(
            facts.customer_id,
            NewEvent(
                kind=kind,
                channel=Channel.voice,
                conversation_id=facts.conversation_id,
                ts=at,
                body={"call_id": facts.call_id, **body},
                idempotency_key=f"call:{call_ref(facts.call_id)}:{key}",
            ),
            actor,
        )

    async def write_started(self, facts: CallFacts, worker_id: str) -> None:
        stored = await self.store.insert_call(
            {
                "_id": facts.call_id,
                "worker_id": worker_id,
                "status": "active",
                "direction": facts.direction.value,
                "caller": facts.caller,
                "caller_user": facts.caller_user,
                "caller_host": facts.caller_host,
                "called": facts.called,
                "started_at": facts.started_at,
                "customer_id": None,
                "conversation_id": None,
            }
        )
        facts.customer_id = stored.get("customer_id")
        facts.conversation_id = stored.get("conversation_id")
        body = {"caller": facts.caller, "called": facts.called, "direction": facts.direction.value}
        actor = CALLER if facts.direction is Direction.inbound else SYSTEM
        await self.append(facts, "call.started", "started", body, facts.started_at, actor)

    async def write_ended(
        self,
        facts: CallFacts,
        cause: str,
        status: int,
        talk_seconds: float,
        at: dt.datetime,
    ) -> None:
        duration = round(max((at - facts.started_at).total_seconds(), 0.0), 3)
        await self.store.finish_call(
            facts.call_id,
            {"ended_at": at, "cause": cause, "sip_status": status, "duration_seconds": duration},
        )
        body = {
            "cause": cause,
            "sip_status": status,
            "duration_seconds": duration,
            "talk_seconds": talk_seconds,
        }
        await self.append(facts, "call.ended", "ended", body, at, SYSTEM)
        if facts.conversation_id is not None:
            await self.omni.conversations.close(facts.conversation_id)

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
        body = {"caller": facts.caller, "called": facts.called, "direction": facts.direction.value}
        actor = CALLER if facts.direction is Direction.inbound else SYSTEM
        await self.append(facts, "call.started", "started", body, facts.started_at, actor)
        ended = {
            "cause": HangupCause.node_lost.value,
            "sip_status": 0,
            "duration_seconds": duration,
            "talk_seconds": talk,
            "worker_id": doc.get("worker_id"),
        }
        await self.append(facts, "call.ended", "ended", ended, ended_at, SYSTEM)
        if facts.conversation_id is not None:
            await self.omni.conversations.close(facts.conversation_id)
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


class CallJournal:
    """One call's facts, written in order in the background (see the module docstring)."""

    def __init__(self, ledger: CallLedger, facts: CallFacts) -> None:
        self.ledger = ledger
        self.facts = facts
        self._jobs: asyncio.Queue[Job] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    def enqueue(self, job: Job) -> None:
        self._idle.clear()
        self._jobs.put_nowait(job)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all(), name=f"journal:{self.facts.call_id}")

    async def flush(self) -> None:
        await self._idle.wait()

    async def _write_all(self) -> None:
        while True:
            job = await self._jobs.get()
            delay = 0.2
            while True:
                try:
                    await job()
                    break
                except (PyMongoError, OSError) as exc:
                    log.warning("call.journal_retry", call_id=self.facts.call_id, error=str(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_DELAY)
                except HuiliuError as exc:  # refused for good (a bug, not an outage): keep the rest
                    log.error("call.journal_refused", call_id=self.facts.call_id, error=exc.detail)
                    break
                except Exception:
                    log.exception("call.journal_failed", call_id=self.facts.call_id)
                    break
            if self._jobs.empty():
                self._idle.set()
                if self._closed:
                    self.ledger.journals.discard(self)
                    self._writer = None
                    return

    # -- the call's facts (called on the event loop as they happen)

    async def _write_started(self) -> None:
        await self.ledger.write_started(self.facts, self.ledger.worker_id)

    def answered(self, at: dt.datetime) -> None:
        self.facts.answered_at = at

        async def write() -> None:
            await self.ledger.store.update_call(self.facts.call_id, {"answered_at": at})
            await self.ledger.append(self.facts, "call.answered", "answered", {}, at, SYSTEM)

        self.enqueue(write)

    def dialog(self, dialog: Dialog) -> None:
        """Kept on the call document so a sweeper can hang the caller up if this worker dies."""
        fields = {"dialog": dataclasses.asdict(dialog)}
        self.enqueue(lambda: self.ledger.store.update_call(self.facts.call_id, fields))

    def transferred(self, target: str, attended: bool, at: dt.datetime) -> None:
        key = self._step_key("transferred")
        body = {"target": target, "attended": attended}
        self.enqueue(lambda: self.ledger.append(self.facts, "call.transferred", key, body, at, SYSTEM))

    def ended(self, cause: str, status: int, talk_seconds: float, at: dt.datetime) -> None:
        self._closed = True
        self.enqueue(lambda: self.ledger.write_ended(self.facts, cause, status, talk_seconds, at))

    def record(self, kind: str, body: dict[str, Any]) -> None:
        at = self.ledger.clock()
        key = self._step_key(kind)
        actor = IVR if kind.startswith("ivr.") else SYSTEM
        self.enqueue(lambda: self.ledger.append(self.facts, kind, key, dict(body), at, actor))

    def recording(self, recording: Recording, started_at: dt.datetime) -> None:
        """The recording's metadata, and ``call.recorded`` on the timeline — ``call.recording_failed``
        (with the error) when the file holds less than was recorded, so an admin sees the loss."""
        at = self.ledger.clock()
        failed = recording.error is not None
        kind = "call.recording_failed" if failed else "call.recorded"
        key = self._step_key("recording_failed" if failed else "recorded")
        error = recording.error.value if recording.error is not None else None

        async def write() -> None:
            await self.ledger.ensure_customer(self.facts)
            await self.ledger.store.add_recording(
                {
                    "_id": recording.id,
                    "call_id": self.facts.call_id,
                    "customer_id": self.facts.customer_id,
                    "conversation_id": self.facts.conversation_id,
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
            await self.ledger.append(self.facts, kind, key, body, at, SYSTEM)

        self.enqueue(write)

    def _step_key(self, kind: str) -> str:
        self.facts.steps += 1
        return f"{self.facts.steps}:{kind}"
