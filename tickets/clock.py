"""Time as a dependency: the services ask a ``Clock`` for "now", so tests can run a 30-minute SLA in seconds.

``SystemClock`` is the real one; ``FakeClock`` only moves when a test moves it.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from core.db import utcnow


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Timezone-aware UTC, millisecond precision (what BSON stores)."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return utcnow()


class FakeClock:
    """A clock that stands still until ``advance`` or ``set`` moves it."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start")
        self._now = _millis(start.astimezone(dt.UTC))

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, delta: dt.timedelta | None = None, **units: float) -> dt.datetime:
        """Move forward by ``delta`` or by keyword units (``minutes=24``); returns the new now."""
        step = delta if delta is not None else dt.timedelta(**units)
        if step < dt.timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._now = _millis(self._now + step)
        return self._now

    def set(self, when: dt.datetime) -> None:
        self._now = _millis(when.astimezone(dt.UTC))


def _millis(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
