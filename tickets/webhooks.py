"""Outgoing webhooks: admins subscribe a URL to event kinds; every matching ticket event is POSTed there,
signed, retried with backoff, and ends ``delivered`` or visibly ``failed``.

Never lost: the journal records a delivery in MongoDB (``webhook_deliveries``) with the event before
anything is sent, and a periodic sweep sends whatever its Celery task did not. Never doubled: a delivery
is made once per subscription and event (its ``_id`` is both keys), one sender at a time holds it under a
lease, and each request carries the delivery id (``Huiliu-Delivery``) — if a sender dies after the
receiver said yes but before we wrote it down, the retry has the same id for the receiver to drop.

Signature: ``Huiliu-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``; a
receiver recomputes it and refuses a timestamp older than a few minutes (replays).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
import time
from typing import Any, Literal, Protocol

from bson import ObjectId
from celery import Celery
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from core.db import Database, register_indexes
from core.errors import Conflict, NotFound
from core.jsonutil import dumps
from core.log import get_logger
from tickets.clock import Clock
from tickets.store import update_by_id

log = get_logger(__name__)

Doc = dict[str, Any]
DELIVER_TASK = "tickets.tasks.deliver_webhook"
_MAX_BACKOFF = dt.timedelta(hours=1)
_EVENT_PATTERN = r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$"

register_indexes("webhooks", IndexModel([("active", ASCENDING)]))
register_indexes(
    "webhook_deliveries",
    IndexModel([("state", ASCENDING), ("next_attempt_at", ASCENDING)]),
    IndexModel([("webhook_id", ASCENDING), ("created_at", DESCENDING)]),
)


class WebhookInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000, description="http:// or https:// endpoint")
    events: list[str] = Field(
        min_length=1,
        max_length=50,
        description="Event kinds: 'ticket.created', a prefix like 'ticket.*', or '*' for all",
    )
    secret: str | None = Field(
        default=None, min_length=16, max_length=200, description="Signing secret; generated if absent"
    )
    description: str = Field(default="", max_length=500)
    active: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or " " in value:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("events")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        import re

        bad = [kind for kind in value if not re.match(_EVENT_PATTERN, kind)]
        if bad:
            raise ValueError(f"not event kinds: {', '.join(bad)} (e.g. ticket.created, ticket.*, *)")
        return sorted(set(value))


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    active: bool
    secret_hint: str = Field(description="The last 4 characters of the secret")
    created_at: dt.datetime
    created_by: str


class WebhookCreated(Webhook):
    secret: str = Field(description="Shown once, here")


DeliveryState = Literal["pending", "delivered", "failed"]


class Attempt(BaseModel):
    at: dt.datetime
    status: int | None
    error: str | None
    ms: float


class WebhookDelivery(BaseModel):
    id: str
    webhook_id: str
    event: str
    event_key: str
    ticket_id: str | None
    state: DeliveryState
    attempts: int
    max_attempts: int
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    failed_at: dt.datetime | None
    last_status: int | None
    last_error: str | None
    log: list[Attempt]


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: DeliveryState | None = None
    limit: int = Field(default=50, ge=1, le=500)


class DeliveryQueue(Protocol):
    async def enqueue(self, delivery_id: str, at: dt.datetime | None) -> None:
        """Ask for ``deliver(delivery_id)`` at ``at`` (now if None); best effort, the sweep is the net."""
        ...


class CeleryDeliveryQueue:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    async def enqueue(self, delivery_id: str, at: dt.datetime | None) -> None:
        try:
            await asyncio.to_thread(
                self.celery.send_task, DELIVER_TASK, args=[delivery_id], eta=at, retry=False
            )
        except Exception as exc:
            log.warning("webhook.enqueue_failed", delivery_id=delivery_id, error=str(exc))


class InMemoryDeliveryQueue:
    """Keeps the requests for tests that drive deliveries themselves."""

    def __init__(self) -> None:
        self.requested: list[tuple[str, dt.datetime | None]] = []

    async def enqueue(self, delivery_id: str, at: dt.datetime | None) -> None:
        self.requested.append((delivery_id, at))


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Huiliu-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300) -> bool:
    """What a receiver does: the signature matches and is fresh."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, parts.get("v1", ""))


def _matches(patterns: list[str], kind: str) -> bool:
    return any(
        pattern == "*" or pattern == kind or (pattern.endswith(".*") and kind.startswith(pattern[:-1]))
        for pattern in patterns
    )


def _webhook(doc: Doc) -> Webhook:
    return Webhook(
        id=doc["_id"],
        url=doc["url"],
        events=doc["events"],
        description=doc.get("description", ""),
        active=doc["active"],
        secret_hint=doc["secret"][-4:],
        created_at=doc["created_at"],
        created_by=doc.get("created_by", ""),
    )


def _delivery(doc: Doc) -> WebhookDelivery:
    return WebhookDelivery(
        id=doc["_id"],
        webhook_id=doc["webhook_id"],
        event=doc["event"],
        event_key=doc["event_key"],
        ticket_id=doc.get("ticket_id"),
        state=doc["state"],
        attempts=doc["attempts"],
        max_attempts=doc["max_attempts"],
        next_attempt_at=doc.get("next_attempt_at"),
        created_at=doc["created_at"],
        delivered_at=doc.get("delivered_at"),
        failed_at=doc.get("failed_at"),
        last_status=doc.get("last_status"),
        last_error=doc.get("last_error"),
        log=[Attempt(**entry) for entry in doc.get("log", [])],
    )


class Webhooks:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        queue: DeliveryQueue,
        max_attempts: int = 8,
        backoff: dt.timedelta = dt.timedelta(seconds=10),
        timeout: dt.timedelta = dt.timedelta(seconds=10),
    ) -> None:
        self.subscriptions = db["webhooks"]
        self.deliveries = db["webhook_deliveries"]
        self.clock = clock
        self.queue = queue
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        # A sender holds a delivery this long; longer than any request can take.
        self.lease = timeout + dt.timedelta(seconds=20)

    # ---------------------------------------------------------------------------- subscriptions

    async def create(self, new: WebhookInput, by: str) -> WebhookCreated:
        secret = new.secret or secrets.token_urlsafe(32)
        doc: Doc = {
            "_id": str(ObjectId()),
            "url": new.url,
            "events": new.events,
            "description": new.description,
            "active": new.active,
            "secret": secret,
            "created_at": self.clock.now(),
            "created_by": by,
        }
        await self.subscriptions.insert_one(doc)
        return WebhookCreated(**_webhook(doc).model_dump(), secret=secret)

    async def all(self) -> list[Webhook]:
        return [_webhook(doc) async for doc in self.subscriptions.find({}, sort=[("created_at", 1)])]

    async def remove(self, webhook_id: str) -> None:
        """Stop the subscription; its pending deliveries are given up (marked failed, not sent)."""
        result = await self.subscriptions.delete_one({"_id": webhook_id})
        if result.deleted_count == 0:
            raise NotFound(f"no webhook {webhook_id}", code="webhook_not_found")
        await self.deliveries.update_many(
            {"webhook_id": webhook_id, "state": "pending"},
            {"$set": {"state": "failed", "failed_at": self.clock.now(), "last_error": "webhook removed"}},
        )

    async def history(self, webhook_id: str, query: DeliveryQuery) -> list[WebhookDelivery]:
        if await self.subscriptions.count_documents({"_id": webhook_id}) == 0:
            raise NotFound(f"no webhook {webhook_id}", code="webhook_not_found")
        mongo: Doc = {"webhook_id": webhook_id}
        if query.state:
            mongo["state"] = query.state
        cursor = self.deliveries.find(mongo, sort=[("created_at", -1)], limit=query.limit)
        return [_delivery(doc) async for doc in cursor]

    async def retry(self, delivery_id: str) -> WebhookDelivery:
        """Send a failed delivery again, with a fresh set of attempts."""
        doc = await update_by_id(
            self.deliveries,
            {"_id": delivery_id, "state": "failed"},
            {
                "$set": {
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": self.clock.now(),
                    "failed_at": None,
                    "lease_until": None,
                }
            },
        )
        if doc is None:
            if await self.deliveries.count_documents({"_id": delivery_id}) == 0:
                raise NotFound(f"no webhook delivery {delivery_id}", code="delivery_not_found")
            raise Conflict("only a failed delivery can be retried", code="delivery_not_failed")
        await self.queue.enqueue(delivery_id, None)
        return _delivery(doc)

    # ------------------------------------------------------------------------------- deliveries

    async def record(self, events: list[Doc]) -> None:
        """A delivery for every active subscription each journal event matches (idempotent by key)."""
        subscriptions = [doc async for doc in self.subscriptions.find({"active": True})]
        if not subscriptions:
            return
        now = self.clock.now()
        created = []
        for item in events:
            for subscription in subscriptions:
                if not _matches(subscription["events"], item["kind"]):
                    continue
                delivery_id = f"{subscription['_id']}:{item['key']}"
                payload = {
                    "id": delivery_id,
                    "event": item["kind"],
                    "occurred_at": item["ts"],
                    "ticket_id": item.get("ticket_id"),
                    "customer_id": item.get("customer_id"),
                    "actor": item.get("actor"),
                    "data": item.get("body", {}),
                }
                try:
                    await self.deliveries.insert_one(
                        {
                            "_id": delivery_id,
                            "webhook_id": subscription["_id"],
                            "event": item["kind"],
                            "event_key": item["key"],
                            "ticket_id": item.get("ticket_id"),
                            "payload": dumps(payload),
                            "state": "pending",
                            "attempts": 0,
                            "max_attempts": self.max_attempts,
                            "next_attempt_at": now,
                            "lease_until": None,
                            "created_at": now,
                            "log": [],
                        }
                    )
                except DuplicateKeyError:
                    continue  # recorded by an earlier run of the same journal write
                created.append(delivery_id)
        for delivery_id in created:
            await self.queue.enqueue(delivery_id, None)

    async def deliver(self, delivery_id: str) -> DeliveryState | None:
        """One attempt at a due delivery, if nobody else is at it; returns its state after, or None
        when there was nothing to do (delivered, failed, not due, or held by another sender)."""
        now = self.clock.now()
        doc = await update_by_id(
            self.deliveries,
            {
                "_id": delivery_id,
                "state": "pending",
                "next_attempt_at": {"$lte": now},
                "lease_until": {"$not": {"$gt": now}},  # none or expired (no $or: see tickets.outbox)
            },
            {"$set": {"lease_until": now + self.lease}},
        )
        if doc is None:
            return None
        subscription = await self.subscriptions.find_one({"_id": doc["webhook_id"]})
        if subscription is None:
            await self.deliveries.update_one(
                {"_id": delivery_id}, {"$set": {"state": "failed", "last_error": "webhook removed"}}
            )
            return "failed"
        status, error, elapsed = await self._post(subscription, doc)
        attempts = doc["attempts"] + 1
        after = self.clock.now()
        entry = {"at": after, "status": status, "error": error, "ms": round(elapsed * 1000, 1)}
        sets: Doc = {"attempts": attempts, "lease_until": None, "last_status": status, "last_error": error}
        if status is not None and 200 <= status < 300:
            sets.update(state="delivered", delivered_at=after, next_attempt_at=None)
        elif attempts >= doc["max_attempts"]:
            sets.update(state="failed", failed_at=after, next_attempt_at=None)
            log.warning("webhook.failed", delivery_id=delivery_id, attempts=attempts, error=error)
        else:
            delay = min(self.backoff * 2 ** (attempts - 1), _MAX_BACKOFF)
            sets["next_attempt_at"] = after + delay
        await self.deliveries.update_one(
            {"_id": delivery_id, "lease_until": doc["lease_until"]},
            {"$set": sets, "$push": {"log": {"$each": [entry], "$slice": -20}}},
        )
        if sets["next_attempt_at"] is not None:
            await self.queue.enqueue(delivery_id, sets["next_attempt_at"])
        state: DeliveryState = sets.get("state", "pending")
        return state

    async def sweep(self, grace: dt.timedelta = dt.timedelta(seconds=5), limit: int = 200) -> int:
        """The safety net (Celery beat): send the deliveries whose task was lost; returns how many."""
        now = self.clock.now()
        cursor = self.deliveries.find(
            {"state": "pending", "next_attempt_at": {"$lte": now - grace}}, {"_id": 1}, limit=limit
        )
        due = [doc["_id"] async for doc in cursor]
        for delivery_id in due:
            await self.deliver(delivery_id)
        return len(due)

    async def _post(self, subscription: Doc, doc: Doc) -> tuple[int | None, str | None, float]:
        body = doc["payload"].encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Huiliu-Webhooks/1",
            "Huiliu-Event": doc["event"],
            "Huiliu-Delivery": doc["_id"],
            "Huiliu-Attempt": str(doc["attempts"] + 1),
            "Huiliu-Signature": sign(subscription["secret"], timestamp, body),
        }
        import aiohttp  # on the first delivery: a deployment without subscriptions never loads it

        started = time.perf_counter()
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout.total_seconds())
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(subscription["url"], data=body, headers=headers, allow_redirects=False) as reply,
            ):
                await reply.read()
                error = None if 200 <= reply.status < 300 else f"HTTP {reply.status}"
                return reply.status, error, time.perf_counter() - started
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300], time.perf_counter() - started
