"""Agents' replies (``message.sent`` on a conversation, written by ``agent_desktop/chat.py``) delivered on the
customer's channel: WeChat (customer-service message), SMS, email. Web chat delivers from the bus itself
(``webchat_sockets.VisitorSockets``).

The agent's ``message.sent`` is the one timeline fact of a reply: the channels send it without writing a
second message event (an SMS is linked to it by ``timeline_event_id``; email is sent with ``record=False``).

Every web node hears every bus event, so each reply is claimed first (``channel_deliveries``, keyed by the
event id): one node sends it, whichever hears it first.

A WeChat or email reply that cannot be sent (the API or the mail server is down) is retried with backoff
(``RETRY_DELAYS``) by ``retry_due``, which every web node runs every few seconds (a retry is claimed like the
first attempt, so one node sends it). When the last retry fails, the reply is ``failed`` on its claim and
``message.failed`` on the customer's timeline, which the agent sees. SMS replies retry in ``sms_messages``
(Celery), with the same ``message.failed`` at the end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from core.db import Database, register_indexes, utcnow
from core.log import get_logger
from omnichannel import Actor, Channel, NewEvent, Omnichannel
from omnichannel.channels.sms_service import SmsService
from omnichannel.channels.wechat import WeChatService

log = get_logger(__name__)

register_indexes("channel_deliveries", IndexModel([("retry_at", ASCENDING)], sparse=True))

EmailReply = Callable[[str, str, Actor], Awaitable[None]]

# seconds before each retry: about 50 minutes of trying in all
RETRY_DELAYS: tuple[float, ...] = (5, 30, 120, 600, 2400)
_SYSTEM = Actor(type="system", id="channels", name="channels")


class AgentReplies:
    def __init__(
        self,
        db: Database,
        omni: Omnichannel,
        sms: SmsService,
        wechat: WeChatService,
        email: EmailReply | None = None,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        self.deliveries = db["channel_deliveries"]
        self.omni = omni
        self.sms = sms
        self.wechat = wechat
        self.email = email
        self.retry_delays = tuple(retry_delays)

    async def handle(self, event: dict[str, Any]) -> None:
        channel = event.get("channel")
        conversation_id = event.get("conversation_id")
        text = str(event.get("body", {}).get("text", ""))
        if channel not in ("wechat", "sms", "email") or not conversation_id or not text:
            return
        claim = {
            "_id": str(event["id"]),
            "channel": channel,
            "at": utcnow(),
            "conversation_id": str(conversation_id),
            "text": text,
            "actor": event.get("actor", {"type": "agent"}),
            "attempts": 0,
        }
        try:
            await self.deliveries.insert_one(claim)
        except DuplicateKeyError:
            return  # another node (or an earlier resume) has it
        await self._attempt(claim)

    async def retry_due(self, *, lease: dt.timedelta = dt.timedelta(minutes=2)) -> int:
        """Send again every failed reply whose retry is due; returns how many were tried here."""
        tried = 0
        while True:
            now = utcnow()
            claim = await self.deliveries.find_one_and_update(
                {"retry_at": {"$lte": now}},
                {"$set": {"retry_at": now + lease}},  # ours for the attempt; a crash retries after it
            )
            if claim is None:
                return tried
            tried += 1
            await self._attempt(claim)

    async def _attempt(self, claim: dict[str, Any]) -> None:
        event_id, channel, text = str(claim["_id"]), str(claim["channel"]), str(claim["text"])
        actor = Actor(**claim["actor"])
        try:
            conversation = await self.omni.conversations.get(str(claim["conversation_id"]))
            ref = conversation.external_ref or ""
            if channel == "wechat" and ref.startswith("wechat:"):
                openid = ref.removeprefix("wechat:")
                await self.wechat.client.send_text(openid, text)
            elif channel == "sms" and ref.startswith("sms:"):
                sms = await self.sms.send(
                    ref.removeprefix("sms:"),
                    text,
                    transactional=True,
                    customer_id=conversation.customer_id,
                    conversation_id=conversation.id,
                    idempotency_key=f"agent:{event_id}",
                    actor=actor,
                    timeline_event_id=event_id,
                )
                # Delivery goes on (retries, receipts) in sms_messages: the claim points there.
                await self.deliveries.update_one({"_id": event_id}, {"$set": {"sms_id": sms.id}})
            elif channel == "email" and self.email is not None:
                await self.email(conversation.id, text, actor)
        except Exception as exc:
            await self._failed_attempt(claim, str(exc) or type(exc).__name__)
            return
        await self.deliveries.update_one(
            {"_id": event_id}, {"$set": {"sent_at": utcnow()}, "$unset": {"retry_at": "", "error": ""}}
        )

    async def _failed_attempt(self, claim: dict[str, Any], error: str) -> None:
        event_id, attempts = str(claim["_id"]), int(claim.get("attempts", 0)) + 1
        if attempts <= len(self.retry_delays):
            delay = self.retry_delays[attempts - 1]
            log.warning(
                "channels.agent_reply_retry",
                event_id=event_id,
                channel=claim["channel"],
                attempt=attempts,
                retry_in=delay,
                error=error,
            )
            await self.deliveries.update_one(
                {"_id": event_id},
                {
                    "$set": {
                        "attempts": attempts,
                        "error": error,
                        "retry_at": utcnow() + dt.timedelta(seconds=delay),
                    }
                },
            )
            return
        log.error("channels.agent_reply_failed", event_id=event_id, channel=claim["channel"], error=error)
        await self.deliveries.update_one(
            {"_id": event_id},
            {
                "$set": {"attempts": attempts, "error": error, "failed_at": utcnow()},
                "$unset": {"retry_at": ""},
            },
        )
        conversation = await self.omni.conversations.get(str(claim["conversation_id"]))
        await self.omni.timeline.append(
            conversation.customer_id,
            NewEvent(
                kind="message.failed",
                channel=Channel(claim["channel"]),
                conversation_id=conversation.id,
                body={"event_id": event_id, "error": error, "attempts": attempts},
                idempotency_key=f"reply:failed:{event_id}",
            ),
            _SYSTEM,
        )
