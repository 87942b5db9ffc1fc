"""The event bus on Redis pub/sub.

Rules (DESIGN.md): a fact is written to MongoDB first and published second, so the bus only ever announces
what is already durable. Pub/sub is lossy across a Redis outage, so:

* a publish that fails is parked in the MongoDB ``outbox`` collection and relayed later (``relay_outbox``,
  run periodically by the Celery beat), and
* a subscriber that must not miss anything passes ``resume``: after a gap (Redis went away and came back) the
  bus asks it for everything since the last event it saw and delivers what was not yet delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.aio import stop_tasks
from core.db import Database, utcnow
from core.jsonutil import dumps
from core.log import get_logger

log = get_logger(__name__)


def connect_redis(
    url: str, *, socket_timeout: float = 2.0, health_check_interval: int = 15
) -> aioredis.Redis:
    """A Redis client that rides out a Redis restart: the first command on a connection the server closed
    is retried on a fresh one (without this it fails once per pooled connection after every restart)."""
    return aioredis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2,
        health_check_interval=health_check_interval,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    )


Event = dict[str, Any]
Handler = Callable[[Event], Awaitable[None]]
Resume = Callable[[dt.datetime], AsyncIterator[Event]]

CHANNEL_PREFIX = "huiliu:"
# How far before the last seen event a resume starts: clocks of two writers may disagree a little.
RESUME_SKEW = dt.timedelta(seconds=2)


@dataclass
class _Subscription:
    pattern: str
    handler: Handler
    resume: Resume | None
    last_ts: dt.datetime | None = None
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def first_time(self, event_id: str, keep: int = 10_000) -> bool:
        if event_id in self.seen:
            return False
        self.seen[event_id] = None
        if len(self.seen) > keep:
            self.seen.popitem(last=False)
        return True


def _event_ts(event: Event) -> dt.datetime | None:
    raw = event.get("ts")
    if isinstance(raw, dt.datetime):
        return raw
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return None


class EventBus:
    def __init__(self, redis: aioredis.Redis, db: Database | None = None) -> None:
        self.redis = redis
        self.db = db
        self._subscriptions: list[_Subscription] = []
        self._listener: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.connected = asyncio.Event()

    async def publish(self, topic: str, event: Event) -> None:
        """Announce ``event`` (which must carry a unique ``id`` and should carry ``ts``) on ``topic``."""
        message = dumps({**event, "topic": topic})
        try:
            await self.redis.publish(CHANNEL_PREFIX + topic, message)
        except (RedisError, OSError) as exc:
            log.warning("bus.publish_failed", topic=topic, error=str(exc))
            if self.db is not None:
                await self.db["outbox"].update_one(
                    {"_id": f"{topic}:{event['id']}"},
                    {"$setOnInsert": {"topic": topic, "message": message, "at": utcnow()}},
                    upsert=True,
                )

    def subscribe(
        self, pattern: str, handler: Handler, *, resume: Resume | None = None
    ) -> Callable[[], None]:
        """Call ``handler`` for each event whose topic matches glob ``pattern``; returns the unsubscribe."""
        subscription = _Subscription(pattern, handler, resume)
        self._subscriptions.append(subscription)
        self._changed.set()

        def unsubscribe() -> None:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
                self._changed.set()

        return unsubscribe

    async def start(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="event-bus-listener")

    async def stop(self) -> None:
        await stop_tasks(self._listener)
        self._listener = None

    async def _listen(self) -> None:
        delay = 0.2
        had_gap = False
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(CHANNEL_PREFIX + "*")
                self.connected.set()
                delay = 0.2
                if had_gap:
                    await self._resume_all()
                    had_gap = False
                async for message in pubsub.listen():
                    if message.get("type") != "pmessage":
                        continue
                    await self._dispatch(json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.connected.is_set():
                    log.warning("bus.connection_lost", error=str(exc))
                self.connected.clear()
                had_gap = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _dispatch(self, event: Event) -> None:
        topic = str(event.get("topic", ""))
        for subscription in list(self._subscriptions):
            if fnmatch.fnmatchcase(topic, subscription.pattern):
                await self._deliver(subscription, event)

    async def _deliver(self, subscription: _Subscription, event: Event) -> None:
        event_id = str(event.get("id", ""))
        if event_id and not subscription.first_time(event_id):
            return
        ts = _event_ts(event)
        if ts is not None and (subscription.last_ts is None or ts > subscription.last_ts):
            subscription.last_ts = ts
        try:
            await subscription.handler(event)
        except Exception:
            log.exception("bus.handler_failed", pattern=subscription.pattern, event_id=event_id)

    async def _resume_all(self) -> None:
        for subscription in list(self._subscriptions):
            if subscription.resume is None or subscription.last_ts is None:
                continue
            since = subscription.last_ts - RESUME_SKEW
            log.info("bus.resuming", pattern=subscription.pattern, since=since.isoformat())
            async for event in subscription.resume(since):
                await self._deliver(subscription, event)


def relay_outbox(db: Any, redis_client: Any, limit: int = 1000) -> int:
    """Publish parked events (synchronous clients; run by the Celery beat). Returns how many went out."""
    sent = 0
    for doc in db["outbox"].find({}, sort=[("at", 1)], limit=limit):
        redis_client.publish(CHANNEL_PREFIX + doc["topic"], doc["message"])
        db["outbox"].delete_one({"_id": doc["_id"]})
        sent += 1
    return sent
