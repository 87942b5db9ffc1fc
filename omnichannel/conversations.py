"""Conversations: one per channel session (a call, a chat, an email thread)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.db import Database, as_utc, register_indexes, utcnow
from core.errors import NotFound
from omnichannel.customers import CustomerService, object_id
from omnichannel.models import Channel, Conversation, ConversationStatus, NewConversation

register_indexes(
    "conversations",
    IndexModel([("customer_id", ASCENDING), ("started_at", DESCENDING)]),
    IndexModel(
        [("channel", ASCENDING), ("external_ref", ASCENDING)],
        unique=True,
        partialFilterExpression={"external_ref": {"$type": "string"}},
    ),
    IndexModel([("status", ASCENDING), ("queue", ASCENDING)]),
)


def conversation_from_doc(doc: dict[str, Any]) -> Conversation:
    return Conversation(
        id=str(doc["_id"]),
        customer_id=str(doc["customer_id"]),
        channel=Channel(doc["channel"]),
        status=ConversationStatus(doc["status"]),
        subject=doc.get("subject", ""),
        external_ref=doc.get("external_ref"),
        queue=doc.get("queue"),
        agent_id=doc.get("agent_id"),
        started_at=as_utc(doc["started_at"]),
        ended_at=as_utc(doc["ended_at"]) if doc.get("ended_at") else None,
    )


class ConversationService:
    def __init__(
        self, db: Database, customers: CustomerService, opened: Callable[[str], None] | None = None
    ) -> None:
        self.conversations = db["conversations"]
        self.customers = customers
        # told the id of every conversation ``open`` returns (the timeline then need not look it up)
        self.opened = opened or (lambda _conversation_id: None)

    async def open(
        self, customer_id: str, new: NewConversation, *, expect_new: bool = False
    ) -> tuple[Conversation, bool]:
        """Start a conversation; with ``external_ref`` a retry returns the one already started.

        ``expect_new``: the reference is seldom seen twice (a call's SIP Call-ID), so the insert goes first
        and the unique index on channel and reference catches a retry — one write instead of a lookup and
        a write. Channels that reopen a thread per message (``sms:{phone}``) look it up first."""
        if new.external_ref is not None and not expect_new:
            existing = await self.conversations.find_one(
                {"channel": new.channel.value, "external_ref": new.external_ref}
            )
            if existing is not None:
                self.opened(str(existing["_id"]))
                return conversation_from_doc(existing), False
        doc = {
            "_id": ObjectId(),
            "customer_id": ObjectId(await self.customers.live_id(customer_id)),
            "channel": new.channel.value,
            "status": ConversationStatus.open.value,
            "subject": new.subject,
            "external_ref": new.external_ref,
            "queue": None,
            "agent_id": None,
            "started_at": utcnow(),
            "ended_at": None,
        }
        try:
            await self.conversations.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.conversations.find_one(
                {"channel": new.channel.value, "external_ref": new.external_ref}
            )
            if existing is None:  # pragma: no cover - removed in between
                raise
            self.opened(str(existing["_id"]))
            return conversation_from_doc(existing), False
        self.opened(str(doc["_id"]))
        return conversation_from_doc(doc), True

    async def get(self, conversation_id: str) -> Conversation:
        doc = await self.conversations.find_one({"_id": object_id(conversation_id, "conversation")})
        if doc is None:
            raise NotFound(f"no conversation {conversation_id}", code="conversation_not_found")
        return conversation_from_doc(doc)

    async def of_customer(self, customer_id: str, limit: int = 50) -> list[Conversation]:
        ids = await self.customers.timeline_ids(customer_id)
        cursor = self.conversations.find(
            {"customer_id": {"$in": ids}}, sort=[("started_at", -1)], limit=limit
        )
        return [conversation_from_doc(doc) async for doc in cursor]

    async def close(self, conversation_id: str) -> Conversation:
        """Close it (idempotent: closing a closed conversation keeps its first end time)."""
        doc = await self.conversations.find_one_and_update(
            {"_id": object_id(conversation_id, "conversation"), "status": ConversationStatus.open.value},
            {"$set": {"status": ConversationStatus.closed.value, "ended_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )
        return conversation_from_doc(doc) if doc is not None else await self.get(conversation_id)
