"""Outgoing webhooks against a real HTTP receiver: every matching ticket event is POSTed once, signed with
HMAC-SHA256 over a timestamp and the body; failures back off and end visibly ``failed``; a lost task is
found by the sweep; a repeated journal write or a repeated task sends nothing twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from celery import Celery

from core.db import Database
from core.embedded import EmbeddedServer
from core.settings import Settings
from omnichannel import Customer, Omnichannel
from tests.tickets.conftest import said
from tests.tickets.test_tickets_celery import REDIS_DB, Processes, until, wait_for_worker
from tickets import (
    FakeClock,
    InMemoryScheduler,
    RecordingNotifier,
    SystemClock,
    TicketsConfig,
    TicketService,
    TicketStore,
)
from tickets.webhooks import (
    CeleryDeliveryQueue,
    DeliveryQuery,
    InMemoryDeliveryQueue,
    WebhookInput,
    Webhooks,
    verify,
)


@dataclass
class Receiver:
    """An HTTP endpoint that records what it gets and answers ``status`` (or the next of ``script``)."""

    url: str = ""
    status: int = 200
    script: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        answer = self.script.pop(0) if self.script else self.status
        self.received.append({"headers": dict(request.headers), "body": body, "answer": answer})
        return web.Response(status=answer, text="ok" if answer < 300 else "nope")


async def serve(found: Receiver) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/hooks", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    return runner


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    runner = await serve(found)
    yield found
    await runner.cleanup()


SECRET = "receiver-shared-secret-0123456789"


async def test_a_ticket_event_is_posted_once_signed_and_with_its_delivery_id(
    tickets: TicketService,
    customer: Customer,
    receiver: Receiver,
    deliveries: InMemoryDeliveryQueue,
    db: Database,
) -> None:
    assert tickets.webhooks is not None
    hook = await tickets.webhooks.create(
        WebhookInput(url=receiver.url, events=["ticket.created", "ticket.status_changed"], secret=SECRET),
        "admin",
    )
    outcome = await tickets.from_intent(said(customer, "return_request", entities={"order_number": "1"}))
    assert outcome.ticket is not None
    [(delivery_id, at)] = deliveries.requested
    assert at is None and delivery_id.startswith(f"{hook.id}:")

    assert await tickets.webhooks.deliver(delivery_id) == "delivered"
    [request] = receiver.received
    headers, body = request["headers"], request["body"]
    assert verify(SECRET, headers["Huiliu-Signature"], body, now=time.time())
    assert not verify("another-secret-entirely", headers["Huiliu-Signature"], body, now=time.time())
    assert not verify(SECRET, headers["Huiliu-Signature"], body, now=time.time() + 600)  # a replay
    payload = json.loads(body)
    assert payload["id"] == headers["Huiliu-Delivery"] == delivery_id
    assert payload["event"] == headers["Huiliu-Event"] == "ticket.created"
    assert payload["data"]["number"] == outcome.ticket.number and payload["data"]["entities"] == {
        "order_number": "1"
    }

    # The same task again, and the journal writing the same events again (a replayed outbox): nothing.
    assert await tickets.webhooks.deliver(delivery_id) is None
    history = [doc async for doc in db["ticket_history"].find({"ticket_id": outcome.ticket.id})]
    replay = [
        {**doc, "key": doc["_id"], "customer_id": customer.id, "channel": "internal"} for doc in history
    ]
    await tickets.journal.write(replay)
    assert len(deliveries.requested) == 1 and len(receiver.received) == 1
    [done] = await tickets.webhooks.history(hook.id, DeliveryQuery())
    assert (done.state, done.attempts, done.last_status) == ("delivered", 1, 200)


async def test_a_failing_receiver_is_retried_with_backoff_then_marked_failed(
    db: Database, receiver: Receiver, clock: FakeClock
) -> None:
    queue = InMemoryDeliveryQueue()
    webhooks = Webhooks(db, clock=clock, queue=queue, max_attempts=3, backoff=dt.timedelta(seconds=10))
    hook = await webhooks.create(WebhookInput(url=receiver.url, events=["ticket.*"], secret=SECRET), "admin")
    event = {
        "key": "t1:2:0",
        "kind": "ticket.escalated",
        "ticket_id": "t1",
        "customer_id": "c1",
        "actor": {"type": "system"},
        "body": {"level": 1},
        "ts": clock.now(),
    }
    await webhooks.record([event, {**event, "key": "t1:2:1", "kind": "call.started"}])
    [(delivery_id, _)] = queue.requested
    receiver.status = 503

    assert await webhooks.deliver(delivery_id) == "pending"
    assert queue.requested[-1] == (delivery_id, clock.now() + dt.timedelta(seconds=10))
    assert await webhooks.deliver(delivery_id) is None  # not due yet
    clock.advance(seconds=10)
    assert await webhooks.deliver(delivery_id) == "pending"
    assert queue.requested[-1] == (delivery_id, clock.now() + dt.timedelta(seconds=20))
    clock.advance(seconds=20)
    assert await webhooks.deliver(delivery_id) == "failed"
    [failed] = await webhooks.history(hook.id, DeliveryQuery(state="failed"))
    assert failed.attempts == 3 and [attempt.status for attempt in failed.log] == [503, 503, 503]
    assert failed.last_error == "HTTP 503" and failed.failed_at == clock.now()
    ids = {request["headers"]["Huiliu-Delivery"] for request in receiver.received}
    assert ids == {delivery_id} and [r["headers"]["Huiliu-Attempt"] for r in receiver.received] == [
        "1",
        "2",
        "3",
    ]

    # The admin fixes the receiver and sends it again; a task that got lost is found by the sweep.
    receiver.status = 200
    queue.requested.clear()
    retried = await webhooks.retry(delivery_id)
    assert retried.state == "pending" and queue.requested == [(delivery_id, None)]
    assert await webhooks.sweep() == 0  # within the grace its own task has
    clock.advance(seconds=6)
    assert await webhooks.sweep() == 1
    [delivered] = await webhooks.history(hook.id, DeliveryQuery())
    assert delivered.state == "delivered" and len(receiver.received) == 4


async def test_with_a_real_worker_deliveries_survive_its_death_and_failures_show(
    settings: Settings,
    redis_server: EmbeddedServer,
    tmp_path: Path,
    db: Database,
    omni: Omnichannel,
    customer: Customer,
    config: TicketsConfig,
    receiver: Receiver,
) -> None:
    broker = f"redis://127.0.0.1:{redis_server.port}/{REDIS_DB + 1}"
    redis.Redis.from_url(broker).flushdb()
    (tmp_path / "tickets.yaml").write_text(
        "webhook_backoff_seconds: 1\nwebhook_max_attempts: 3\nwebhook_sweep_seconds: 1\n"
    )
    assert settings.mongo_url is not None
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUILIU_")},
        "HUILIU_MONGO_URL": settings.mongo_url,
        "HUILIU_REDIS_URL": broker,
        "HUILIU_DB_NAME": settings.db_name,
        "HUILIU_DATA_DIR": str(tmp_path),
        "HUILIU_SECRET_KEY": "test-secret-key-not-for-production",
    }
    processes = Processes(env, tmp_path)
    down = Receiver(status=503)
    down_runner = await serve(down)
    try:
        processes.start("beat", "beat", "--schedule", str(tmp_path / "beat-schedule"))
        processes.worker("first")
        producer = Celery("test-producer", broker=broker)
        webhooks = Webhooks(db, clock=SystemClock(), queue=CeleryDeliveryQueue(producer), max_attempts=3)
        tickets = TicketService(
            TicketStore(db),
            omni,
            config,
            clock=SystemClock(),
            notifier=RecordingNotifier(),
            scheduler=InMemoryScheduler(),
            webhooks=webhooks,
        )
        flaky = await webhooks.create(
            WebhookInput(url=receiver.url, events=["ticket.created"], secret=SECRET), "admin"
        )
        broken = await webhooks.create(
            WebhookInput(url=down.url, events=["ticket.created"], secret=SECRET), "admin"
        )
        wait_for_worker(producer, "first")
        receiver.script = [500]  # the first attempt fails; its retry is due a second later

        outcome = await tickets.from_intent(said(customer, "return_request", entities={"order_number": "9"}))
        assert outcome.ticket is not None

        async def first_attempt_failed() -> bool:
            return len(receiver.received) >= 1

        await until(first_attempt_failed, 15, "the first attempt")
        processes.kill("first")  # the retry's ETA task dies with the worker
        processes.worker("second")

        async def state_of(hook_id: str, state: str) -> list[Any]:
            return await webhooks.history(hook_id, DeliveryQuery(state=state))  # type: ignore[arg-type]

        [delivered] = await until(
            lambda: state_of(flaky.id, "delivered"), 45, "the delivery after the restart"
        )
        [failed] = await until(lambda: state_of(broken.id, "failed"), 45, "the failing receiver given up")
        await asyncio.sleep(2)  # duplicate tasks and sweeps keep running meanwhile
        answers = [request["answer"] for request in receiver.received]
        assert answers == [500, 200], "sent twice or lost"
        assert len({request["headers"]["Huiliu-Delivery"] for request in receiver.received}) == 1
        assert delivered.attempts == 2 and delivered.delivered_at is not None
        assert failed.attempts == 3 and failed.last_error == "HTTP 503" and len(down.received) == 3
        # The second retry waits twice the first one's backoff (the first waited for the restart).
        assert failed.log[2].at - failed.log[1].at >= dt.timedelta(seconds=1.9)
    finally:
        processes.stop_all()
        await down_runner.cleanup()
