"""Outbound SMS through the real machinery: a Celery worker process sending through the HTTP provider to
a fake SMS gateway on loopback. A gateway that fails twice and then accepts gets the message exactly once;
a gateway that never accepts leaves the message visibly ``failed`` after the last retry."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from core.db import Database
from core.embedded import EmbeddedServer, spawn
from core.settings import Settings
from omnichannel import Omnichannel
from omnichannel.channels import SmsConfig, SmsService
from omnichannel.channels.sms import SinkSmsProvider
from omnichannel.channels.wiring import celery_enqueue
from tests.channels.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
REDIS_DB = 8  # the tests' Redis is shared; this test's Celery queue lives in its own database
API_KEY = "gateway-api-key"
FLAKY = "+8613811110000"  # the gateway fails twice for this number, then accepts
DOWN = "+8613822220000"  # the gateway never accepts for this one


class FakeGateway:
    """An SMS gateway: ``POST /messages`` with a bearer key; deduplicates by ``Idempotency-Key``."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.delivered: dict[str, dict[str, Any]] = {}
        self.app = web.Application()
        self.app.router.add_post("/messages", self.messages)

    async def messages(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response({"error": "bad key"}, status=401)
        payload = await request.json()
        self.attempts[payload["to"]] += 1
        if payload["to"] == DOWN or (payload["to"] == FLAKY and self.attempts[FLAKY] <= 2):
            return web.json_response({"error": "upstream carrier unavailable"}, status=503)
        key = request.headers["Idempotency-Key"]
        self.delivered.setdefault(key, payload)
        return web.json_response({"id": f"gw-{key}"})


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FakeGateway, str]]:
    fake = FakeGateway()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
def worker(
    settings: Settings, redis_server: EmbeddedServer, gateway: tuple[FakeGateway, str], tmp_path: Path
) -> Any:
    broker = f"redis://127.0.0.1:{redis_server.port}/{REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    assert settings.mongo_url is not None
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUILIU_")},
        "HUILIU_MONGO_URL": settings.mongo_url,
        "HUILIU_REDIS_URL": broker,
        "HUILIU_DB_NAME": settings.db_name,
        "HUILIU_DATA_DIR": str(tmp_path),
        "HUILIU_SMS_PROVIDER": "http",
        "HUILIU_SMS_HTTP_BASE_URL": gateway[1],
        "HUILIU_SMS_HTTP_API_KEY": API_KEY,
        "HUILIU_SMS_MAX_ATTEMPTS": "3",
        "HUILIU_SMS_RETRY_BACKOFF_SECONDS": "0.2",
    }
    command = [sys.executable, "-m", "celery", "-A", "core.worker", "worker", "--pool", "threads"]
    command += ["--concurrency", "2", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    process = spawn(command, env=env, log_path=tmp_path / "worker.log", cwd=ROOT)
    yield settings.model_copy(update={"redis_url": broker})
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def test_a_flaky_gateway_gets_the_message_exactly_once_and_a_dead_one_leaves_it_failed(
    db: Database, worker: Settings, gateway: tuple[FakeGateway, str], redis_server: EmbeddedServer
) -> None:
    fake, _ = gateway
    client = aioredis.from_url(redis_server.url)
    omni = Omnichannel.create(db, None)
    sms = SmsService(db, omni, SinkSmsProvider(db), client, SmsConfig(), enqueue=celery_enqueue(worker))
    flaky = await sms.send(FLAKY, "您的工单 T-1 已受理", transactional=True)
    doomed = await sms.send(DOWN, "您的工单 T-2 已受理", transactional=True)

    async def status_of(message_id: str, wanted: str) -> bool:
        return (await sms.get(message_id)).status.value == wanted

    await eventually(lambda: status_of(flaky.id, "sent"), "the flaky gateway's message sent", within=40)
    await eventually(lambda: status_of(doomed.id, "failed"), "the dead gateway's message failed", within=20)
    await asyncio.sleep(0.5)  # a duplicate delivery, if there were one, would have happened by now

    assert fake.attempts[FLAKY] == 3 and list(fake.delivered) == [flaky.id]
    sent = await sms.get(flaky.id)
    assert sent.attempts == 3 and sent.provider_message_id == f"gw-{flaky.id}"
    failed = await sms.get(doomed.id)
    assert fake.attempts[DOWN] == 3 and failed.attempts == 3 and "503" in (failed.error or "")
    page = await omni.timeline.page(failed.customer_id)
    assert [event.kind for event in page.events][:2] == ["message.failed", "message.out"]
    await client.aclose()


async def test_a_message_whose_enqueue_failed_is_kept_and_found_by_the_sweep(
    db: Database, redis_server: EmbeddedServer
) -> None:
    async def broker_down(message_id: str) -> None:
        raise ConnectionError("Redis is away")

    client = aioredis.from_url(redis_server.url)
    sms = SmsService(
        db, Omnichannel.create(db, None), SinkSmsProvider(db), client, SmsConfig(), enqueue=broker_down
    )
    message = await sms.send("13811112222", "您的工单已受理", transactional=True)
    assert message.status.value == "queued"
    assert await sms.stalled(dt.timedelta(0)) == [message.id]
    assert await sms.deliver(message.id) is None  # what the swept task does
    assert (await sms.get(message.id)).status.value == "sent" and await sms.stalled(dt.timedelta(0)) == []
    await client.aclose()
