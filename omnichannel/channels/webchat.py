"""Web chat: the visitor side of the embeddable widget (``core/web/widget.js``).

Transport. The desktop's Socket.IO server refuses cross-origin connections (agents use our own pages); the
widget runs on the customer's *other* sites. So visitors get a second ``socketio.AsyncServer`` on its own path
(``/chat/socket.io/``, namespace ``/visitor``) whose allowed origins are ``HUILIU_WEBCHAT_ALLOWED_ORIGINS``,
with its own Redis channel so emits reach visitors on any web node. Nothing else in the app becomes
cross-origin: only the ``/api/webchat/*`` routes answer CORS preflights, for the same origins.

Identity. ``POST /api/webchat/visitors`` issues a visitor id and a token signed with the core secret (HMAC);
the widget keeps it in the embedding page's ``localStorage`` (third-party cookies are blocked by browsers),
and presents it on every socket connect and upload. A missing, forged or expired token is refused.

Messages. What the visitor writes is ``message.in`` on the unified timeline, idempotent by the widget's own
``client_id`` (a resend after a reconnect is stored once and acknowledged with the stored event). What the
visitor is told — bot answers (``message.out``), agent replies (``message.sent``, see
``agent_desktop/chat.py``), "an agent joined" (``contact.connected``) — is delivered from the event bus: every
web node hears each timeline event and emits it only to the visitors connected to *it*
(``ignore_queue``), so nothing arrives twice. A reconnecting widget asks for ``history`` after the last event
id it saw and gets what it missed, from MongoDB.

``send_to_visitor(conversation_id, text, author)`` writes a message to a web-chat visitor from anywhere.
The visitors' Socket.IO server itself is ``webchat_sockets`` (the web process alone loads python-socketio).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING, IndexModel, ReturnDocument

from core.aio import stop_tasks
from core.bus import EventBus
from core.db import Database, register_indexes, utcnow
from core.errors import (
    Forbidden,
    HuiliuError,
    Invalid,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
)
from core.log import get_logger
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, NewEvent, Omnichannel
from omnichannel.channels.bot import Bot, BotReply
from omnichannel.channels.linking import IdentityLinker
from omnichannel.models import TimelineEvent

log = get_logger(__name__)

VISITOR_NS = "/visitor"
SOCKET_PATH = "chat/socket.io"
VISITOR_KINDS = ("message.in", "message.out", "message.sent", "contact.connected")
REPLAY_LIMIT = 200

register_indexes("webchat_visitors", IndexModel([("customer_id", ASCENDING)]))
register_indexes("webchat_attachments", IndexModel([("visitor_id", ASCENDING), ("at", ASCENDING)]))

_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BOT_ACTOR = Actor(type="bot", name="智能客服 Assistant")

# Sniffed, never trusted from the client: the first bytes decide the type.
_MAGIC: list[tuple[str, Callable[[bytes], bool]]] = [
    ("image/png", lambda head: head.startswith(b"\x89PNG\r\n\x1a\n")),
    ("image/jpeg", lambda head: head.startswith(b"\xff\xd8\xff")),
    ("image/gif", lambda head: head[:6] in (b"GIF87a", b"GIF89a")),
    ("image/webp", lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP"),
    ("application/pdf", lambda head: head.startswith(b"%PDF-")),
]
ALLOWED_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain")


# ------------------------------------------------------------------------------------------- tokens


class VisitorTokens:
    """``<visitor id>.<issued unix time>.<HMAC-SHA256, base64url>`` signed with the core secret."""

    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self.key = hashlib.sha256(("webchat-visitor:" + secret).encode()).digest()
        self.ttl = ttl_seconds

    def _mac(self, message: str) -> str:
        digest = hmac.new(self.key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, visitor_id: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        return f"{visitor_id}.{issued}.{self._mac(f'{visitor_id}.{issued}')}"

    def verify(self, token: Any, now: float | None = None) -> str:
        """The visitor id of a good token; ``Forbidden`` (stable codes) otherwise."""
        if not isinstance(token, str) or not token:
            raise Forbidden("a visitor token is required", code="visitor_token_missing")
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isdigit() or len(token) > 300:
            raise Forbidden("malformed visitor token", code="visitor_token_invalid")
        visitor_id, issued, mac = parts
        if not hmac.compare_digest(self._mac(f"{visitor_id}.{issued}"), mac):
            raise Forbidden("visitor token signature does not match", code="visitor_token_invalid")
        if (time.time() if now is None else now) - int(issued) > self.ttl:
            raise Forbidden("visitor token expired; get a new one", code="visitor_token_expired")
        return visitor_id

    def sign_url(self, path: str, ttl_seconds: int = 3600) -> str:
        expires = int(time.time()) + ttl_seconds
        return f"{path}?{urlencode({'exp': expires, 'sig': self._mac(f'{path}|{expires}')})}"

    def check_url(self, path: str, expires: str | None, signature: str | None) -> None:
        if not expires or not signature:
            raise Forbidden("a signed link or an agent token is required", code="signature_missing")
        if not expires.isdigit() or int(expires) < time.time():
            raise Forbidden("this link has expired", code="signature_expired")
        if not hmac.compare_digest(self._mac(f"{path}|{expires}"), signature):
            raise Forbidden("the link signature does not match", code="signature_invalid")


# ------------------------------------------------------------------------------------------ models


class VisitorMessage(BaseModel):
    """What the widget sends with ``message``."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(pattern=_CLIENT_ID.pattern, description="The widget's id: resends store once")
    text: str = Field(default="", max_length=1_000_000)
    attachment_id: str | None = Field(default=None, max_length=64)


class VisitorSession(BaseModel):
    visitor_id: str
    token: str


class Attachment(BaseModel):
    id: str
    name: str
    content_type: str
    size: int


@dataclass(frozen=True)
class WebChatConfig:
    max_chars: int = 2000
    max_attachment_bytes: int = 5 * 1024 * 1024
    visitors_per_minute: int = 30
    allowed_origins: tuple[str, ...] = ("*",)
    tenant: str = "huiliu"  # the database name: rate-limit counters of two tenants on one Redis stay apart


def allowed_origins(raw: str) -> tuple[str, ...]:
    origins = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    return ("*",) if "*" in origins else origins


def sniff(head: bytes) -> str | None:
    for content_type, matches in _MAGIC:
        if matches(head):
            return content_type
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end of the sample is fine
        if exc.start < len(head) - 4:
            return None
    return None if b"\x00" in head else "text/plain"


def conversation_room(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


# ----------------------------------------------------------------------------------------- service


class WebChatService:
    def __init__(
        self,
        db: Database,
        omni: Omnichannel,
        bot: Bot,
        tokens: VisitorTokens,
        redis: aioredis.Redis,
        config: WebChatConfig,
        attachments_dir: Path,
        *,
        bot_enabled: bool = True,
    ) -> None:
        self.visitors = db["webchat_visitors"]
        self.attachments = db["webchat_attachments"]
        self.omni = omni
        self.bot = bot
        self.tokens = tokens
        self.redis = redis
        self.config = config
        self.attachments_dir = attachments_dir
        self.bot_enabled = bot_enabled
        self._tasks: set[asyncio.Task[Any]] = set()
        self.linker: IdentityLinker | None = None  # phone and email verification (Channels.attach)

    # ---------------------------------------------------------------------------------- visitors

    async def new_visitor(self, address: str | None) -> VisitorSession:
        window = int(time.time() // 60)
        key = f"huiliu:webchat:visitors:{self.config.tenant}:{address or '-'}:{window}"
        count = await self.redis.incr(key)
        if count == 1:
            await self.redis.expire(key, 120)
        if count > self.config.visitors_per_minute:
            raise TooManyRequests(
                "too many new chat visitors from this address; retry in a minute",
                code="visitor_rate_limited",
                retry_after=60,
            )
        visitor_id = secrets.token_urlsafe(18)
        return VisitorSession(visitor_id=visitor_id, token=self.tokens.issue(visitor_id))

    async def visitor(self, visitor_id: str, language: str | None = None) -> dict[str, Any]:
        """The visitor's record with their customer and current conversation (both made on first use)."""
        doc = await self.visitors.find_one({"_id": visitor_id})
        if doc is not None and doc.get("conversation_id"):
            return dict(doc)
        customer, _ = await self.omni.customers.resolve(
            [Identity(kind=IdentityKind.web_visitor, value=visitor_id)], language=language
        )
        generation = int(doc.get("generation", 0)) + 1 if doc else 1
        conversation, _ = await self.omni.conversations.open(
            customer.id,
            NewConversation(channel=Channel.webchat, external_ref=f"webchat:{visitor_id}:{generation}"),
        )
        updated = await self.visitors.find_one_and_update(
            {"_id": visitor_id},
            {
                "$set": {
                    "customer_id": customer.id,
                    "conversation_id": conversation.id,
                    "generation": generation,
                    "language": language,
                    "updated_at": utcnow(),
                },
                "$setOnInsert": {"created_at": utcnow()},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return dict(updated)

    async def conversation_of_visitor(self, visitor_id: str) -> str | None:
        doc = await self.visitors.find_one({"_id": visitor_id})
        return str(doc["conversation_id"]) if doc and doc.get("conversation_id") else None

    # ---------------------------------------------------------------------------------- messages

    async def receive(self, visitor_id: str, message: VisitorMessage) -> tuple[dict[str, Any], bool]:
        """Store what the visitor wrote; ``(payload, created)``. The bot answers in the background."""
        text = message.text.strip()
        if len(message.text) > self.config.max_chars:
            raise PayloadTooLarge(
                f"message is {len(message.text)} characters; the limit is {self.config.max_chars}",
                code="message_too_long",
                limit=self.config.max_chars,
            )
        if not text and message.attachment_id is None:
            raise Invalid("a message needs text or an attachment", code="message_empty")
        visitor = await self.visitor(visitor_id)
        customer_id, conversation_id = str(visitor["customer_id"]), str(visitor["conversation_id"])
        body: dict[str, Any] = {"text": text, "client_id": message.client_id, "visitor_id": visitor_id}
        if message.attachment_id is not None:
            body["attachment"] = await self._own_attachment(visitor_id, message.attachment_id)
        event, created = await self.omni.timeline.append(
            customer_id,
            NewEvent(
                kind="message.in",
                channel=Channel.webchat,
                conversation_id=conversation_id,
                body=body,
                idempotency_key=f"webchat:{visitor_id}:{message.client_id}",
            ),
            Actor(type="customer", id=customer_id),
        )
        if created and text:
            self._spawn(self._answer(event, visitor.get("language")))
        return self.payload(event), created

    async def _answer(self, event: TimelineEvent, language: str | None) -> None:
        assert event.conversation_id is not None
        try:
            if self.bot_enabled:
                reply = await self.bot.respond(
                    customer_id=event.customer_id,
                    conversation_id=event.conversation_id,
                    channel=Channel.webchat,
                    text=str(event.body.get("text", "")),
                    source_key=f"webchat:in:{event.id}",
                    language=language,
                )
            else:
                reply = await self.bot.hand_off(
                    event.conversation_id, event.customer_id, Channel.webchat, "requested", language
                )
                reply = BotReply(None, None, reply.source, reply.handed_off, reply.contact_id)
        except Exception:
            log.exception("webchat.bot_failed", event_id=event.id)
            return
        if reply.reply:
            await self.say(event.conversation_id, reply.reply, BOT_ACTOR, f"webchat:bot:{event.id}")

    async def say(
        self, conversation_id: str, text: str, author: Actor, idempotency_key: str | None = None
    ) -> TimelineEvent:
        """``message.out`` to the visitor of ``conversation_id`` (delivered from the bus)."""
        conversation = await self.omni.conversations.get(conversation_id)
        if conversation.channel is not Channel.webchat:
            raise Invalid(f"conversation {conversation_id} is not a web chat", code="not_webchat")
        event, _ = await self.omni.timeline.append(
            conversation.customer_id,
            NewEvent(
                kind="message.out",
                channel=Channel.webchat,
                conversation_id=conversation_id,
                body={"text": text},
                idempotency_key=idempotency_key,
            ),
            author,
        )
        return event

    async def send_to_visitor(self, conversation_id: str, text: str, author: Actor) -> TimelineEvent:
        """Tell the visitor of a web-chat conversation ``text`` as ``author`` (agent, bot or system)."""
        return await self.say(conversation_id, text, author)

    async def history(self, conversation_id: str, after: str | None) -> list[dict[str, Any]]:
        """The conversation's visitor-visible events after event id ``after`` (all when unknown)."""
        conversation = await self.omni.conversations.get(conversation_id)
        page = await self.omni.timeline.page(
            conversation.customer_id,
            limit=REPLAY_LIMIT,
            kinds=list(VISITOR_KINDS),
            conversation_id=conversation_id,
        )
        events = list(reversed(page.events))
        ids = [event.id for event in events]
        if after in ids:
            events = events[ids.index(after) + 1 :]
        return [self.payload(event) for event in events]

    async def close(self, visitor_id: str) -> str | None:
        """The visitor ended the chat: the bot's session ends (its outcome is recorded), the conversation
        closes, and the next message starts a new one."""
        doc = await self.visitors.find_one_and_update(
            {"_id": visitor_id, "conversation_id": {"$ne": None}},
            {"$set": {"conversation_id": None, "updated_at": utcnow()}},
        )
        if doc is None or not doc.get("conversation_id"):
            return None
        conversation_id = str(doc["conversation_id"])
        outcome = await self.bot.finish(conversation_id)
        await self.omni.conversations.close(conversation_id)
        return outcome

    def payload(self, event: TimelineEvent) -> dict[str, Any]:
        """An event as the widget shows it."""
        body = event.body
        payload: dict[str, Any] = {
            "id": event.id,
            "ts": event.ts.isoformat(),
            "kind": event.kind,
            "direction": "in" if event.kind == "message.in" else "out",
            "text": str(body.get("text", "")),
            "author": {"type": event.actor.type, "name": event.actor.name},
            "client_id": body.get("client_id"),
        }
        attachment = body.get("attachment")
        if isinstance(attachment, dict):
            payload["attachment"] = {
                **attachment,
                "url": self.tokens.sign_url(f"/api/webchat/attachments/{attachment['id']}"),
            }
        return payload

    # ------------------------------------------------------------------------------- attachments

    async def store_attachment(
        self, visitor_id: str, name: str, declared_size: int | None, chunks: Callable[[int], Awaitable[bytes]]
    ) -> Attachment:
        """Stream an upload to disk under the data dir; size and (sniffed) type are checked first."""
        limit = self.config.max_attachment_bytes
        if declared_size is not None and declared_size > limit:
            raise PayloadTooLarge(
                f"attachment is {declared_size} bytes; the limit is {limit}",
                code="attachment_too_large",
                limit=limit,
            )
        visitor = await self.visitor(visitor_id)
        attachment_id = secrets.token_urlsafe(18)
        folder = self.attachments_dir / attachment_id[:2]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / attachment_id  # never the visitor's file name: no path tricks
        size = 0
        digest = hashlib.sha256()
        head = b""
        try:
            with path.open("wb") as handle:
                while True:
                    chunk = await chunks(64 * 1024)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(
                            f"attachment exceeds the limit of {limit} bytes",
                            code="attachment_too_large",
                            limit=limit,
                        )
                    if len(head) < 512:
                        head += chunk[: 512 - len(head)]
                    digest.update(chunk)
                    handle.write(chunk)
            if size == 0:
                raise Invalid("the attachment is empty", code="attachment_empty")
            content_type = sniff(head)
            if content_type is None:
                raise HuiliuError(
                    f"only {', '.join(ALLOWED_TYPES)} may be attached",
                    code="attachment_type_not_allowed",
                    allowed=list(ALLOWED_TYPES),
                )
        except HuiliuError as error:
            path.unlink(missing_ok=True)
            if error.code == "attachment_type_not_allowed":
                error.status = 415
                error.title = "Unsupported media type"
            raise
        clean_name = re.sub(r"[\x00-\x1f/\\\"<>]", "_", name.strip())[:120] or "attachment"
        doc = {
            "_id": attachment_id,
            "visitor_id": visitor_id,
            "customer_id": visitor["customer_id"],
            "conversation_id": visitor["conversation_id"],
            "name": clean_name,
            "content_type": content_type,
            "size": size,
            "sha256": digest.hexdigest(),
            "path": str(path.relative_to(self.attachments_dir)),
            "at": utcnow(),
        }
        await self.attachments.insert_one(doc)
        return Attachment(id=attachment_id, name=clean_name, content_type=content_type, size=size)

    async def attachment(self, attachment_id: str) -> tuple[dict[str, Any], Path]:
        doc = await self.attachments.find_one({"_id": attachment_id})
        if doc is None:
            raise NotFound(f"no attachment {attachment_id}", code="attachment_not_found")
        return dict(doc), self.attachments_dir / doc["path"]

    async def _own_attachment(self, visitor_id: str, attachment_id: str) -> dict[str, Any]:
        doc = await self.attachments.find_one({"_id": attachment_id, "visitor_id": visitor_id})
        if doc is None:
            raise NotFound(f"no attachment {attachment_id} of yours", code="attachment_not_found")
        return {
            "id": doc["_id"],
            "name": doc["name"],
            "content_type": doc["content_type"],
            "size": doc["size"],
        }

    # ----------------------------------------------------------------------------------- plumbing

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        await stop_tasks(*self._tasks)


async def agent_typing(bus: EventBus, conversation_id: str, typing: bool, name: str | None) -> None:
    """Show the visitor of ``conversation_id`` that an agent is (not) typing — for the desktop."""
    await bus.publish(
        "webchat.typing",
        {
            "id": secrets.token_hex(8),
            "ts": utcnow(),
            "conversation_id": conversation_id,
            "who": "agent",
            "typing": typing,
            "name": name,
        },
    )


def attachment_headers(doc: dict[str, Any]) -> dict[str, str]:
    """Served so nothing in it can run: the stored type, no sniffing, a sandbox; non-images download."""
    disposition = "inline" if doc["content_type"].startswith("image/") else "attachment"
    return {
        "Content-Type": doc["content_type"],
        "Content-Disposition": f'{disposition}; filename="{doc["name"]}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=3600",
    }


__all__ = [
    "ALLOWED_TYPES",
    "SOCKET_PATH",
    "VISITOR_NS",
    "Attachment",
    "VisitorMessage",
    "VisitorSession",
    "VisitorTokens",
    "WebChatConfig",
    "WebChatService",
    "agent_typing",
    "allowed_origins",
    "attachment_headers",
    "sniff",
]
