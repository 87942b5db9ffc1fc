"""Notifications to people (staff and customers) behind one interface.

``Notifier`` is what the ticket engine calls; the SMS / WeChat / email providers of the channels arrive
behind it later. Until then ``TimelineNotifier`` (the default) records each message on the customer's
timeline as ``notification.queued`` and ``RecordingNotifier`` keeps them in memory for tests. Each
``Notification`` carries an idempotency key that stays the same across retries, so a provider sends a
message once even when the engine had to repeat itself after a crash.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from omnichannel import Actor, Channel, NewEvent
from omnichannel.timeline import TimelineService
from tickets.models import Language, Notification, Text


class Notifier(Protocol):
    async def send(self, notification: Notification) -> None:
        """Deliver (or durably queue) ``notification``; raise if that failed, so the caller retries."""
        ...


class RecordingNotifier:
    """Keeps every notification it is asked to send; ``fail`` makes the next sends raise."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.failures_left = 0

    def fail(self, times: int = 1) -> None:
        self.failures_left = times

    async def send(self, notification: Notification) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise ConnectionError("notification provider unavailable (simulated)")
        self.sent.append(notification)


_TIMELINE_CHANNEL = {
    "sms": Channel.sms,
    "wechat": Channel.wechat,
    "email": Channel.email,
    "webchat": Channel.webchat,
    "web": Channel.internal,
}


class TimelineNotifier:
    """The default until the channel providers exist: the message is written to the customer's timeline
    (``notification.queued``, idempotent by the notification's key) for the providers to pick up."""

    def __init__(self, timeline: TimelineService) -> None:
        self.timeline = timeline

    async def send(self, notification: Notification) -> None:
        await self.timeline.append(
            notification.customer_id,
            NewEvent(
                kind="notification.queued",
                channel=_TIMELINE_CHANNEL[notification.channel],
                body=notification.model_dump(mode="json"),
                idempotency_key=f"notification:{notification.idempotency_key}",
            ),
            Actor(type="system", name="tickets"),
        )


class MessageTexts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: dict[str, Text]


class Messages:
    """Message templates in zh and en (``schemas/messages.yaml``) with ``{number}``-style placeholders."""

    def __init__(self, templates: dict[str, Text]) -> None:
        self.templates = templates

    def render(self, template: str, language: Language, params: dict[str, Any]) -> str:
        text = self.templates[template](language)
        return text.format_map(defaultdict(str, params))
