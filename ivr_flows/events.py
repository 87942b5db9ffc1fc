"""Where the executor's facts go: ``ivr.step`` for every node a call passes, ``call.queued`` when it
waits for an agent. The default sink writes them on the caller's customer timeline (found or created by
phone number), in the call's conversation, with an idempotency key made of the call id and step number.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import Invalid
from core.log import get_logger
from omnichannel import (
    Actor,
    Channel,
    Identity,
    IdentityKind,
    NewConversation,
    NewEvent,
    Omnichannel,
)

log = get_logger(__name__)

IVR_ACTOR = Actor(type="system", name="ivr")


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
    """Keeps events in memory, in order (tests, ``huiliu flows simulate``)."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    async def emit(self, event: CallEvent) -> None:
        self.events.append(event)

    def of_call(self, call_id: str, kind: str = "ivr.step") -> list[CallEvent]:
        return [event for event in self.events if event.call_id == call_id and event.kind == kind]


class TimelineSink:
    """Appends events to the omnichannel timeline. Calls from a withheld number have no customer to
    attach to; their events are logged and dropped."""

    def __init__(self, omni: Omnichannel, *, remember: int = 10_000) -> None:
        self.omni = omni
        self.remember = remember
        self._targets: OrderedDict[str, tuple[str, str] | None] = OrderedDict()

    async def emit(self, event: CallEvent) -> None:
        target = await self._target(event)
        if target is None:
            return
        customer_id, conversation_id = target
        await self.omni.timeline.append(
            customer_id,
            NewEvent(
                kind=event.kind,
                channel=Channel.voice,
                conversation_id=conversation_id,
                ts=event.ts,
                body=event.body,
                idempotency_key=event.idempotency_key,
            ),
            IVR_ACTOR,
        )

    async def _target(self, event: CallEvent) -> tuple[str, str] | None:
        if event.call_id in self._targets:
            self._targets.move_to_end(event.call_id)
            return self._targets[event.call_id]
        target: tuple[str, str] | None = None
        try:
            customer, _ = await self.omni.customers.resolve(
                [Identity(kind=IdentityKind.phone, value=event.caller)]
            )
        except (Invalid, ValueError) as exc:
            log.warning("ivr.no_customer_for_caller", call_id=event.call_id, error=str(exc))
        else:
            conversation, _ = await self.omni.conversations.open(
                customer.id, NewConversation(channel=Channel.voice, external_ref=event.call_id)
            )
            target = (customer.id, conversation.id)
        self._targets[event.call_id] = target
        if len(self._targets) > self.remember:
            self._targets.popitem(last=False)
        return target
