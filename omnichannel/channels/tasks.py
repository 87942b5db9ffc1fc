"""Celery tasks of the channels: thin and idempotent, they call ``SmsService.deliver``.

Like ``tickets.tasks``, each worker thread keeps its own event loop with its own clients, created on
first use.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from typing import Any

from celery import Task

from core.settings import Settings
from core.worker import app
from omnichannel.channels.sms_service import SmsService
from omnichannel.channels.wiring import DELIVER_TASK, SWEEP_TASK, worker_sms_service

# Longer than the longest retry countdown of the default backoff, so a waiting retry is not doubled.
STALLED_AFTER_SECONDS = 300

_local = threading.local()


def _service() -> tuple[asyncio.AbstractEventLoop, SmsService]:
    runtime: tuple[asyncio.AbstractEventLoop, SmsService] | None = getattr(_local, "runtime", None)
    if runtime is None:
        settings: Settings = app.conf.huiliu_settings
        loop = asyncio.new_event_loop()
        runtime = (loop, loop.run_until_complete(worker_sms_service(settings)))
        _local.runtime = runtime
    return runtime


@app.task(name=DELIVER_TASK, bind=True, ignore_result=True, max_retries=None)  # type: ignore[untyped-decorator]
def deliver_sms(self: Task[Any, Any], message_id: str) -> None:
    """One delivery attempt; retried with backoff (and after the number's rate window) until sent or
    failed for good."""
    loop, service = _service()
    wait = loop.run_until_complete(service.deliver(message_id))
    if wait is not None:
        raise self.retry(countdown=wait)


@app.task(name=SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def sweep_sms() -> int:
    """The safety net, run by beat: hand every stalled message to a delivery task again (a duplicate task
    is harmless — ``deliver`` claims the message first)."""
    loop, service = _service()
    stalled = loop.run_until_complete(service.stalled(dt.timedelta(seconds=STALLED_AFTER_SECONDS)))
    for message_id in stalled:
        deliver_sms.delay(message_id)
    return len(stalled)
