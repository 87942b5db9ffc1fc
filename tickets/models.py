"""Tickets as typed data: the ticket, its status machine, workflow progress, dispatch decisions, staff
profiles, SLA timers and notifications. No I/O here."""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnichannel import Actor, Channel

Language = Literal["zh", "en"]


class Text(BaseModel):
    """A message in both languages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zh: str
    en: str

    def __call__(self, language: str | None) -> str:
        return self.en if language == "en" else self.zh


class TicketStatus(enum.StrEnum):
    new = "new"
    open = "open"
    pending_customer = "pending-customer"
    pending_internal = "pending-internal"
    resolved = "resolved"
    closed = "closed"
    reopened = "reopened"


_WORKING = {TicketStatus.open, TicketStatus.pending_customer, TicketStatus.pending_internal}
ALLOWED_TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    TicketStatus.new: frozenset(_WORKING | {TicketStatus.resolved, TicketStatus.closed}),
    TicketStatus.open: frozenset(_WORKING - {TicketStatus.open} | {TicketStatus.resolved}),
    TicketStatus.pending_customer: frozenset(
        _WORKING - {TicketStatus.pending_customer} | {TicketStatus.resolved}
    ),
    TicketStatus.pending_internal: frozenset(
        _WORKING - {TicketStatus.pending_internal} | {TicketStatus.resolved}
    ),
    TicketStatus.resolved: frozenset({TicketStatus.closed, TicketStatus.reopened}),
    TicketStatus.closed: frozenset({TicketStatus.reopened}),
    TicketStatus.reopened: frozenset(_WORKING | {TicketStatus.resolved}),
}
"""Which status may follow which; anything else is refused with 409 ``invalid_transition``."""


class Priority(enum.StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"

    @property
    def rank(self) -> int:
        return list(Priority).index(self)


class Reason(BaseModel):
    """Why the priority is what it is (same shape as the NLU's reasons)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=64)
    zh: str = ""
    en: str = ""


# ------------------------------------------------------------------------------------------- dispatch


class Excluded(BaseModel):
    user_id: str
    username: str
    why: str


class DispatchDecision(BaseModel):
    """Why a ticket (or a workflow step) went to whom: the rule, who could have had it, who could not and
    why, and how the pick was made."""

    rule: str
    department: str
    assignee_id: str | None
    assignee_name: str | None
    strategy: str
    eligible: list[str] = []
    excluded: list[Excluded] = []
    summary: str
    at: dt.datetime


class Shift(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


class StaffProfile(BaseModel):
    """What dispatch and escalation need to know about a user: where they work, what they can do, when,
    and how to reach them."""

    model_config = ConfigDict(extra="forbid")

    user_id: str
    username: str
    display_name: str = ""
    departments: list[str] = []
    skills: list[str] = []
    languages: list[Language] = ["zh"]
    regions: list[str] = []
    phone: str | None = Field(default=None, description="E.164; escalation SMS go here")
    shifts: list[Shift] = Field(default=[], description="Empty: always on shift")
    timezone: str = "Asia/Shanghai"
    max_open: int = Field(default=20, ge=1, le=1000)
    lead_of: list[str] = Field(default=[], description="Departments this person leads")
    supervisor_of: list[str] = Field(default=[], description="Departments supervised; '*' for all")
    active: bool = True


class StaffInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str = Field(default="", max_length=128)
    departments: list[str] = Field(default=[], max_length=20)
    skills: list[str] = Field(default=[], max_length=50)
    languages: list[Language] = ["zh"]
    regions: list[str] = Field(default=[], max_length=50)
    phone: str | None = Field(default=None, max_length=32)
    shifts: list[Shift] = Field(default=[], max_length=21)
    timezone: str = "Asia/Shanghai"
    max_open: int = Field(default=20, ge=1, le=1000)
    lead_of: list[str] = []
    supervisor_of: list[str] = []
    active: bool = True


# ------------------------------------------------------------------------------------------- workflow


class StepState(enum.StrEnum):
    pending = "pending"  # not reached (yet)
    waiting = "waiting"  # a join with some branches arrived, waiting for the others
    active = "active"
    done = "done"
    rejected = "rejected"
    handed_back = "handed_back"  # handed back; active again once the step it went to is done
    cancelled = "cancelled"
    skipped = "skipped"  # never reached: the workflow went another way


class StepRun(BaseModel):
    step: str
    title: Text
    department: str
    kind: Literal["task", "approval"]
    state: StepState
    round: int = 1
    assignee_id: str | None = None
    assignee_name: str | None = None
    dispatch: DispatchDecision | None = None
    arrived_from: list[str] = []
    return_to: str | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    note: str = ""


class WorkflowStatus(enum.StrEnum):
    running = "running"
    completed = "completed"
    rejected = "rejected"


class WorkflowRun(BaseModel):
    template: str
    version: int
    title: Text
    status: WorkflowStatus
    facts: dict[str, Any]
    steps: dict[str, StepRun]
    started_at: dt.datetime
    completed_at: dt.datetime | None = None


# ------------------------------------------------------------------------------- collaboration, SLA


class CollaborationStatus(enum.StrEnum):
    open = "open"
    answered = "answered"


class Collaboration(BaseModel):
    id: str
    ticket_id: str
    department: str
    question: str
    status: CollaborationStatus
    requested_by: Actor
    requested_at: dt.datetime
    answer: str | None = None
    answered_by: Actor | None = None
    answered_at: dt.datetime | None = None


class TimerState(enum.StrEnum):
    running = "running"
    paused = "paused"
    met = "met"
    cancelled = "cancelled"


class EscalationStep(BaseModel):
    """One rung of an escalation chain: who is told, how, and how long after the breach."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: Literal["assignee", "department_lead", "supervisor"]
    channel: Literal["web", "sms"] = "web"
    after_minutes: float = Field(default=0, ge=0)


class SlaTimer(BaseModel):
    id: str
    ticket_id: str
    kind: Literal["first_response", "resolution", "step", "collaboration"]
    label: str
    department: str | None
    state: TimerState
    started_at: dt.datetime
    due_at: dt.datetime
    remind_at: dt.datetime | None
    reminded_at: dt.datetime | None
    breached_at: dt.datetime | None
    level: int
    chain: list[EscalationStep]
    stopped_at: dt.datetime | None


# --------------------------------------------------------------------------------------------- ticket


class Csat(BaseModel):
    """The customer's satisfaction with one resolution (``cycle``: the resolution it is about)."""

    cycle: int
    channel: str
    requested_at: dt.datetime
    score: int | None = Field(default=None, ge=1, le=5)
    comment: str = ""
    answered_at: dt.datetime | None = None


class Ticket(BaseModel):
    id: str
    number: str
    customer_id: str
    channel: Channel
    conversation_id: str | None
    category: str
    intent: str | None
    subject: str
    description: str
    language: Language
    entities: dict[str, str]
    priority: Priority
    priority_reasons: list[Reason]
    status: TicketStatus
    department: str | None
    assignee_id: str | None
    assignee_name: str | None
    watchers: list[str]
    dispatch: DispatchDecision | None
    reassign_count: int
    bounce_count: int
    appended_count: int
    workflow: WorkflowRun | None
    collaborations: list[Collaboration]
    created_by: Actor
    created_at: dt.datetime
    updated_at: dt.datetime
    first_response_at: dt.datetime | None
    resolved_at: dt.datetime | None
    closed_at: dt.datetime | None
    version: int
    reopen_count: int = 0
    csat: Csat | None = None


class TicketPage(BaseModel):
    tickets: list[Ticket]
    next_cursor: str | None


class HistoryEntry(BaseModel):
    ticket_id: str
    ts: dt.datetime
    kind: str
    actor: Actor
    body: dict[str, Any]


_ENTITY_KEY = r"^[a-z][a-z0-9_]{0,39}$"


class NewTicket(BaseModel):
    """A ticket an agent opens by hand."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str
    category: str = Field(min_length=1, max_length=64)
    subject: str = Field(min_length=1, max_length=256)
    description: str = Field(default="", max_length=10_000)
    priority: Priority = Priority.normal
    priority_reasons: list[Reason] = []
    channel: Channel = Channel.internal
    conversation_id: str | None = None
    intent: str | None = Field(default=None, max_length=64)
    entities: dict[str, str] = {}
    language: Language | None = None
    department: str | None = None
    workflow: str | None = Field(default=None, description="Workflow template to start")
    facts: dict[str, Any] = Field(default={}, description="Facts the workflow's conditions read")

    @field_validator("entities")
    @classmethod
    def _entity_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_entities(value)


class IntentSignal(BaseModel):
    """What a channel learnt from the customer (the NLU ``Analysis`` adapted): the ticket engine decides
    whether it makes a ticket, joins an open one, or needs more information first."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str
    intent: str = Field(min_length=1, max_length=64)
    confidence: float = Field(ge=0.0, le=1.0)
    entities: dict[str, str] = Field(default={}, description="order_number, phone, product, date, amount…")
    priority: Priority = Priority.normal
    reasons: list[Reason] = []
    text: str = Field(default="", max_length=10_000)
    channel: Channel
    conversation_id: str | None = None
    language: Language | None = None
    facts: dict[str, Any] = Field(
        default={}, description="From CRM/ERP: paid, stock… for workflow conditions"
    )
    idempotency_key: str | None = Field(
        default=None, max_length=200, description="The same signal delivered twice changes nothing twice"
    )

    @field_validator("entities")
    @classmethod
    def _entity_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_entities(value)


def _check_entities(value: dict[str, str]) -> dict[str, str]:
    bad = [key for key in value if not re.match(_ENTITY_KEY, key)]
    if bad:
        raise ValueError(f"entity names must be lower_snake_case: {', '.join(bad)}")
    if len(value) > 30:
        raise ValueError("at most 30 entities")
    return {key: str(item)[:256] for key, item in value.items()}


class MissingField(BaseModel):
    field: str
    prompt: Text


class IntentOutcome(BaseModel):
    """``created`` / ``appended``: the ticket; ``needs_input``: what to ask (``prompt`` in the customer's
    language, for the IVR or the bot to say); ``ignored``: why no ticket."""

    action: Literal["created", "appended", "needs_input", "ignored"]
    ticket: Ticket | None = None
    missing: list[MissingField] = []
    prompt: str | None = None
    reason: str = ""


class TicketQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(default=None, description="Comma-separated statuses")
    assignee_id: str | None = Field(default=None, description="A user id, or 'me'")
    department: str | None = None
    customer_id: str | None = None
    category: str | None = None
    intent: str | None = None
    priority: Priority | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None


# ------------------------------------------------------------------------------------- notifications


NotificationChannel = Literal["web", "sms", "wechat", "email", "webchat"]


class Recipient(BaseModel):
    kind: Literal["staff", "customer"]
    user_id: str | None = None
    customer_id: str | None = None
    name: str | None = None
    address: str | None = Field(default=None, description="Phone (E.164), openid, email… for the channel")


class Notification(BaseModel):
    """A message to a person. ``idempotency_key`` is stable across retries: a provider must send each key
    once."""

    idempotency_key: str
    channel: NotificationChannel
    recipient: Recipient
    template: str
    language: Language
    text: str
    ticket_id: str
    customer_id: str
    params: dict[str, Any] = {}


# ------------------------------------------------------------------------------------ the customer side


class CustomerMessage(BaseModel):
    """A message a customer sent on a channel, as the channels hand it to ``on_customer_message``."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str
    channel: Channel
    conversation_id: str | None = None
    text: str = Field(max_length=10_000)
    message_key: str = Field(
        min_length=1, max_length=200, description="The channel's id of the message: a repeat changes nothing"
    )


class CustomerMessageOutcome(BaseModel):
    """``csat_recorded``: it was a rating (the channel need do nothing more with it); ``reopened``: it
    reopened a resolved ticket; ``resumed``: it answered a ticket waiting for the customer; ``none``: no
    ticket is concerned. Except after a rating, the channel carries on with its own handling (the intent
    pipeline). ``notified`` is what the customer has been sent about it through the ticket notifier (the
    thanks, "reopened"): the channel must not send it again."""

    action: Literal["csat_recorded", "reopened", "resumed", "none"]
    ticket: Ticket | None = None
    notified: str | None = None


class ProgressStep(BaseModel):
    title: str
    department: str
    state: StepState
    state_label: str
    started_at: dt.datetime | None
    completed_at: dt.datetime | None


class ProgressEvent(BaseModel):
    at: dt.datetime
    kind: str
    text: str


class ProgressView(BaseModel):
    """What the customer's progress page shows of one ticket, in the ticket's language."""

    number: str
    subject: str
    language: Language
    status: str
    status_label: str
    department: str
    created_at: dt.datetime
    updated_at: dt.datetime
    resolved_at: dt.datetime | None
    workflow: str | None
    steps: list[ProgressStep]
    events: list[ProgressEvent]
    expires_at: dt.datetime
