"""Typed domain of the ACD: queues, agents and their states, contacts waiting for an agent, offers, the
screen-pop and the wallboard. Plain data, no I/O; every model serialises with ``model_dump(mode="json")``."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ivr_flows.models import HoursOverride
from omnichannel import Customer, TimelineEvent
from tickets import Ticket

QUEUE_ID_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
SKILL_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class AgentState(enum.StrEnum):
    """What the wallboard shows; derived from ``presence`` plus the agent's current call and chats."""

    offline = "offline"
    available = "available"
    on_call = "on_call"
    in_chat = "in_chat"
    wrap_up = "wrap_up"
    break_ = "break"


class Presence(enum.StrEnum):
    """What the agent (or the ACD, for wrap-up and a missed offer) chose."""

    offline = "offline"
    available = "available"
    wrap_up = "wrap_up"
    break_ = "break"


class Strategy(enum.StrEnum):
    longest_idle = "longest_idle"
    skills_best_level = "skills_best_level"
    sticky = "sticky"
    ring_all = "ring_all"


class ContactKind(enum.StrEnum):
    call = "call"
    chat = "chat"


class ContactStatus(enum.StrEnum):
    waiting = "waiting"
    routing = "routing"  # one node is choosing an agent for it right now
    offered = "offered"
    connected = "connected"
    ended = "ended"
    overflowed = "overflowed"  # left to voicemail or a callback
    withdrawn = "withdrawn"


# still in a queue: not yet connected to an agent, nor taken out
LIVE_CONTACT_STATUSES = (ContactStatus.waiting, ContactStatus.routing, ContactStatus.offered)

PRIORITY_RANK = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
ContactPriority = Literal["low", "normal", "high", "urgent"]


class Overflow(BaseModel):
    """Where a contact goes once it waited ``QueueConfig.max_wait_seconds``."""

    model_config = ConfigDict(extra="forbid")

    to: Literal["queue", "voicemail", "callback"]
    queue: str | None = Field(default=None, pattern=QUEUE_ID_PATTERN, description="For to=queue")


class QueueConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=QUEUE_ID_PATTERN)
    name: str = Field(default="", max_length=128)
    skills: dict[str, int] = Field(
        default_factory=dict, description="Skill → minimum level (1–5) an agent needs for this queue"
    )
    strategy: Strategy = Strategy.longest_idle
    priority: int = Field(default=0, ge=0, le=100, description="Higher queues are served first")
    max_wait_seconds: float = Field(default=300.0, gt=0, le=86_400)
    overflow: Overflow | None = None
    sticky_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="How long a contact waits for its last agent (sticky)"
    )
    sticky_lookback_hours: float = Field(default=72.0, gt=0, le=24 * 90)
    offer_timeout_seconds: float = Field(default=15.0, ge=0.2, le=300)
    wrap_up_seconds: float = Field(default=30.0, ge=0, le=3600)
    preference_seconds: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description="How long a contact waits for an agent with all its preferred skills (language, "
        "channel, VIP…) while such an agent is at work; then any agent the queue allows, best match first",
    )

    def model_post_init(self, __context: Any) -> None:
        for skill, level in self.skills.items():
            if not 1 <= level <= 5:
                raise ValueError(f"skill {skill!r}: level must be 1..5")


class QueuePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=128)
    skills: dict[str, int] | None = None
    strategy: Strategy | None = None
    priority: int | None = Field(default=None, ge=0, le=100)
    max_wait_seconds: float | None = Field(default=None, gt=0, le=86_400)
    overflow: Overflow | None = None
    sticky_seconds: float | None = Field(default=None, ge=0, le=3600)
    offer_timeout_seconds: float | None = Field(default=None, ge=0.2, le=300)
    wrap_up_seconds: float | None = Field(default=None, ge=0, le=3600)
    preference_seconds: float | None = Field(default=None, ge=0, le=3600)


class AgentSkills(BaseModel):
    """What an admin sets for an agent."""

    model_config = ConfigDict(extra="forbid")

    skills: dict[str, int] = Field(default_factory=dict, description="Skill → level 1–5")
    max_chats: int = Field(default=3, ge=0, le=20)
    call_blocks_chats: bool = True

    def model_post_init(self, __context: Any) -> None:
        for skill, level in self.skills.items():
            if not 1 <= level <= 5:
                raise ValueError(f"skill {skill!r}: level must be 1..5")


class Agent(BaseModel):
    user_id: str
    username: str
    display_name: str
    state: AgentState
    presence: Presence
    reason: str | None = None
    since: dt.datetime
    idle_since: dt.datetime
    skills: dict[str, int]
    max_chats: int
    call_blocks_chats: bool
    call: str | None = None
    chats: list[str] = []
    offer: str | None = None
    wrap_up_until: dt.datetime | None = None


StateName = Literal["available", "break", "offline"]


class StateEntry(BaseModel):
    """One change in an agent's state history: what they were doing from ``ts`` on, and why."""

    ts: dt.datetime
    state: AgentState
    presence: Presence
    reason: str | None = Field(description="The break reason code (missed_offer: an offer rang out)")


class StatePage(BaseModel):
    user_id: str
    states: list[StateEntry] = Field(description="Newest first")
    next_cursor: str | None


class StateChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: StateName
    reason: str | None = Field(default=None, max_length=64, description="Break reason code")


class NewContact(BaseModel):
    """A customer waiting for an agent (a queued call or a chat handed off by the bot)."""

    model_config = ConfigDict(extra="forbid")

    queue: str = Field(pattern=QUEUE_ID_PATTERN)
    kind: ContactKind
    customer_id: str
    conversation_id: str | None = None
    external_ref: str | None = Field(default=None, description="The call id for calls")
    priority: ContactPriority = "normal"
    skills: dict[str, int] = Field(
        default_factory=dict, description="Extra skills an agent must have, on top of the queue's"
    )
    preferred_skills: dict[str, int] = Field(
        default_factory=dict,
        description="Skills the best agent has (channel, language, intent team, VIP): preferred for the "
        "queue's preference_seconds, then a better match only ranks first",
    )
    context: dict[str, Any] = Field(default_factory=dict, description="IVR context: path, variables…")


class Contact(BaseModel):
    id: str
    queue: str
    kind: ContactKind
    status: ContactStatus
    customer_id: str
    conversation_id: str | None
    external_ref: str | None
    priority: ContactPriority
    skills: dict[str, int]
    preferred_skills: dict[str, int] = {}
    context: dict[str, Any]
    enqueued_at: dt.datetime
    queue_entered_at: dt.datetime
    offered_to: list[str] = []
    offer_expires_at: dt.datetime | None = None
    declined_by: list[str] = []
    declined_at: dt.datetime | None = None
    agent_id: str | None = None
    connected_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    end_cause: str | None = Field(
        default=None, description="Why a call ended on the phone side (hung up, unknown_destination, busy…)"
    )
    overflow: str | None = None
    overflow_notice: str | None = Field(default=None, description="The message telling a chat it overflowed")
    callback_number: str | None = Field(default=None, description="The number to call back (IVR callbacks)")
    callback_by: str | None = Field(default=None, description="The agent who took the callback")
    wrap_up_codes: list[str] = []


class Position(BaseModel):
    contact_id: str
    queue: str
    status: ContactStatus
    position: int | None = Field(description="1 = next; null once it left the queue")
    expected_wait_seconds: float | None


class WrapUp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    codes: list[str] = Field(min_length=1, max_length=10)
    note: str = Field(default="", max_length=2000)


class ScreenPop(BaseModel):
    """The one payload an agent gets with an offer: everything needed before saying hello."""

    contact: Contact
    customer: Customer
    history: list[TimelineEvent] = Field(description="Last N events of every channel, newest first")
    open_tickets: list[Ticket]
    ivr: dict[str, Any] = Field(description="path, variables, intents, ticket from the IVR (calls)")
    transcript: list[TimelineEvent] = Field(description="transcript.final of this conversation, oldest first")
    bot_summary: str | None
    offer_expires_at: dt.datetime | None
    decided_at: float = Field(description="Unix time of the routing decision (latency measurement)")


OUTBOUND_QUEUE_ID = "outbound"
"""The queue of calls agents dial themselves (``agent_desktop.outbound``): nobody waits in it, so it has no
service level, speed of answer or abandon rate."""


class QueueBoard(BaseModel):
    queue: str
    name: str
    waiting: int
    offered: int
    connected: int
    longest_wait_seconds: float
    answered: int = Field(description="Connected within the window")
    abandoned: int = Field(description="Left the queue before an agent answered, within the window")
    service_level: float | None = Field(
        description="Share answered within the threshold of answered + abandoned; null without contacts "
        "(and for the outbound queue, where nobody waits)"
    )
    asa_seconds: float | None = Field(description="Average speed of answer")
    abandon_rate: float | None


class AgentLoad(BaseModel):
    user_id: str
    username: str
    display_name: str
    state: AgentState
    chats: int
    max_chats: int


class IntentDeflection(BaseModel):
    intent: str = Field(description="What the conversation was about (the bot's main intent)")
    label: dict[str, str] = Field(description="The intent's name to show, zh and en")
    resolved: int
    handed_off: int
    abandoned: int = 0
    rate: float | None


class BotDeflection(BaseModel):
    resolved: int
    handed_off: int
    abandoned: int = Field(default=0, description="Left without a useful answer and without a person")
    rate: float | None = Field(
        description="resolved / (resolved + handed_off + abandoned); null without outcomes"
    )
    by_intent: list[IntentDeflection] = Field(
        default=[], description="The same per intent, most conversations first"
    )


class WallboardConfig(BaseModel):
    """What the supervisor tunes: the service-level goal, the windows and the alert thresholds."""

    model_config = ConfigDict(extra="forbid")

    sl_threshold_seconds: float = Field(default=20.0, gt=0, le=3600, description="Answered within this")
    sl_target: float = Field(default=0.8, ge=0, le=1, description="Alert when a queue's SL is below this")
    window_seconds: float = Field(default=3600.0, ge=60, le=7 * 86_400, description="SL, ASA, abandons")
    bot_window_seconds: float = Field(default=3600.0, ge=60, le=30 * 86_400)
    max_wait_seconds: float = Field(default=300.0, gt=0, le=86_400, description="Alert above this wait")
    bot_resolution_min: float = Field(default=0.7, ge=0, le=1, description="Alert below this bot rate")


class WallboardConfigPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sl_threshold_seconds: float | None = Field(default=None, gt=0, le=3600)
    sl_target: float | None = Field(default=None, ge=0, le=1)
    window_seconds: float | None = Field(default=None, ge=60, le=7 * 86_400)
    bot_window_seconds: float | None = Field(default=None, ge=60, le=30 * 86_400)
    max_wait_seconds: float | None = Field(default=None, gt=0, le=86_400)
    bot_resolution_min: float | None = Field(default=None, ge=0, le=1)


AlertRule = Literal["queue_wait", "bot_resolution", "service_level"]


class Alert(BaseModel):
    id: str
    rule: AlertRule
    subject: str = Field(description="The queue id, or 'bot'")
    value: float
    threshold: float
    active: bool
    raised_at: dt.datetime
    cleared_at: dt.datetime | None = None


class Wallboard(BaseModel):
    at: dt.datetime
    queues: list[QueueBoard]
    agents_by_state: dict[str, int]
    agents: list[Agent]
    chats_per_agent: list[AgentLoad]
    bot: BotDeflection
    alerts: list[Alert]
    config: WallboardConfig
    lines: list[HoursOverride] = []  # phone lines open or closed against their office hours right now


class ForcedState(StateChange):
    """A supervisor sets an agent's state (audited)."""

    user_id: str


class ChatReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)
    client_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="The desktop's id for this message: a retry with the same id is stored once",
    )


class ChatMessage(BaseModel):
    event: TimelineEvent
    created: bool = Field(description="False when a retry with the same client_id found the stored message")
