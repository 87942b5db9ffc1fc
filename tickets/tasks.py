"""Celery tasks of the tickets package: thin and idempotent, they call the service.

Celery runs tasks in worker threads (``--pool threads``); the service is async, so each worker thread keeps
its own event loop with its own MongoDB and Redis clients and service, created on first use and closed
when the worker shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from celery import signals

from core.bus import EventBus, connect_redis
from core.db import Database
from core.settings import Settings
from core.worker import app
from omnichannel import Omnichannel
from omnichannel.channels import create_channels
from tickets.service import TicketService, create_service
from tickets.webhooks import Webhooks

T = TypeVar("T")


@dataclass
class _Runtime:
    loop: asyncio.AbstractEventLoop
    db: Database
    redis: aioredis.Redis
    service: TicketService

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.redis.aclose())
            self.loop.run_until_complete(self.db.close())
        self.loop.close()


_local = threading.local()
_runtimes: list[_Runtime] = []
_runtimes_lock = threading.Lock()


def _runtime() -> _Runtime:
    runtime: _Runtime | None = getattr(_local, "runtime", None)
    if runtime is None:
        settings: Settings = app.conf.huiliu_settings
        assert settings.mongo_url is not None and settings.redis_url is not None
        db = Database.connect(settings.mongo_url, settings.db_name, settings.mongo_timeout_ms)
        redis = connect_redis(settings.redis_url)
        omni = Omnichannel.create(db, EventBus(redis, db), default_region=settings.default_region)
        # Customer notifications go out on their channel (SMS, WeChat); the rest lands on the timeline.
        notifier = create_channels(db, omni, redis, settings).notifier
        service = create_service(db, omni, settings, notifier=notifier)
        runtime = _Runtime(asyncio.new_event_loop(), db, redis, service)
        _local.runtime = runtime
        with _runtimes_lock:
            _runtimes.append(runtime)
    return runtime


def _run(work: Callable[[TicketService], Awaitable[T]]) -> T:
    runtime = _runtime()
    return runtime.loop.run_until_complete(work(runtime.service))


@signals.worker_shutdown.connect  # type: ignore[untyped-decorator]
def _close_runtimes(**_: Any) -> None:
    """The pool threads are idle by now, so their loops can be driven from here to close the clients."""
    with _runtimes_lock:
        while _runtimes:
            _runtimes.pop().close()


@app.task(name="tickets.tasks.check_sla_timer", ignore_result=True)  # type: ignore[untyped-decorator]
def check_sla_timer(timer_id: str) -> None:
    """Do what is due on one SLA timer (an ETA task; repeats are harmless)."""
    _run(lambda service: service.sla.check(timer_id))


@app.task(name="tickets.tasks.sweep", ignore_result=True)  # type: ignore[untyped-decorator]
def sweep() -> int:
    """The safety net, run by beat: every due timer and every unfinished ticket outbox."""
    return _run(lambda service: service.sweep())


@app.task(name="tickets.tasks.deliver_webhook", ignore_result=True)  # type: ignore[untyped-decorator]
def deliver_webhook(delivery_id: str) -> None:
    """One attempt at an outgoing webhook delivery (repeats are harmless: it is claimed under a lease)."""
    _run(lambda service: _webhooks(service).deliver(delivery_id))


@app.task(name="tickets.tasks.sweep_webhooks", ignore_result=True)  # type: ignore[untyped-decorator]
def sweep_webhooks() -> int:
    """The safety net for webhook deliveries whose task was lost."""
    return _run(lambda service: _webhooks(service).sweep())


def _webhooks(service: TicketService) -> Webhooks:
    assert service.webhooks is not None, "create_service always sets webhooks"
    return service.webhooks
