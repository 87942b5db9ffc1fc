"""Where a flow hands the caller on: the ACD's queues (``QueueGateway``) and the ticket service
(``TicketGateway``). Interfaces with working in-memory implementations side by side, and the adapter to
``tickets.TicketService``.

The ACD (``agent_desktop/``) implements ``QueueGateway`` when it arrives; until then a deployment can run
``InMemoryQueueGateway``, which only records.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal, Protocol

from ivr_flows.models import (
    CallbackRequest,
    QueueOutcome,
    QueuePosition,
    QueueRequest,
    TicketReceipt,
    TicketRequest,
)

if TYPE_CHECKING:
    from omnichannel import Omnichannel
    from tickets import TicketService


class QueueGateway(Protocol):
    async def enqueue(self, request: QueueRequest) -> None:
        """Put the call in its queue; returns at once (the screen-pop travels in ``request.context``)."""

    async def wait(self, call_id: str, max_wait: float) -> QueueOutcome:
        """Wait until an agent has the call (``connected``: it is the ACD's now), ``max_wait`` seconds
        passed (``timeout``) or the queue cannot take it (``unavailable``: closed, no agent logged in)."""

    async def withdraw(self, call_id: str, reason: str) -> None:
        """Take the call out of its queue (overflow, caller hung up); a no-op when it is not queued."""

    async def position(self, call_id: str) -> QueuePosition | None:
        """Where the waiting call stands in its queue (said to the caller); None once it left the queue
        or when the queue cannot tell."""

    async def request_callback(self, request: CallbackRequest) -> None:
        """The caller accepted a callback: an agent of ``request.queue`` calls ``request.number`` later."""


class TicketGateway(Protocol):
    async def open(self, request: TicketRequest) -> TicketReceipt:
        """Open a ticket (or add to the caller's open one for the same intent). Idempotent per
        ``request.idempotency_key``."""


class InMemoryQueueGateway:
    """A working queue without agents: records what was queued; a call is ``connected`` when the test (or
    a demo) calls ``connect``, or at once with ``outcome="connected"``; ``max_wait`` is scaled by
    ``time_scale`` so tests need not wait minutes."""

    def __init__(
        self, *, outcome: QueueOutcome | Literal["wait"] = "connected", time_scale: float = 1.0
    ) -> None:
        self.outcome = outcome
        self.time_scale = time_scale
        self.queued: list[QueueRequest] = []
        self.withdrawn: list[tuple[str, str]] = []
        self.callbacks: list[CallbackRequest] = []
        self._connected: dict[str, asyncio.Event] = {}
        self.waiting = asyncio.Event()

    async def enqueue(self, request: QueueRequest) -> None:
        self.queued.append(request)
        self._connected.setdefault(request.call_id, asyncio.Event())

    async def wait(self, call_id: str, max_wait: float) -> QueueOutcome:
        if self.outcome != "wait":
            return self.outcome
        event = self._connected.setdefault(call_id, asyncio.Event())
        self.waiting.set()
        try:
            async with asyncio.timeout(max_wait * self.time_scale):
                await event.wait()
        except TimeoutError:
            return "timeout"
        return "connected"

    def connect(self, call_id: str) -> None:
        """An agent answers ``call_id``."""
        self._connected.setdefault(call_id, asyncio.Event()).set()

    async def position(self, call_id: str) -> QueuePosition | None:
        """In order of arrival among the calls neither connected nor withdrawn; two minutes a call."""
        gone = {withdrawn for withdrawn, _ in self.withdrawn}
        waiting = [
            request.call_id
            for request in self.queued
            if request.call_id not in gone and not self._connected[request.call_id].is_set()
        ]
        if call_id not in waiting:
            return None
        place = waiting.index(call_id) + 1
        return QueuePosition(position=place, expected_wait_seconds=120.0 * place)

    async def withdraw(self, call_id: str, reason: str) -> None:
        self.withdrawn.append((call_id, reason))

    async def request_callback(self, request: CallbackRequest) -> None:
        self.callbacks.append(request)


class RecordingTicketGateway:
    """A working ticket desk in memory: numbers tickets ``T0001``…, one per idempotency key."""

    def __init__(self, *, fail: bool = False) -> None:
        self.requests: list[TicketRequest] = []
        self.fail = fail
        self._by_key: dict[str, TicketReceipt] = {}

    async def open(self, request: TicketRequest) -> TicketReceipt:
        if self.fail:
            raise ConnectionError("the ticket service is unreachable")
        self.requests.append(request)
        receipt = self._by_key.get(request.idempotency_key)
        if receipt is None:
            number = f"T{len(self._by_key) + 1:04d}"
            receipt = TicketReceipt(action="created", ticket_id=number.lower(), number=number)
            self._by_key[request.idempotency_key] = receipt
        return receipt


class TicketServiceGateway:
    """``TicketGateway`` on ``tickets.TicketService``: the caller's customer is found (or created) by
    phone number and the request becomes an ``IntentSignal`` on the voice channel."""

    def __init__(self, service: TicketService, omni: Omnichannel) -> None:
        self.service = service
        self.omni = omni

    async def open(self, request: TicketRequest) -> TicketReceipt:
        from omnichannel import Channel, Identity, IdentityKind, NewConversation
        from tickets import IntentSignal, Priority

        customer, _ = await self.omni.customers.resolve(
            [Identity(kind=IdentityKind.phone, value=request.caller)]
        )
        conversation, _ = await self.omni.conversations.open(
            customer.id, NewConversation(channel=Channel.voice, external_ref=request.call_id)
        )
        outcome = await self.service.from_intent(
            IntentSignal(
                customer_id=customer.id,
                intent=request.intent,
                confidence=request.confidence,
                entities=request.entities,
                priority=Priority(request.priority),
                text=request.text,
                channel=Channel.voice,
                conversation_id=conversation.id,
                language="en" if request.language == "en" else "zh",
                idempotency_key=request.idempotency_key,
            )
        )
        ticket = outcome.ticket
        return TicketReceipt(
            action=outcome.action,
            ticket_id=ticket.id if ticket else None,
            number=ticket.number if ticket else None,
            reason=outcome.reason or (outcome.prompt or ""),
        )
