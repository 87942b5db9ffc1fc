"""SMS and WeChat messages as the channels store them: typed, no I/O."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SmsStatus(enum.StrEnum):
    queued = "queued"  # stored, waiting for (another) delivery attempt
    sending = "sending"  # an attempt holds it
    sent = "sent"  # the provider accepted it
    delivered = "delivered"  # the provider's delivery receipt says the handset has it
    failed = "failed"  # the last attempt failed, or the receipt says undeliverable


class SmsMessage(BaseModel):
    id: str
    to: str = Field(description="E.164")
    text: str
    customer_id: str
    conversation_id: str | None
    transactional: bool
    status: SmsStatus
    attempts: int
    provider: str
    provider_message_id: str | None = None
    error: str | None = None
    timeline_event_id: str | None = Field(
        default=None, description="The timeline event this SMS delivers (an agent's message.sent), if any"
    )
    created_at: dt.datetime
    updated_at: dt.datetime


class SmsSend(BaseModel):
    """An agent's (or a program's) outbound SMS."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=3, max_length=32, description="Phone number; normalised to E.164")
    text: str = Field(min_length=1, max_length=10_000)
    transactional: bool = Field(
        default=False, description="Replies and ticket notices; marketing-like sends respect STOP"
    )


class InboundSms(BaseModel):
    """What the gateway posts to ``/api/sms/inbound`` (signed)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=128, description="The gateway's message id; retries repeat it")
    sender: str = Field(alias="from", min_length=3, max_length=32)
    to: str = Field(default="", max_length=32)
    text: str = Field(max_length=10_000)


class DeliveryReceipt(BaseModel):
    """What the gateway posts to ``/api/sms/receipts`` (signed)."""

    model_config = ConfigDict(extra="ignore")

    message_id: str = Field(min_length=1, max_length=128, description="The gateway's id from the send")
    status: str = Field(pattern=r"^(delivered|failed)$")
    error: str | None = Field(default=None, max_length=500)


class SinkEntry(BaseModel):
    """A message the development sink provider 'sent'."""

    id: str
    to: str
    sender: str
    text: str
    reference: str
    at: dt.datetime


class WeChatOutbound(BaseModel):
    """A customer-service or template message the WeChat sink recorded."""

    id: str
    kind: str
    openid: str
    text: str
    template_id: str | None = None
    data: dict[str, Any] = {}
    at: dt.datetime
