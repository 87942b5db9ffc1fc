"""Every ticket change becomes a history entry and an event on the customer's timeline.

A change writes its events into the ticket document itself (``outbox``) in the same atomic update as the
change, and the journal then copies them out, idempotently: the history entry's ``_id`` and the timeline
event's ``idempotency_key`` are the event's key. So a crash between the change and its events delays them
(the periodic sweep flushes what is left) but never loses or doubles them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from pymongo.errors import DuplicateKeyError

from core.db import as_utc
from omnichannel import Actor, Channel, NewEvent
from omnichannel.timeline import TimelineService
from tickets.store import TicketStore

Doc = dict[str, Any]


def event(
    key: str,
    kind: str,
    ticket: Doc,
    actor: Actor,
    at: dt.datetime,
    body: Doc | None = None,
    *,
    channel: Channel = Channel.internal,
    conversation_id: str | None = None,
    seq: int = 0,
) -> Doc:
    """A pending journal event about ``ticket`` (a ticket document); ``seq`` orders the events of one
    moment."""
    return {
        "key": key,
        "kind": kind,
        "ticket_id": str(ticket["_id"]),
        "customer_id": ticket["customer_id"],
        "actor": actor.model_dump(mode="json"),
        "body": {"ticket_id": str(ticket["_id"]), "number": ticket["number"], **(body or {})},
        "channel": channel.value,
        "conversation_id": conversation_id,
        "ts": at,
        "seq": seq,
    }


class EventSink(Protocol):
    async def record(self, events: list[Doc]) -> None:
        """Take note of journal events (idempotently by their ``key``); raise if that failed."""
        ...


class Journal:
    def __init__(self, store: TicketStore, timeline: TimelineService, sink: EventSink | None = None) -> None:
        self.store = store
        self.timeline = timeline
        self.sink = sink

    async def write(self, events: list[Doc]) -> None:
        """Store ``events`` in the ticket history and on the customer timeline (safe to repeat)."""
        for item in events:
            try:
                await self.store.history.insert_one(
                    {
                        "_id": item["key"],
                        "ticket_id": item["ticket_id"],
                        "ts": item["ts"],
                        "seq": item.get("seq", 0),
                        "kind": item["kind"],
                        "actor": item["actor"],
                        "body": item["body"],
                    }
                )
            except DuplicateKeyError:
                pass
            await self.timeline.append(
                item["customer_id"],
                NewEvent(
                    kind=item["kind"],
                    channel=Channel(item["channel"]),
                    conversation_id=item.get("conversation_id"),
                    ts=as_utc(item["ts"]),
                    body=item["body"],
                    idempotency_key=f"ticket:{item['key']}",
                ),
                Actor(**item["actor"]),
            )
        if self.sink is not None:
            await self.sink.record(events)

    async def flush(self, ticket: Doc) -> None:
        """Write the ticket's pending events, then take them off the ticket."""
        pending = ticket.get("outbox") or []
        if not pending:
            return
        await self.write(pending)
        keys = [item["key"] for item in pending]
        await self.store.tickets.update_one(
            {"_id": ticket["_id"]}, {"$pull": {"outbox": {"key": {"$in": keys}}}}
        )
        await self.store.tickets.update_one(
            {"_id": ticket["_id"], "outbox": {"$size": 0}}, {"$unset": {"outbox_since": ""}}
        )
