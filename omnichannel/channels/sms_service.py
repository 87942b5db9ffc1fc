"""The SMS channel: outbound messages with retries, per-number rate limits and STOP/START, inbound messages
and delivery receipts from the gateway.

Every outbound message is a document in ``sms_messages`` first (status ``queued``) and ``message.out`` on
the customer's timeline — unless it delivers a message already there (an agent's ``message.sent``): then
the document names that event (``timeline_event_id``) and the reply stays one fact on the timeline.
Delivery happens after, through ``enqueue`` (a Celery task in production) calling ``deliver`` until it says
it is done. ``deliver`` claims the message under a lease, so a task delivered twice sends once; the provider
gets the message id as its idempotency key for the case where its answer was lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.aio import stop_tasks
from core.db import Database, as_utc, register_indexes, utcnow
from core.errors import Conflict, Invalid, NotFound
from core.log import get_logger
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, NewEvent, Omnichannel
from omnichannel.channels.models import DeliveryReceipt, InboundSms, SinkEntry, SmsMessage, SmsStatus
from omnichannel.channels.pipeline import IntentPipeline

if TYPE_CHECKING:
    from omnichannel.channels.bot import Bot
from omnichannel.channels.sms import ProviderRejected, ProviderUnavailable, SmsProvider
from omnichannel.customers import object_id
from omnichannel.identity import normalize_phone

log = get_logger(__name__)

register_indexes(
    "sms_messages",
    IndexModel([("idempotency_key", ASCENDING)], unique=True),
    IndexModel([("provider_message_id", ASCENDING)], sparse=True),
    IndexModel([("created_at", DESCENDING)]),
)

Enqueue = Callable[[str], Awaitable[None]]

STOP_WORDS = frozenset({"STOP", "退订", "TD", "UNSUBSCRIBE", "取消订阅"})
START_WORDS = frozenset({"START", "订阅", "UNSTOP"})
_LEASE = dt.timedelta(seconds=60)
_SYSTEM = Actor(type="system", name="sms")

OPTED_OUT_TEXT = (
    "您已退订本服务短信，回复 START 可重新订阅。You are unsubscribed; reply START to resubscribe."
)
OPTED_IN_TEXT = "您已重新订阅本服务短信。You are subscribed again."


@dataclass(frozen=True)
class SmsConfig:
    sender: str = "Huiliu"
    max_attempts: int = 5
    backoff_seconds: float = 5.0
    rate_per_minute: int = 6
    max_chars: int = 1000
    default_region: str = "CN"


def message_from_doc(doc: dict[str, Any]) -> SmsMessage:
    return SmsMessage(
        id=str(doc["_id"]),
        to=doc["to"],
        text=doc["text"],
        customer_id=str(doc["customer_id"]),
        conversation_id=doc.get("conversation_id"),
        transactional=doc["transactional"],
        status=SmsStatus(doc["status"]),
        attempts=doc["attempts"],
        provider=doc["provider"],
        provider_message_id=doc.get("provider_message_id"),
        error=doc.get("error"),
        timeline_event_id=doc.get("timeline_event_id"),
        created_at=as_utc(doc["created_at"]),
        updated_at=as_utc(doc["updated_at"]),
    )


class SmsService:
    def __init__(
        self,
        db: Database,
        omni: Omnichannel,
        provider: SmsProvider,
        redis: aioredis.Redis,
        config: SmsConfig,
        *,
        pipeline: IntentPipeline | None = None,
        enqueue: Enqueue | None = None,
    ) -> None:
        """``enqueue`` hands a message id to the delivery machinery (Celery); without it, delivery runs
        in this process (development and tests)."""
        self.messages = db["sms_messages"]
        self.customers = db["customers"]
        self.sink = db["sms_sink"]
        self.omni = omni
        self.provider = provider
        self.redis = redis
        self.config = config
        self.pipeline = pipeline
        self.bot: Bot | None = None  # the self-service bot, when one answers before the pipeline alone
        self.handoff: Bot | None = None  # with the bot off: every conversation goes straight to an agent
        self.enqueue = enqueue or self._deliver_here
        self._running: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------------ outbound

    async def send(
        self,
        to: str,
        text: str,
        *,
        transactional: bool,
        customer_id: str | None = None,
        conversation_id: str | None = None,
        idempotency_key: str | None = None,
        actor: Actor = _SYSTEM,
        timeline_event_id: str | None = None,
    ) -> SmsMessage:
        """Queue ``text`` to ``to``: stored, on the timeline, then delivered with retries. Refused
        (409 ``sms_opted_out``) when the customer sent STOP and the message is not transactional.
        With ``timeline_event_id`` the text is already on the timeline as that event: the SMS is linked to
        it (its status, and ``message.failed`` if it fails) instead of adding a ``message.out``."""
        phone = normalize_phone(to, self.config.default_region)
        if len(text) > self.config.max_chars:
            raise Invalid(
                f"text is {len(text)} characters; the limit is {self.config.max_chars}", code="sms_too_long"
            )
        if customer_id is None:
            customer, _ = await self.omni.customers.resolve([Identity(kind=IdentityKind.phone, value=phone)])
            customer_id = customer.id
        else:
            customer = await self.omni.customers.live(customer_id)
        opted_out = customer.profile.get("sms_opt_out")
        if opted_out and not transactional:
            raise Conflict(
                f"{phone} unsubscribed with {opted_out.get('keyword', 'STOP')!r} at {opted_out.get('at')};"
                " only transactional messages (replies, ticket notices) may be sent",
                code="sms_opted_out",
            )
        if conversation_id is None:
            conversation_id = await self._conversation(customer.id, phone)
        message = await self._store(
            phone,
            text,
            customer_id=customer.id,
            conversation_id=conversation_id,
            transactional=transactional,
            idempotency_key=idempotency_key,
            timeline_event_id=timeline_event_id,
        )
        if message.timeline_event_id is None:
            await self.omni.timeline.append(
                message.customer_id,
                NewEvent(
                    kind="message.out",
                    channel=Channel.sms,
                    conversation_id=conversation_id,
                    body={
                        "message_id": message.id,
                        "to": phone,
                        "text": text,
                        "transactional": transactional,
                    },
                    idempotency_key=f"sms:out:{message.id}",
                ),
                actor,
            )
        await self._hand_over(message)
        return message

    async def send_to_staff(
        self, to: str, text: str, *, about_customer_id: str, idempotency_key: str
    ) -> SmsMessage:
        """Text a colleague (an SLA escalation about a customer's ticket). Delivered like any SMS —
        stored, then retried until sent, once per ``idempotency_key`` — but it is no message to the
        customer: no SMS conversation, no ``message.out`` on their timeline (the ticket engine recorded
        the notice there). A delivery that fails for good is noted on that customer's timeline."""
        phone = normalize_phone(to, self.config.default_region)
        message = await self._store(
            phone,
            text[: self.config.max_chars],
            customer_id=about_customer_id,
            conversation_id=None,
            transactional=True,
            idempotency_key=idempotency_key,
            timeline_event_id=None,
        )
        await self._hand_over(message)
        return message

    async def _store(
        self,
        phone: str,
        text: str,
        *,
        customer_id: str,
        conversation_id: str | None,
        transactional: bool,
        idempotency_key: str | None,
        timeline_event_id: str | None,
    ) -> SmsMessage:
        """The queued message document (the one stored before, when the idempotency key was used)."""
        now = utcnow()
        oid = ObjectId()
        doc = {
            "_id": oid,
            "idempotency_key": idempotency_key or f"sms:{oid}",
            "to": phone,
            "text": text,
            "customer_id": customer_id,
            "conversation_id": conversation_id,
            "transactional": transactional,
            "status": SmsStatus.queued.value,
            "attempts": 0,
            "provider": self.provider.name,
            "provider_message_id": None,
            "error": None,
            "lease_until": None,
            "timeline_event_id": timeline_event_id,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self.messages.insert_one(doc)
        except DuplicateKeyError:
            stored = await self.messages.find_one({"idempotency_key": doc["idempotency_key"]})
            if stored is None:  # pragma: no cover - deleted in between
                raise
            doc = stored
        return message_from_doc(doc)

    async def _hand_over(self, message: SmsMessage) -> None:
        if message.status is SmsStatus.queued:
            try:
                await self.enqueue(message.id)
            except Exception as exc:  # the message is stored: the sweep hands it to a worker later
                log.warning("sms.enqueue_failed", message_id=message.id, error=str(exc))

    async def deliver(self, message_id: str) -> float | None:
        """One delivery attempt. ``None`` when the message needs nothing more (sent, failed for good, or
        not ours to send); otherwise the seconds to wait before calling again."""
        oid = object_id(message_id, "sms_message")
        doc = await self.messages.find_one({"_id": oid})
        if doc is None or doc["status"] not in (SmsStatus.queued.value, SmsStatus.sending.value):
            return None
        now = utcnow()
        if (
            doc["status"] == SmsStatus.sending.value
            and doc["lease_until"]
            and as_utc(doc["lease_until"]) > now
        ):
            return (as_utc(doc["lease_until"]) - now).total_seconds()  # another attempt holds it
        wait = await self._rate_wait(doc["to"])
        if wait is not None:
            return wait
        claimed = await self.messages.find_one_and_update(
            {"_id": oid, "status": doc["status"], "attempts": doc["attempts"]},
            {
                "$set": {"status": SmsStatus.sending.value, "lease_until": now + _LEASE, "updated_at": now},
                "$inc": {"attempts": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if claimed is None:
            return 1.0  # someone else changed it meanwhile; look again shortly
        attempts = int(claimed["attempts"])
        try:
            provider_id = await self.provider.send(
                claimed["to"], claimed["text"], sender=self.config.sender, reference=message_id
            )
        except ProviderUnavailable as exc:
            if attempts >= self.config.max_attempts:
                await self._failed(claimed, f"{exc} (gave up after {attempts} attempts)")
                return None
            delay = self.config.backoff_seconds * 2.0 ** (attempts - 1)
            log.warning("sms.retry", message_id=message_id, attempt=attempts, error=str(exc), retry_in=delay)
            await self._set(oid, status=SmsStatus.queued, error=str(exc), lease_until=None)
            return delay
        except ProviderRejected as exc:
            await self._failed(claimed, str(exc))
            return None
        await self._set(
            oid, status=SmsStatus.sent, error=None, lease_until=None, provider_message_id=provider_id
        )
        log.info("sms.sent", message_id=message_id, attempts=attempts)
        return None

    async def stalled(self, older_than: dt.timedelta, limit: int = 500) -> list[str]:
        """Messages nobody is delivering: queued (or holding an expired lease) and untouched for
        ``older_than`` — their enqueue was lost (Redis was away) or their worker died."""
        cutoff = utcnow() - older_than
        cursor = self.messages.find(
            {
                "status": {"$in": [SmsStatus.queued.value, SmsStatus.sending.value]},
                "updated_at": {"$lt": cutoff},
            },
            {"_id": 1},
            limit=limit,
        )
        return [str(doc["_id"]) async for doc in cursor]

    async def receipt(self, receipt: DeliveryReceipt) -> SmsMessage:
        """Apply a delivery receipt (repeats are harmless)."""
        doc = await self.messages.find_one_and_update(
            {"provider_message_id": receipt.message_id},
            {"$set": {"status": receipt.status, "error": receipt.error, "updated_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise NotFound(f"no SMS with provider id {receipt.message_id}", code="sms_message_not_found")
        if doc["status"] == SmsStatus.failed.value:
            await self._note_failed(doc, receipt.error or "the gateway reports it undeliverable")
        return message_from_doc(doc)

    async def get(self, message_id: str) -> SmsMessage:
        doc = await self.messages.find_one({"_id": object_id(message_id, "sms_message")})
        if doc is None:
            raise NotFound(f"no SMS {message_id}", code="sms_message_not_found")
        return message_from_doc(doc)

    async def sink_entries(self, limit: int = 50, to: str | None = None) -> list[SinkEntry]:
        """What the development sink 'sent', newest first."""
        query = {"to": normalize_phone(to, self.config.default_region)} if to else {}
        cursor = self.sink.find(query, sort=[("at", -1), ("_id", -1)], limit=limit)
        return [
            SinkEntry(
                id=str(doc["_id"]),
                to=doc["to"],
                sender=doc["sender"],
                text=doc["text"],
                reference=doc["reference"],
                at=as_utc(doc["at"]),
            )
            async for doc in cursor
        ]

    async def close(self) -> None:
        await stop_tasks(*self._running)
        await self.provider.close()

    # ------------------------------------------------------------------------------------- inbound

    async def receive(self, inbound: InboundSms) -> bool:
        """Land an inbound SMS on the timeline and act on it; False when this id was seen before."""
        phone = normalize_phone(inbound.sender, self.config.default_region)
        customer, _ = await self.omni.customers.resolve([Identity(kind=IdentityKind.phone, value=phone)])
        conversation_id = await self._conversation(customer.id, phone)
        source_key = f"sms:in:{inbound.id}"
        _, created = await self.omni.timeline.append(
            customer.id,
            NewEvent(
                kind="message.in",
                channel=Channel.sms,
                conversation_id=conversation_id,
                body={
                    "from": phone,
                    "to": inbound.to,
                    "text": inbound.text,
                    "provider_message_id": inbound.id,
                },
                idempotency_key=source_key,
            ),
            Actor(type="customer", id=customer.id),
        )
        if not created:
            return False
        keyword = inbound.text.strip().upper()
        reply: str | None
        if keyword in STOP_WORDS:
            await self._set_opt_out(
                customer.id, {"at": utcnow().isoformat(), "keyword": inbound.text.strip()}
            )
            reply = OPTED_OUT_TEXT
        elif keyword in START_WORDS:
            await self._set_opt_out(customer.id, None)
            reply = OPTED_IN_TEXT
        elif self.bot is not None and inbound.text.strip():
            answer = await self.bot.respond(
                customer_id=customer.id,
                conversation_id=conversation_id,
                channel=Channel.sms,
                text=inbound.text,
                source_key=source_key,
            )
            reply = answer.reply
        elif self.pipeline is not None and inbound.text.strip():
            result = await self.pipeline.run(
                customer_id=customer.id,
                conversation_id=conversation_id,
                channel=Channel.sms,
                text=inbound.text,
                source_key=source_key,
            )
            reply = result.reply
            if self.handoff is not None:
                await self.handoff.hand_off(conversation_id, customer.id, Channel.sms, "no_bot", None)
        else:
            reply = None
        if reply:
            await self.send(
                phone,
                reply,
                transactional=True,
                customer_id=customer.id,
                conversation_id=conversation_id,
                idempotency_key=f"reply:{source_key}",
            )
        return True

    # ----------------------------------------------------------------------------------- internals

    async def _conversation(self, customer_id: str, phone: str) -> str:
        conversation, _ = await self.omni.conversations.open(
            customer_id, NewConversation(channel=Channel.sms, external_ref=f"sms:{phone}")
        )
        return conversation.id

    async def _set_opt_out(self, customer_id: str, value: dict[str, Any] | None) -> None:
        live = await self.omni.customers.live(customer_id)
        change: dict[str, Any] = (
            {"$set": {"profile.sms_opt_out": value, "updated_at": utcnow()}}
            if value is not None
            else {"$unset": {"profile.sms_opt_out": ""}, "$set": {"updated_at": utcnow()}}
        )
        await self.customers.update_one({"_id": ObjectId(live.id)}, change)

    async def _rate_wait(self, phone: str) -> float | None:
        """Count this attempt against the number's per-minute budget; seconds to wait when it is spent."""
        window = int(time.time() // 60)
        key = f"huiliu:sms:rate:{phone}:{window}"
        count = await self.redis.incr(key)
        if count == 1:
            await self.redis.expire(key, 120)
        if count <= self.config.rate_per_minute:
            return None
        return max(1.0, math.ceil((window + 1) * 60 - time.time()))

    async def _set(self, oid: ObjectId, *, status: SmsStatus, **fields: Any) -> None:
        await self.messages.update_one(
            {"_id": oid}, {"$set": {"status": status.value, "updated_at": utcnow(), **fields}}
        )

    async def _failed(self, doc: dict[str, Any], error: str) -> None:
        await self._set(doc["_id"], status=SmsStatus.failed, error=error, lease_until=None)
        await self._note_failed(doc, error)

    async def _note_failed(self, doc: dict[str, Any], error: str) -> None:
        """A message failed for good (its last attempt, or the gateway's receipt): logged, and
        ``message.failed`` on the customer's timeline once, whichever said it first."""
        log.error("sms.failed", message_id=str(doc["_id"]), error=error)
        await self.omni.timeline.append(
            str(doc["customer_id"]),
            NewEvent(
                kind="message.failed",
                channel=Channel.sms,
                conversation_id=doc.get("conversation_id"),
                body={
                    "message_id": str(doc["_id"]),
                    "to": doc["to"],
                    "error": error,
                    "event_id": doc.get("timeline_event_id"),
                },
                idempotency_key=f"sms:failed:{doc['_id']}",
            ),
            _SYSTEM,
        )

    async def _deliver_here(self, message_id: str) -> None:
        task = asyncio.create_task(self._deliver_until_done(message_id), name=f"sms-deliver-{message_id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _deliver_until_done(self, message_id: str) -> None:
        while True:
            try:
                wait = await self.deliver(message_id)
            except Exception as exc:  # a database hiccup: the message stays queued; try again
                log.warning("sms.deliver_error", message_id=message_id, error=str(exc))
                wait = self.config.backoff_seconds
            if wait is None:
                return
            await asyncio.sleep(wait)
