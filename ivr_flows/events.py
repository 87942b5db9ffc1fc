"""Where the executor's facts go when it is given a sink: ``ivr.step`` for every node a call passes,
``call.queued`` when it waits for an agent. Without one (on real calls) they go through
``call.log_event``: the call's own journal writes them on the caller's timeline, in order with the call's
other facts and keyed by the call. ``RecordingSink`` keeps them in memory for tests.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class CallEvent:
    kind: str  # "ivr.step" | "call.queued"
    call_id: str
    caller: str
    sequence: int  # the step number within the call
    ts: dt.datetime
    body: dict[str, Any]

    @property
    def idempotency_key(self) -> str:
        return f"call:{self.call_id}:{self.kind}:{self.sequence}"


class CallEventSink(Protocol):
    async def emit(self, event: CallEvent) -> None:
        """Store ``event``; may raise (the executor logs it and carries on with the call)."""


class RecordingSink:
    """Keeps events in memory, in order (tests)."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    async def emit(self, event: CallEvent) -> None:
        self.events.append(event)

    def of_call(self, call_id: str, kind: str = "ivr.step") -> list[CallEvent]:
        return [event for event in self.events if event.call_id == call_id and event.kind == kind]
