"""The event bus: facts announced after they are stored; nothing missed across a Redis outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from pymongo import MongoClient

from core.bus import EventBus, relay_outbox
from core.db import Database
from core.embedded import EmbeddedServer, free_port, start_redis
from core.settings import Settings
from omnichannel import Actor, Channel, Identity, IdentityKind, NewEvent, Omnichannel


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    server = start_redis(tmp_path / "redis", free_port(), tmp_path / "redis.log")
    yield server
    server.stop()


async def wait_for(predicate: Any, within: float = 10.0) -> None:
    for _ in range(int(within / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def note(key: str) -> NewEvent:
    return NewEvent(kind="note.added", channel=Channel.internal, body={"text": key}, idempotency_key=key)


async def test_subscriber_catches_up_after_redis_restarts(
    own_redis: EmbeddedServer, db: Database, settings: Settings, tmp_path: Path
) -> None:
    client = aioredis.from_url(own_redis.url, socket_timeout=1, socket_connect_timeout=1)
    bus = EventBus(client, db)
    omni = Omnichannel.create(db, bus)
    received: list[str] = []

    async def on_note(event: dict[str, Any]) -> None:
        received.append(event["body"]["text"])

    unsubscribe = bus.subscribe("timeline.note.*", on_note, resume=omni.timeline.since)
    await bus.start()
    try:
        await asyncio.wait_for(bus.connected.wait(), 5)
        customer, _ = await omni.customers.resolve([Identity(kind=IdentityKind.phone, value="13800138000")])
        await omni.timeline.append(customer.id, note("before"), Actor(type="system"))
        await wait_for(lambda: received == ["before"])

        own_redis.stop()
        await wait_for(lambda: not bus.connected.is_set())
        # Accepted while the bus is down: stored in MongoDB, parked in the outbox.
        await omni.timeline.append(customer.id, note("during-1"), Actor(type="system"))
        await omni.timeline.append(customer.id, note("during-2"), Actor(type="system"))
        assert await db["outbox"].count_documents({}) == 2

        restarted = start_redis(tmp_path / "redis", own_redis.port)
        own_redis.process = restarted.process
        await wait_for(lambda: received == ["before", "during-1", "during-2"])
        await omni.timeline.append(customer.id, note("after"), Actor(type="system"))
        await wait_for(lambda: received[-1:] == ["after"])

        # The outbox relay (a Celery beat task) republishes the parked events; subscribers drop repeats.
        assert relay_with_sync_clients(settings, own_redis.port) == 2
        await asyncio.sleep(0.3)
        assert received == ["before", "during-1", "during-2", "after"]
        assert await db["outbox"].count_documents({}) == 0
    finally:
        unsubscribe()
        await bus.stop()
        await client.aclose()


def relay_with_sync_clients(settings: Settings, redis_port: int) -> int:
    """What the Celery beat task does, with the same synchronous clients."""
    sync_mongo: MongoClient[dict[str, Any]] = MongoClient(settings.mongo_url)
    try:
        return relay_outbox(sync_mongo[settings.db_name], redis.Redis(host="127.0.0.1", port=redis_port))
    finally:
        sync_mongo.close()


async def test_unsubscribe_stops_delivery(redis_server: EmbeddedServer) -> None:
    client = aioredis.from_url(redis_server.url)
    bus = EventBus(client)
    seen: list[str] = []

    async def handler(event: dict[str, Any]) -> None:
        seen.append(event["id"])

    unsubscribe = bus.subscribe("demo.*", handler)
    await bus.start()
    try:
        await asyncio.wait_for(bus.connected.wait(), 5)
        await asyncio.sleep(0.1)
        await bus.publish("demo.happened", {"id": "1"})
        await wait_for(lambda: seen == ["1"])
        unsubscribe()
        await bus.publish("demo.happened", {"id": "2"})
        await bus.publish("other.happened", {"id": "3"})
        await asyncio.sleep(0.3)
        assert seen == ["1"]
    finally:
        await bus.stop()
        await client.aclose()
