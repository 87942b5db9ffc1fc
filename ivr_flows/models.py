"""Runtime and wire models of the IVR: the per-call context carried to the agent's screen-pop, what the
executor hands to the queue and ticket gateways, and stored flow versions. Typed, JSON-serialisable with
``model_dump(mode="json")``, no I/O."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ivr_flows.expressions import Value

Priority = Literal["low", "normal", "high", "urgent"]
OverrideState = Literal["open", "closed"]


class StepRecord(BaseModel):
    """One executed node: what the caller gave it and where it led."""

    step: int
    node: str
    type: str
    input: Any = None
    result: str
    next: str | None = None
    at: dt.datetime


class IntentRecord(BaseModel):
    """What the NLU made of something the caller said (or typed)."""

    node: str
    text: str
    intent: str
    confidence: float
    entities: dict[str, str] = {}
    priority: Priority = "normal"


class CallContext(BaseModel):
    """Everything the IVR learnt on one call, for the agent who answers it (screen-pop) and the timeline.

    ``outcome`` is set when the flow ends: ``queued`` (an agent took the call), ``transferred``,
    ``hung_up`` (by the caller), ``completed`` (the flow hung up), ``voicemail``, ``callback`` or ``failed``.
    """

    call_id: str
    caller: str
    called: str
    flow: str
    version: int
    language: str
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    outcome: str | None = None
    path: list[StepRecord] = []
    variables: dict[str, Value] = {}
    intents: list[IntentRecord] = []
    ticket: TicketReceipt | None = None
    queue: str | None = None


class QueueRequest(BaseModel):
    """A call waiting for an agent: the ACD routes it by ``skills`` and ``priority``."""

    call_id: str
    caller: str
    queue: str
    skills: list[str]
    priority: Priority
    max_wait: float
    context: CallContext
    # the caller's customer and the call's conversation when the call's journal has them (the ACD then
    # need not find them again); VIP callers go to senior agents first
    customer_id: str | None = None
    conversation_id: str | None = None
    vip: bool = False


QueueOutcome = Literal["connected", "timeout", "unavailable"]


class QueuePosition(BaseModel):
    """Where a waiting call stands: 1 = next; the expected wait from the queue's recent handle times."""

    position: int = Field(ge=1)
    expected_wait_seconds: float = Field(ge=0)


class CallbackRequest(BaseModel):
    call_id: str
    number: str
    queue: str
    context: CallContext


class TicketRequest(BaseModel):
    """A ticket to open from what the call collected; retried safely with ``idempotency_key``."""

    call_id: str
    caller: str
    intent: str
    confidence: float = Field(ge=0.0, le=1.0)
    entities: dict[str, str] = {}
    text: str = ""
    priority: Priority = "normal"
    language: str = "zh"
    idempotency_key: str
    context: CallContext


class TicketReceipt(BaseModel):
    action: Literal["created", "appended", "needs_input", "ignored"]
    ticket_id: str | None = None
    number: str | None = None
    reason: str = ""


class FlowVersion(BaseModel):
    """A stored version of a flow (the ``flows`` collection)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int
    yaml: str
    author: str
    created_at: dt.datetime
    active: bool
    activated_at: dt.datetime | None = None
    activated_by: str | None = None
    previous_active: int | None = None
    checksum: str


class HoursOverride(BaseModel):
    """A flow's ``business_hours`` nodes answer ``state`` until ``until``, whatever their calendar says:
    closed for a typhoon or a system outage, open late for a promotion (or for ``huiliu demo traffic``)."""

    flow: str
    state: OverrideState
    until: dt.datetime
    reason: str
    set_by: str
    set_at: dt.datetime

    def in_force(self, now: dt.datetime) -> bool:
        """Still overriding the calendar at ``now`` (it ends by itself at ``until``)."""
        return now < self.until


class FlowSummary(BaseModel):
    name: str
    active_version: int | None
    latest_version: int
    versions: int


CallContext.model_rebuild()
