"""The unified timeline: every event of every channel on one customer, newest first.

Producers retry safely: ``idempotency_key`` is unique, and a second append with the same key returns the
event already stored. Events are written to MongoDB first and announced on the bus (``timeline.<kind>``)
second; a subscriber that lost the bus for a while catches up with ``since``.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError

from core.bus import EventBus
from core.db import Database, as_utc, register_indexes, utcnow
from core.errors import Conflict, Invalid, NotFound
from core.metrics import TIMELINE_EVENTS
from core.pagination import decode_cursor, encode_cursor
from omnichannel.customers import CustomerService, object_id
from omnichannel.models import Actor, Channel, NewEvent, TimelineEvent, TimelinePage

register_indexes(
    "timeline",
    IndexModel([("idempotency_key", ASCENDING)], unique=True),
    IndexModel([("customer_id", ASCENDING), ("ts", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("conversation_id", ASCENDING), ("ts", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("ts", ASCENDING)]),
)

MAX_PAGE = 200
_CACHE_LIMIT = 50_000
DUPLICATE_KEY = 11000


def event_from_doc(doc: dict[str, Any]) -> TimelineEvent:
    return TimelineEvent(
        id=str(doc["_id"]),
        customer_id=str(doc["customer_id"]),
        conversation_id=str(doc["conversation_id"]) if doc.get("conversation_id") else None,
        ts=as_utc(doc["ts"]),
        channel=Channel(doc["channel"]),
        kind=doc["kind"],
        actor=Actor(**doc["actor"]),
        body=doc.get("body", {}),
        idempotency_key=doc["idempotency_key"],
    )


class TimelineService:
    def __init__(self, db: Database, customers: CustomerService, bus: EventBus | None = None) -> None:
        self.events = db["timeline"]
        self.conversations = db["conversations"]
        self.customers = customers
        self.bus = bus
        self._known_conversations: set[ObjectId] = set()

    async def append(self, customer_id: str, event: NewEvent, actor: Actor) -> tuple[TimelineEvent, bool]:
        """Store ``event`` on the customer's timeline; ``(event, created)`` — False when the key was seen."""
        [result] = await self.append_many(customer_id, [(event, actor)])
        return result

    async def append_many(
        self, customer_id: str, events: list[tuple[NewEvent, Actor]]
    ) -> list[tuple[TimelineEvent, bool]]:
        """Store several events of one customer in one write (a producer that fell behind catches up with a
        batch); one ``(event, created)`` per event, in order. Each key is idempotent exactly as in
        ``append``: an event whose key was seen returns the stored one and the rest are still written."""
        if not events:
            return []
        # Events for a merged-away customer land on the customer that now holds their identities.
        live_id = ObjectId(await self.customers.live_id(customer_id))
        docs = []
        for event, actor in events:
            conversation_id = None
            if event.conversation_id is not None:
                conversation_id = object_id(event.conversation_id, "conversation")
                await self._check_conversation(conversation_id)
            docs.append(
                {
                    "_id": ObjectId(),
                    "customer_id": live_id,
                    "conversation_id": conversation_id,
                    "ts": _millis(as_utc(event.ts)) if event.ts else utcnow(),
                    "channel": event.channel.value,
                    "kind": event.kind,
                    "actor": actor.model_dump(mode="json"),
                    "body": event.body,
                    "idempotency_key": event.idempotency_key or f"auto:{uuid.uuid4()}",
                }
            )
        seen: set[int] = set()
        try:
            if len(docs) == 1:
                await self.events.insert_one(docs[0])
            else:
                await self.events.insert_many(docs, ordered=False)
        except DuplicateKeyError:
            seen = {0}
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            seen = {error["index"] for error in errors}
        results = []
        for index, doc in enumerate(docs):
            if index in seen:
                results.append((await self._stored(doc, str(live_id)), False))
                continue
            stored_event = event_from_doc(doc)
            TIMELINE_EVENTS.labels(stored_event.channel.value, stored_event.kind).inc()
            if self.bus is not None:
                await self.bus.publish(f"timeline.{stored_event.kind}", stored_event.model_dump(mode="json"))
            results.append((stored_event, True))
        return results

    async def _check_conversation(self, conversation_id: ObjectId) -> None:
        if conversation_id in self._known_conversations:
            return
        if await self.conversations.find_one({"_id": conversation_id}, {"_id": 1}) is None:
            raise NotFound(f"no conversation {conversation_id}", code="conversation_not_found")
        self._remember(self._known_conversations, conversation_id)

    def conversation_exists(self, conversation_id: str) -> None:
        """Told by whoever just opened or found it: appends to it need not look it up."""
        self._remember(self._known_conversations, object_id(conversation_id, "conversation"))

    async def _stored(self, doc: dict[str, Any], live_id: str) -> TimelineEvent:
        """The event already stored under ``doc``'s key (a retried write) — refused if it is another fact."""
        key = doc["idempotency_key"]
        stored = await self.events.find_one({"idempotency_key": key})
        if stored is None:  # pragma: no cover - the duplicate was deleted in between
            raise Conflict(f"idempotency_key {key!r} vanished while written", code="idempotency_key_reused")
        same_customer = stored["customer_id"] in await self.customers.timeline_ids(live_id)
        if stored["kind"] != doc["kind"] or not same_customer:
            # Same key, different fact: a producer bug. Refuse rather than hide the write or leak the other
            # customer's event.
            raise Conflict(
                f"idempotency_key {key!r} was already used for a different event",
                code="idempotency_key_reused",
            )
        return event_from_doc(stored)

    async def page(
        self,
        customer_id: str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        channels: list[Channel] | None = None,
        kinds: list[str] | None = None,
        conversation_id: str | None = None,
    ) -> TimelinePage:
        """Newest first; ``next_cursor`` continues where this page stopped (stable under new appends)."""
        if not 1 <= limit <= MAX_PAGE:
            raise Invalid(f"limit must be 1..{MAX_PAGE}", code="invalid_limit")
        await self.customers.get(customer_id)
        ids = await self.customers.timeline_ids(customer_id)
        query: dict[str, Any] = {"customer_id": ids[0] if len(ids) == 1 else {"$in": ids}}
        if channels:
            query["channel"] = {"$in": [channel.value for channel in channels]}
        if kinds:
            query["kind"] = _kind_filter(kinds)
        if conversation_id:
            query["conversation_id"] = object_id(conversation_id, "conversation")
        # Plain field conditions only, no $or/$and: planners (SecantusDB's above all, which scans the whole
        # collection for any top-level operator) keep using the (customer_id, ts, _id) index.
        if cursor:
            ts, oid = decode_cursor(cursor)
            docs = await self._find({**query, "ts": ts, "_id": {"$lt": oid}}, limit + 1)
            if len(docs) <= limit:
                docs += await self._find({**query, "ts": {"$lt": ts}}, limit + 1 - len(docs))
        else:
            docs = await self._find(query, limit + 1)
        next_cursor = (
            encode_cursor(docs[limit - 1]["ts"], docs[limit - 1]["_id"]) if len(docs) > limit else None
        )
        return TimelinePage(events=[event_from_doc(doc) for doc in docs[:limit]], next_cursor=next_cursor)

    @staticmethod
    def _remember(known: set[ObjectId], value: ObjectId) -> None:
        if len(known) > _CACHE_LIMIT:
            known.clear()
        known.add(value)

    async def _find(self, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        return [doc async for doc in self.events.find(query, sort=[("ts", -1), ("_id", -1)], limit=limit)]

    async def since(self, ts: dt.datetime) -> AsyncIterator[dict[str, Any]]:
        """Every event at or after ``ts``, oldest first, shaped like the bus message (for resume)."""
        async for doc in self.events.find({"ts": {"$gte": ts}}, sort=[("ts", 1), ("_id", 1)]):
            event = event_from_doc(doc)
            yield {**event.model_dump(mode="json"), "topic": f"timeline.{event.kind}"}


def _kind_filter(kinds: list[str]) -> dict[str, Any]:
    """Exact kinds and ``prefix.*`` patterns as one condition on ``kind``."""
    if not any(kind.endswith(".*") for kind in kinds):
        return {"$in": kinds}
    alternatives = [re.escape(kind[:-1]) if kind.endswith(".*") else re.escape(kind) + "$" for kind in kinds]
    return {"$regex": "^(?:" + "|".join(alternatives) + ")"}


def _millis(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
