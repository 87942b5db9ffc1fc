"""The consequences of a ticket change, carried out after it: history and timeline events, notifications,
SLA timer operations.

A change puts them in the ticket document's ``outbox`` in the same atomic update as the change itself
(``stamp`` gives each a key made of the ticket, its new version and the position, stable across retries).
``flush`` then carries them out in order under a short lease, so one flusher works on a ticket at a
time, and takes them off. Every consequence is idempotent by its key, so a flush repeated after a crash
does nothing twice; whatever a crash leaves behind, ``sweep`` (Celery beat) finishes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from bson import ObjectId

from core.log import get_logger
from omnichannel import Actor, Channel
from tickets.clock import Clock
from tickets.journal import Journal, event
from tickets.models import EscalationStep, Notification, TimerState
from tickets.notify import Notifier
from tickets.sla import SlaEngine
from tickets.store import TicketStore

log = get_logger(__name__)

Doc = dict[str, Any]
_ATTEMPTS = 8


@dataclass
class Fact:
    """An event for the ticket history and the customer's timeline."""

    kind: str
    body: Doc = field(default_factory=dict)
    channel: Channel = Channel.internal
    conversation_id: str | None = None


@dataclass
class Notice:
    """A notification; its idempotency key is set when stamped."""

    notification: Notification


@dataclass
class TimerOp:
    """An SLA timer operation (``SlaEngine.start`` / ``pause`` / ``resume`` / ``stop``)."""

    action: Literal["start", "pause", "resume", "stop"]
    args: Doc


Item = Fact | Notice | TimerOp


class Outbox:
    def __init__(
        self,
        store: TicketStore,
        journal: Journal,
        notifier: Notifier,
        sla: SlaEngine,
        *,
        clock: Clock,
        lease: dt.timedelta,
    ) -> None:
        self.store = store
        self.journal = journal
        self.notifier = notifier
        self.sla = sla
        self.clock = clock
        self.lease = lease

    def stamp(
        self, ticket: Doc, items: list[Item], actor: Actor, now: dt.datetime, *, version: int
    ) -> list[Doc]:
        """The outbox entries of ``items``, a change by ``actor`` making the ticket's ``version``."""
        stamped = []
        for index, item in enumerate(items):
            key = f"{ticket['_id']}:{version}:{index}"
            if isinstance(item, Fact):
                entry = event(
                    key,
                    item.kind,
                    ticket,
                    actor,
                    now,
                    item.body,
                    channel=item.channel,
                    conversation_id=item.conversation_id,
                    seq=version * 1000 + index,
                )
                stamped.append({"op": "event", **entry})
            elif isinstance(item, Notice):
                notification = item.notification.model_copy(update={"idempotency_key": key})
                stamped.append(
                    {"op": "notify", "key": key, "notification": notification.model_dump(mode="json")}
                )
            else:
                stamped.append({"op": "sla", "key": key, "action": item.action, "args": item.args})
        return stamped

    async def flush(self, ticket_id: ObjectId) -> None:
        """Carry out the ticket's outbox, in order, under a lease (one flusher at a time)."""
        for _ in range(_ATTEMPTS):
            now = self.clock.now()
            claimed = await self.store.update(
                {
                    "_id": ticket_id,
                    "outbox_since": {"$exists": True},
                    # No lease, or an expired one; not a top-level $or, which the embedded server
                    # answers by scanning the whole collection.
                    "flush_lease": {"$not": {"$gt": now}},
                },
                {"$set": {"flush_lease": now + self.lease}},
            )
            if claimed is None:
                return  # nothing left, or another flusher holds the lease and will finish
            items = claimed.get("outbox") or []
            try:
                for item in items:
                    await self._carry_out(item, claimed)
            except Exception as exc:
                log.error("tickets.outbox_failed", ticket_id=str(ticket_id), error=str(exc))
                await self.store.tickets.update_one(
                    {"_id": ticket_id, "flush_lease": claimed["flush_lease"]},
                    {"$set": {"outbox_error": f"{type(exc).__name__}: {exc}"[:300]}},
                )
                return  # the lease expires; the sweep tries again
            keys = [item["key"] for item in items]
            await self.store.tickets.update_one(
                {"_id": ticket_id, "flush_lease": claimed["flush_lease"]},
                {
                    "$pull": {"outbox": {"key": {"$in": keys}}},
                    "$set": {"flush_lease": None, "outbox_error": None},
                },
            )
            await self.store.tickets.update_one(
                {"_id": ticket_id, "outbox": {"$size": 0}}, {"$unset": {"outbox_since": ""}}
            )

    async def sweep(self) -> None:
        """Finish the outboxes that have waited longer than a lease (their flusher died)."""
        for doc in await self.store.with_unflushed_events(self.clock.now() - self.lease):
            await self.flush(doc["_id"])

    async def _carry_out(self, item: Doc, ticket: Doc) -> None:
        if item["op"] == "event":
            await self.journal.write([item])
        elif item["op"] == "notify":
            await self.notifier.send(Notification(**item["notification"]))
        else:
            await self._timer(item["action"], item["args"], ticket)

    async def _timer(self, action: str, args: Doc, ticket: Doc) -> None:
        ticket_id = str(ticket["_id"])
        if action == "start":
            await self.sla.start(
                ticket,
                timer_id=args["timer_id"],
                kind=args["kind"],
                label=args["label"],
                target=dt.timedelta(seconds=args["target_seconds"]),
                calendar=args["calendar"],
                chain=[EscalationStep(**step) for step in args["chain"]],
                department=args["department"],
                remind=args["kind"] != "collaboration",  # ten minutes is short enough to need none
            )
        elif action == "pause":
            await self.sla.pause(ticket_id, timer_id=args.get("timer_id"))
        elif action == "resume":
            await self.sla.resume(ticket_id, timer_id=args.get("timer_id"))
        else:
            outcome = TimerState.met if args["outcome"] == "met" else TimerState.cancelled
            kinds = tuple(args["kinds"]) if args.get("kinds") else None
            await self.sla.stop(ticket_id, kinds=kinds, timer_id=args.get("timer_id"), outcome=outcome)
