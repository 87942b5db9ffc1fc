"""Agent replies in chat conversations, and the agent's own work for a desktop that reconnects.

Contract with the channels (web chat, WeChat…): an agent's reply is the timeline event ``message.sent`` on the
chat's conversation (channel = the conversation's channel, actor ``{type: "agent", id, name}``, body
``{"text", "contact_id"}``), written to MongoDB first and announced on the bus as ``timeline.message.sent``
(the timeline does that). The channel delivers it from the bus or reads the conversation's timeline. What the
customer writes arrives the other way as ``message.in`` on the same conversation; ``socket.py`` relays both to
the serving agent's desktop as ``chat.message``.
"""

from __future__ import annotations

import datetime as dt
import uuid

from agent_desktop.models import ChatReply, Contact, ContactKind, ContactStatus
from agent_desktop.store import AcdStore, contact_from_doc
from core.auth import User
from core.db import utcnow
from core.errors import Conflict, Forbidden
from omnichannel import Actor, NewEvent, Omnichannel, TimelineEvent

REPLY_KIND = "message.sent"
RESUME_WRAP_UP = dt.timedelta(hours=1)


class ChatService:
    def __init__(self, store: AcdStore, omni: Omnichannel) -> None:
        self.store = store
        self.omni = omni

    async def reply(self, user: User, contact_id: str, reply: ChatReply) -> tuple[TimelineEvent, bool]:
        """Write the agent's message on the chat's conversation; ``(event, created)`` — a retry with the
        same ``client_id`` returns the stored message."""
        contact = await self.store.contact(contact_id)
        if contact.agent_id != user.id:
            raise Forbidden("this contact is not yours", code="not_your_contact")
        if contact.kind is not ContactKind.chat or contact.conversation_id is None:
            raise Conflict("only chats with a conversation take replies", code="not_a_chat")
        if contact.status is not ContactStatus.connected:
            raise Conflict(f"contact is {contact.status.value}, not connected", code="not_connected")
        conversation = await self.omni.conversations.get(contact.conversation_id)
        key = f"desktop:{contact.id}:{reply.client_id or uuid.uuid4().hex}"
        return await self.omni.timeline.append(
            contact.customer_id,
            NewEvent(
                kind=REPLY_KIND,
                channel=conversation.channel,
                conversation_id=contact.conversation_id,
                body={"text": reply.text, "contact_id": contact.id},
                idempotency_key=key,
            ),
            Actor(type="agent", id=user.id, name=user.display_name),
        )

    async def serving(self, conversation_id: str) -> Contact | None:
        """The connected contact (and so the agent) of a conversation, if an agent serves it."""
        doc = await self.store.contacts.find_one(
            {"conversation_id": conversation_id, "status": ContactStatus.connected.value}
        )
        return contact_from_doc(doc) if doc else None

    async def my_contacts(self, user: User) -> list[Contact]:
        """What the agent works on: connected contacts, and ended ones still waiting for wrap-up codes."""
        since = utcnow() - RESUME_WRAP_UP
        connected = {"agent_id": user.id, "status": ContactStatus.connected.value}
        ended = {"agent_id": user.id, "status": ContactStatus.ended.value, "ended_at": {"$gte": since}}
        mine = [contact_from_doc(doc) async for doc in self.store.contacts.find(connected)]
        async for doc in self.store.contacts.find(ended):
            if not doc.get("wrap_up_codes"):
                mine.append(contact_from_doc(doc))
        return sorted(mine, key=lambda contact: contact.enqueued_at)
