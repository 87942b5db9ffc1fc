"""Customers, identities, conversations and timeline events: typed, no I/O."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class IdentityKind(enum.StrEnum):
    phone = "phone"
    wechat_openid = "wechat_openid"
    wechat_unionid = "wechat_unionid"
    email = "email"
    web_visitor = "web_visitor"
    crm_id = "crm_id"


class Channel(enum.StrEnum):
    voice = "voice"
    webchat = "webchat"
    wechat = "wechat"
    sms = "sms"
    email = "email"
    internal = "internal"


class Identity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: IdentityKind
    value: str = Field(min_length=1, max_length=256)

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.value}"


class Customer(BaseModel):
    id: str
    name: str
    language: Literal["zh", "en"] | None = None
    identities: list[Identity]
    tags: list[str] = []
    vip: bool = False
    profile: dict[str, Any] = {}
    created_at: dt.datetime
    updated_at: dt.datetime
    merged_into: str | None = None
    merged_from: list[str] = []


class CustomerPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=128)
    language: Literal["zh", "en"] | None = None
    tags: list[str] | None = Field(default=None, max_length=50)
    vip: bool | None = None
    profile: dict[str, Any] | None = None


class ResolveRequest(BaseModel):
    """A contact arrived with these identities: find their customer or make one."""

    model_config = ConfigDict(extra="forbid")

    identities: list[Identity] = Field(min_length=1, max_length=10)
    name: str | None = Field(default=None, max_length=128)
    language: Literal["zh", "en"] | None = None


class ResolveResult(BaseModel):
    customer: Customer
    created: bool


class Merge(BaseModel):
    id: str
    target_id: str
    source_id: str
    moved_identities: list[Identity]
    at: dt.datetime
    actor: dict[str, Any]
    undone_at: dt.datetime | None = None


class ConversationStatus(enum.StrEnum):
    open = "open"
    closed = "closed"


class Conversation(BaseModel):
    id: str
    customer_id: str
    channel: Channel
    status: ConversationStatus
    subject: str = ""
    external_ref: str | None = None
    queue: str | None = None
    agent_id: str | None = None
    started_at: dt.datetime
    ended_at: dt.datetime | None = None


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel
    subject: str = Field(default="", max_length=256)
    external_ref: str | None = Field(
        default=None, max_length=256, description="Channel's own id (SIP Call-ID, email thread); idempotent"
    )


class Actor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["customer", "agent", "bot", "system"]
    id: str | None = None
    name: str | None = None


EVENT_KIND_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"


class NewEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(
        pattern=EVENT_KIND_PATTERN, max_length=64, description="Past-tense fact, e.g. call.answered"
    )
    channel: Channel
    conversation_id: str | None = None
    ts: dt.datetime | None = Field(default=None, description="When it happened (UTC); default now")
    body: dict[str, Any] = {}
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Producers retry safely: a second event with the same key is not stored again",
    )


class TimelineEvent(BaseModel):
    id: str
    customer_id: str
    conversation_id: str | None
    ts: dt.datetime
    channel: Channel
    kind: str
    actor: Actor
    body: dict[str, Any]
    idempotency_key: str


class TimelinePage(BaseModel):
    events: list[TimelineEvent]
    next_cursor: str | None


class CustomerPage(BaseModel):
    customers: list[Customer]
    next_cursor: str | None
