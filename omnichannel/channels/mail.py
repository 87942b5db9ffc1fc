"""The email channel: inbound over SMTP (an aiosmtpd listener, run by ``huiliu email``), outbound over SMTP.

Threading. Every message's ``Message-ID`` is remembered (``email_messages``) with its conversation; an
inbound mail whose ``In-Reply-To`` or ``References`` names one of them joins that conversation, anything
else starts a new one (one conversation per thread). A mail delivered twice (same Message-ID) lands once.

Safety. HTML is sanitised with nh3 (no scripts, event handlers, styles, remote images or ``javascript:``
links) before it is stored; the plain text is what the bot and the intent pipeline read. Attachments are
stored under the data dir by a random id (never the sender's file name) and served to agents only, as
downloads. The whole message is bounded by ``HUILIU_EMAIL_MAX_BYTES`` (SMTP 552 above it).
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import hashlib
import secrets
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import nh3
from aiosmtpd.smtp import SMTP, Envelope, Session
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from core.aio import stop_tasks
from core.db import Database, register_indexes, utcnow
from core.errors import Invalid, NotFound
from core.log import get_logger
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, NewEvent, Omnichannel
from omnichannel.channels.pipeline import IntentPipeline

log = get_logger(__name__)

CLOSE_GRACE_SECONDS = 10.0

register_indexes("email_messages", IndexModel([("conversation_id", ASCENDING), ("at", ASCENDING)]))
register_indexes("email_attachments", IndexModel([("conversation_id", ASCENDING)]))

_SAFE_TAGS = set(nh3.ALLOWED_TAGS) - {"img"}  # remote images are tracking pixels
_SYSTEM = Actor(type="system", name="email")


@dataclass(frozen=True)
class EmailConfig:
    address: str = "service@huiliu.local"
    max_bytes: int = 10 * 1024 * 1024
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


def sanitize_html(html: str) -> str:
    return nh3.clean(html, tags=_SAFE_TAGS, link_rel="noopener noreferrer nofollow")


def html_to_text(html: str) -> str:
    return " ".join(nh3.clean(html, tags=set()).split())


class EmailService:
    def __init__(
        self,
        db: Database,
        omni: Omnichannel,
        config: EmailConfig,
        attachments_dir: Path,
        *,
        pipeline: IntentPipeline | None = None,
    ) -> None:
        self.messages = db["email_messages"]
        self.attachments = db["email_attachments"]
        self.omni = omni
        self.config = config
        self.attachments_dir = attachments_dir
        self.pipeline = pipeline
        self._working: set[asyncio.Future[Any]] = set()

    # ------------------------------------------------------------------------------------ inbound

    async def receive(self, raw: bytes) -> bool:
        """Land one inbound mail on the timeline; False when this Message-ID was seen before."""
        if len(raw) > self.config.max_bytes:
            raise Invalid(
                f"message is {len(raw)} bytes; the limit is {self.config.max_bytes}", code="too_large"
            )
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        name, sender = email.utils.parseaddr(str(message.get("From", "")))
        if not sender:
            raise Invalid("the mail has no From address", code="email_no_sender")
        message_id = (
            str(message.get("Message-ID", "")).strip() or f"<{hashlib.sha256(raw).hexdigest()}@sha256>"
        )
        if await self.messages.find_one({"_id": message_id}) is not None:
            return False
        customer, _ = await self.omni.customers.resolve(
            [Identity(kind=IdentityKind.email, value=sender)], name=name or None
        )
        subject = str(message.get("Subject", ""))[:256]
        conversation_id = await self._thread(message, customer.id, message_id, subject)
        text, html = _bodies(message)
        attachments = await self._attachments(message, customer.id, conversation_id)
        key = f"email:in:{message_id}"
        await self.omni.timeline.append(
            customer.id,
            NewEvent(
                kind="message.in",
                channel=Channel.email,
                conversation_id=conversation_id,
                body={
                    "from": sender.lower(),
                    "subject": subject,
                    "text": text[:100_000],
                    "html": html[:200_000] if html else None,
                    "message_id": message_id,
                    "attachments": attachments,
                },
                idempotency_key=key,
            ),
            Actor(type="customer", id=customer.id, name=name or None),
        )
        # Remembered only once it is on the timeline: a crash in between leaves the Message-ID unknown, so
        # the retry (an MTA's, or the next IMAP poll) lands it — the event itself is keyed, never twice.
        try:
            await self.messages.insert_one(
                {
                    "_id": message_id,
                    "conversation_id": conversation_id,
                    "customer_id": customer.id,
                    "direction": "in",
                    "from": sender.lower(),
                    "subject": subject,
                    "at": utcnow(),
                }
            )
        except DuplicateKeyError:
            return False
        if self.pipeline is not None and text.strip():
            # Intents make tickets (whose notice goes back by email); no automatic chat-style reply. After
            # the SMTP answer, not before it: a sender's MTA should not wait for the NLU.
            work = self.pipeline.run(
                customer_id=customer.id,
                conversation_id=conversation_id,
                channel=Channel.email,
                text=f"{subject}\n{text}"[:10_000],
                source_key=key,
            )
            task = asyncio.ensure_future(work)
            self._working.add(task)
            task.add_done_callback(self._finished)
        return True

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._working.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("email.pipeline_failed", error=str(task.exception()))

    async def close(self, grace_seconds: float = CLOSE_GRACE_SECONDS) -> None:
        """Let the intent pipeline finish what it started, for ``grace_seconds`` at the most: a shutdown
        must not wait forever on one that hangs (it is cancelled and logged; the mail itself is stored)."""
        working = list(self._working)
        if not working:
            return
        _, stuck = await asyncio.wait(working, timeout=grace_seconds)
        for task in stuck:
            log.error("email.pipeline_cancelled_at_close", task=repr(task)[:200])
        await stop_tasks(*stuck)

    async def _thread(self, message: EmailMessage, customer_id: str, message_id: str, subject: str) -> str:
        refs = str(message.get("References", "")).split() + str(message.get("In-Reply-To", "")).split()
        if refs:
            # A message remembered without a conversation (a ticket notice sent before notices had one)
            # threads nothing: the reply starts a conversation rather than being refused forever.
            known = await self.messages.find_one(
                {"_id": {"$in": refs}, "conversation_id": {"$type": "string"}}, sort=[("at", -1)]
            )
            if known is not None:
                return str(known["conversation_id"])
        conversation, _ = await self.omni.conversations.open(
            customer_id,
            NewConversation(channel=Channel.email, subject=subject, external_ref=f"email:{message_id}"[:256]),
        )
        return conversation.id

    async def _attachments(self, message: EmailMessage, customer_id: str, conversation_id: str) -> list[Any]:
        stored = []
        for part in message.iter_attachments():
            assert isinstance(part, EmailMessage)
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            attachment_id = secrets.token_urlsafe(18)
            folder = self.attachments_dir / attachment_id[:2]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / attachment_id).write_bytes(payload)
            name = (part.get_filename() or "attachment").replace("/", "_").replace("\\", "_")[:120]
            doc = {
                "_id": attachment_id,
                "customer_id": customer_id,
                "conversation_id": conversation_id,
                "name": name,
                "content_type": part.get_content_type(),
                "size": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
                "path": f"{attachment_id[:2]}/{attachment_id}",
                "at": utcnow(),
            }
            await self.attachments.insert_one(doc)
            stored.append({key: doc[key] for key in ("name", "content_type", "size")} | {"id": attachment_id})
        return stored

    async def attachment(self, attachment_id: str) -> tuple[dict[str, Any], Path]:
        doc = await self.attachments.find_one({"_id": attachment_id})
        if doc is None:
            raise NotFound(f"no email attachment {attachment_id}", code="attachment_not_found")
        return dict(doc), self.attachments_dir / doc["path"]

    # ----------------------------------------------------------------------------------- outbound

    async def reply(self, conversation_id: str, text: str, actor: Actor, *, record: bool = True) -> str:
        """Answer the thread of ``conversation_id`` by email; returns the new Message-ID."""
        last = await self.messages.find_one(
            {"conversation_id": conversation_id, "direction": "in"}, sort=[("at", -1)]
        )
        if last is None:
            raise NotFound(
                f"no inbound mail in conversation {conversation_id}", code="email_thread_not_found"
            )
        chain = [
            doc["_id"]
            async for doc in self.messages.find(
                {"conversation_id": conversation_id}, sort=[("at", 1)], limit=20
            )
        ]
        subject = last.get("subject") or ""
        if not subject.lower().startswith("re:"):
            subject = f"Re: {subject}"
        return await self._send(
            last["from"], subject, text, conversation_id, str(last["customer_id"]), actor, chain, record
        )

    async def notify(
        self, to: str, text: str, *, customer_id: str, idempotency_key: str, subject: str
    ) -> None:
        """A ticket notice to ``to``, sent once per ``idempotency_key``: a send that fails raises, and the
        caller's retry sends it. The notice starts its own thread (a conversation of the customer), so the
        customer's reply to it lands there."""
        claim = f"notice:{idempotency_key}"
        try:
            await self.messages.insert_one(
                {"_id": claim, "direction": "claim", "sent": False, "at": utcnow()}
            )
        except DuplicateKeyError:
            seen = await self.messages.find_one({"_id": claim})
            if seen is not None and seen.get("sent"):
                return
        subject = subject or "汇流 Huiliu"
        conversation, _ = await self.omni.conversations.open(
            customer_id,
            NewConversation(
                channel=Channel.email, subject=subject, external_ref=f"email:notice:{idempotency_key}"[:256]
            ),
        )
        await self._send(to, subject, text, conversation.id, customer_id, _SYSTEM, [], True)
        await self.messages.update_one({"_id": claim}, {"$set": {"sent": True}})

    async def _send(
        self,
        to: str,
        subject: str,
        text: str,
        conversation_id: str | None,
        customer_id: str,
        actor: Actor,
        chain: list[str],
        record: bool,
    ) -> str:
        if not self.config.smtp_host:
            raise Invalid("outbound email needs HUILIU_SMTP_HOST", code="email_not_configured")
        message = EmailMessage()
        message["From"] = self.config.address
        message["To"] = to
        message["Subject"] = subject
        message_id = email.utils.make_msgid(domain=self.config.domain)
        message["Message-ID"] = message_id
        if chain:
            message["In-Reply-To"] = chain[-1]
            message["References"] = " ".join(chain)
        message.set_content(text)
        await asyncio.to_thread(self._deliver, message)
        await self.messages.insert_one(
            {
                "_id": message_id,
                "conversation_id": conversation_id,
                "customer_id": customer_id,
                "direction": "out",
                "subject": subject,
                "at": utcnow(),
            }
        )
        if record:
            await self.omni.timeline.append(
                customer_id,
                NewEvent(
                    kind="message.out",
                    channel=Channel.email,
                    conversation_id=conversation_id,
                    body={"to": to, "subject": subject, "text": text, "message_id": message_id},
                    idempotency_key=f"email:out:{message_id}",
                ),
                actor,
            )
        return message_id

    def _deliver(self, message: EmailMessage) -> None:
        """Blocking SMTP (a worker thread runs it)."""
        assert self.config.smtp_host is not None
        with smtplib.SMTP(self.config.smtp_host, self.config.smtp_port, timeout=15) as client:
            if self.config.smtp_starttls:
                client.starttls()
            if self.config.smtp_username and self.config.smtp_password:
                client.login(self.config.smtp_username, self.config.smtp_password)
            client.send_message(message)


def _bodies(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    html = sanitize_html(str(rich.get_content())) if rich is not None else ""
    text = str(plain.get_content()).strip() if plain is not None else html_to_text(html)
    return text, html


class InboundHandler:
    """aiosmtpd's handler: accept mail for our domain, land it, answer with SMTP codes."""

    def __init__(self, service: EmailService) -> None:
        self.service = service

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.rpartition("@")[2].lower() != self.service.config.domain:
            return "550 5.7.1 not relaying to that domain"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        try:
            await self.service.receive(raw)
        except Invalid as exc:
            return f"550 5.6.0 {exc.detail}"
        except Exception:
            log.exception("email.receive_failed")
            return "451 4.3.0 temporary failure; try again later"
        return "250 OK"


async def start_listener(service: EmailService, host: str, port: int) -> asyncio.Server:
    """The SMTP listener on this event loop (``huiliu email``, and tests)."""
    loop = asyncio.get_running_loop()
    handler = InboundHandler(service)
    return await loop.create_server(
        lambda: SMTP(handler, data_size_limit=service.config.max_bytes, hostname=service.config.domain),
        host=host,
        port=port,
    )


def email_config(settings: Any) -> EmailConfig:
    return EmailConfig(
        address=settings.email_address,
        max_bytes=settings.email_max_bytes,
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
        smtp_username=settings.smtp_username,
        smtp_password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        smtp_starttls=settings.smtp_starttls,
    )
