"""Agents' replies (``message.sent`` on a conversation, written by ``agent_desktop/chat.py``) delivered on the
customer's channel: WeChat (customer-service message), SMS, email. Web chat delivers from the bus itself
(``webchat.VisitorSockets``).

The agent's ``message.sent`` is the one timeline fact of a reply: the channels send it without writing a
second message event (an SMS is linked to it by ``timeline_event_id``; email is sent with ``record=False``).

Every web node hears every bus event, so each reply is claimed first (``channel_deliveries``, keyed by the
event id): one node sends it, whichever hears it first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pymongo.errors import DuplicateKeyError

from core.db import Database, utcnow
from core.log import get_logger
from omnichannel import Actor, Omnichannel
from omnichannel.channels.sms_service import SmsService
from omnichannel.channels.wechat import WeChatService

log = get_logger(__name__)

EmailReply = Callable[[str, str, Actor], Awaitable[None]]


class AgentReplies:
    def __init__(
        self,
        db: Database,
        omni: Omnichannel,
        sms: SmsService,
        wechat: WeChatService,
        email: EmailReply | None = None,
    ) -> None:
        self.deliveries = db["channel_deliveries"]
        self.omni = omni
        self.sms = sms
        self.wechat = wechat
        self.email = email

    async def handle(self, event: dict[str, Any]) -> None:
        channel = event.get("channel")
        conversation_id = event.get("conversation_id")
        text = str(event.get("body", {}).get("text", ""))
        if channel not in ("wechat", "sms", "email") or not conversation_id or not text:
            return
        try:
            await self.deliveries.insert_one({"_id": str(event["id"]), "channel": channel, "at": utcnow()})
        except DuplicateKeyError:
            return  # another node (or an earlier resume) has it
        actor = Actor(**event.get("actor", {"type": "agent"}))
        conversation = await self.omni.conversations.get(str(conversation_id))
        ref = conversation.external_ref or ""
        try:
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
                    idempotency_key=f"agent:{event['id']}",
                    actor=actor,
                    timeline_event_id=str(event["id"]),
                )
                # Delivery goes on (retries, receipts) in sms_messages: the claim points there.
                await self.deliveries.update_one({"_id": str(event["id"])}, {"$set": {"sms_id": sms.id}})
            elif channel == "email" and self.email is not None:
                await self.email(conversation.id, text, actor)
        except Exception as exc:  # recorded on the claim: visible, and the desktop can resend
            log.error("channels.agent_reply_failed", event_id=event["id"], channel=channel, error=str(exc))
            await self.deliveries.update_one({"_id": str(event["id"])}, {"$set": {"error": str(exc)}})
            return
        await self.deliveries.update_one({"_id": str(event["id"])}, {"$set": {"sent_at": utcnow()}})
