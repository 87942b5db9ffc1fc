"""When an SLA timer next needs a look, somebody must look: ``Scheduler`` asks for a check at a time.

``CeleryScheduler`` sends an ETA task (``tickets.tasks.check_sla_timer``) to the worker for checks due
soon; ``InMemoryScheduler`` keeps the requests for tests that drive a ``FakeClock``. Neither has to be
reliable: a lost or doubled request is harmless because the periodic sweep finds every due timer in
MongoDB and every check is an atomic, idempotent state transition (``tickets.sla``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
from collections.abc import Awaitable, Callable
from typing import Protocol

from celery import Celery

from core.log import get_logger

log = get_logger(__name__)

CHECK_TASK = "tickets.tasks.check_sla_timer"

Check = Callable[[str], Awaitable[None]]


class Scheduler(Protocol):
    async def schedule(self, timer_id: str, at: dt.datetime) -> None:
        """Ask for ``check(timer_id)`` at ``at`` (best effort)."""
        ...


class CeleryScheduler:
    """ETA tasks for the checks due within ``horizon``; later ones are left to the periodic sweep.

    Why a horizon: a worker holds every ETA task it has received until its time, and Redis hands a task
    not acknowledged within its visibility timeout (an hour) to a worker again — so ETA tasks for every
    open ticket's distant resolution target pile up, are redelivered hourly, and slow the checks that are
    due now (measured by bench/tickets.py). The sweep runs every second and finds every due timer in
    MongoDB anyway.
    """

    def __init__(self, celery: Celery, horizon: dt.timedelta = dt.timedelta(minutes=30)) -> None:
        self.celery = celery
        self.horizon = horizon

    async def schedule(self, timer_id: str, at: dt.datetime) -> None:
        if at - dt.datetime.now(dt.UTC) > self.horizon:
            return
        try:
            await asyncio.to_thread(self.celery.send_task, CHECK_TASK, args=[timer_id], eta=at, retry=False)
        except Exception as exc:  # the sweep is the safety net; a lost ETA only costs up to one sweep
            log.warning("sla.schedule_failed", timer_id=timer_id, error=str(exc))


class InMemoryScheduler:
    """Holds requested checks until ``run_due`` is called with a time at or after theirs."""

    def __init__(self) -> None:
        self._queue: list[tuple[dt.datetime, int, str]] = []
        self._seq = 0
        self.check: Check | None = None

    def bind(self, check: Check) -> None:
        self.check = check

    async def schedule(self, timer_id: str, at: dt.datetime) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, timer_id))

    async def run_due(self, now: dt.datetime) -> int:
        """Run the checks due at ``now`` (including those they schedule for no later); returns how many."""
        assert self.check is not None, "bind() the check first"
        ran = 0
        while self._queue and self._queue[0][0] <= now:
            _, _, timer_id = heapq.heappop(self._queue)
            await self.check(timer_id)
            ran += 1
        return ran
