"""The WeChat Official Account channel (wechatpy): URL verification, signed (plaintext) and encrypted
(safe mode) callbacks, passive replies inside WeChat's 5-second window, customer-service and template
messages for everything said later.

WeChat retries a callback it got no answer to within 5 s, up to three times with the same MsgId: the
``message.in`` idempotency key is that MsgId (events: sender + CreateTime + event, and the EventKey of a
menu click), so a retry lands once and is answered with "success".

Nothing slow sits in that window but the answer itself: the unionid lookup of a new follower runs after it,
and an answer too slow for it goes out later as a customer-service message, retried with backoff. A menu
CLICK is answered like a message saying its EventKey (name the keys as the customer would say them:
``查订单``, ``我要退货``).

wechatpy (~10 MB with requests and the AES code it pulls in) is imported where a callback or a send needs
it: telephony workers and the Celery worker import this module to notify customers and most never do.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import defusedxml.ElementTree as SafeXml
from bson import ObjectId
from defusedxml import DefusedXmlException
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from core.aio import stop_tasks
from core.db import Database, register_indexes, utcnow
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.log import get_logger
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, NewEvent, Omnichannel
from omnichannel.channels.pipeline import IntentPipeline
from omnichannel.channels.voice import Transcribe

if TYPE_CHECKING:
    from wechatpy.crypto import WeChatCrypto

    from omnichannel.channels.bot import Bot

log = get_logger(__name__)

register_indexes("wechat_outbound", IndexModel([("idempotency_key", ASCENDING)], unique=True))

WELCOME_TEXT = "欢迎关注！直接发消息告诉我们您需要什么帮助，例如：我要退货，订单号 12345。"
_SYSTEM = Actor(type="system", name="wechat")


class WeChatClient(Protocol):
    """The parts of the WeChat API the channel uses."""

    async def send_text(self, openid: str, text: str) -> None:
        """A customer-service message (allowed within 48 h of the customer's last message)."""
        ...

    async def send_template(self, openid: str, template_id: str, data: dict[str, Any]) -> None: ...

    async def unionid_of(self, openid: str) -> str | None:
        """The user's unionid when the account is bound to an open platform, else None."""
        ...

    async def download_media(self, media_id: str) -> bytes:
        """A message's media (a voice message's AMR/Speex audio), kept by WeChat for 3 days."""
        ...


class ApiWeChatClient:
    """api.weixin.qq.com through wechatpy (a blocking client: each call runs in a worker thread)."""

    def __init__(self, app_id: str, app_secret: str, timeout_seconds: float = 10.0) -> None:
        from wechatpy import WeChatClient as WechatpyClient

        # Without a timeout a stalled api.weixin.qq.com holds a worker thread (and whoever waits) forever.
        self.client = WechatpyClient(app_id, app_secret, timeout=timeout_seconds)

    async def send_text(self, openid: str, text: str) -> None:
        await asyncio.to_thread(self.client.message.send_text, openid, text)

    async def send_template(self, openid: str, template_id: str, data: dict[str, Any]) -> None:
        await asyncio.to_thread(self.client.message.send_template, openid, template_id, data)

    async def unionid_of(self, openid: str) -> str | None:
        info = await asyncio.to_thread(self.client.user.get, openid)
        unionid = info.get("unionid") if isinstance(info, dict) else None
        return str(unionid) if unionid else None

    async def download_media(self, media_id: str) -> bytes:
        response = await asyncio.to_thread(self.client.media.download, media_id)
        return bytes(response.content)


class SinkWeChatClient:
    """Development and tests: messages are recorded in ``wechat_sink`` instead of being sent."""

    def __init__(self, db: Database, unionids: Mapping[str, str] | None = None) -> None:
        self.sink = db["wechat_sink"]
        self.unionids = dict(unionids or {})
        self.media: dict[str, bytes] = {}  # media a development "WeChat" holds, by media id

    async def download_media(self, media_id: str) -> bytes:
        if media_id not in self.media:
            raise NotFound(f"no WeChat media {media_id!r}", code="wechat_media_not_found")
        return self.media[media_id]

    async def send_text(self, openid: str, text: str) -> None:
        await self._record({"kind": "text", "openid": openid, "text": text})

    async def send_template(self, openid: str, template_id: str, data: dict[str, Any]) -> None:
        text = str(data.get("first", {}).get("value", ""))
        await self._record(
            {"kind": "template", "openid": openid, "text": text, "template_id": template_id, "data": data}
        )

    async def unionid_of(self, openid: str) -> str | None:
        return self.unionids.get(openid)

    async def _record(self, doc: dict[str, Any]) -> None:
        await self.sink.insert_one({"_id": ObjectId(), **doc, "at": utcnow()})


@dataclass(frozen=True)
class WeChatConfig:
    token: str | None
    app_id: str | None = None
    encoding_aes_key: str | None = None
    template_id: str | None = None
    reply_timeout_seconds: float = 3.5
    tolerance_seconds: int = 300
    late_reply_attempts: int = 4
    late_reply_backoff_seconds: float = 2.0  # doubled after each failed attempt


class WeChatService:
    def __init__(
        self,
        db: Database,
        omni: Omnichannel,
        client: WeChatClient,
        config: WeChatConfig,
        *,
        pipeline: IntentPipeline | None = None,
    ) -> None:
        self.outbound = db["wechat_outbound"]
        self.omni = omni
        self.client = client
        self.config = config
        self.pipeline = pipeline
        self.bot: Bot | None = None  # the self-service bot, when one answers before the pipeline alone
        self.handoff: Bot | None = None  # with the bot off: every conversation goes straight to an agent
        # a voice message WeChat did not recognise is heard by our own ASR (omnichannel.channels.voice)
        self.transcribe: Transcribe | None = None
        self.voice_language = "zh"  # HUILIU_WECHAT_VOICE_LANGUAGE
        self._late: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------------------- the callback

    def verify_url(self, query: Mapping[str, str]) -> str:
        """WeChat's server URL check: the ``echostr`` back when the signature is ours."""
        self._check_signature(query)
        return query.get("echostr", "")

    async def handle(self, query: Mapping[str, str], body: bytes) -> str:
        """A callback's answer: a passive reply (XML, encrypted in safe mode) or ``success``."""
        self._check_signature(query)
        encrypted = query.get("encrypt_type", "raw") == "aes"
        xml = self._decrypt(query, body) if encrypted else body.decode("utf-8", errors="strict")
        message = _parse(xml)
        text = await self._respond(message)
        if not text:
            return "success"
        from wechatpy import create_reply

        reply: str = create_reply(text, message, render=True)
        if encrypted:
            sealed: str = self._crypto().encrypt_message(reply, query["nonce"], query["timestamp"])
            return sealed
        return reply

    async def close(self) -> None:
        await stop_tasks(*self._late)

    # --------------------------------------------------------------------------------- outbound

    async def notify(
        self, openid: str, text: str, *, customer_id: str, idempotency_key: str, title: str = ""
    ) -> None:
        """Tell the customer ``text``: a template message when one is configured, else a customer-service
        message. Sent once per ``idempotency_key``."""
        try:
            await self.outbound.insert_one(
                {"_id": ObjectId(), "idempotency_key": idempotency_key, "sent": False, "at": utcnow()}
            )
        except DuplicateKeyError:
            seen = await self.outbound.find_one({"idempotency_key": idempotency_key})
            if seen is not None and seen.get("sent"):
                return
        if self.config.template_id:
            data = {"first": {"value": text}, "keyword1": {"value": title}, "remark": {"value": ""}}
            await self.client.send_template(openid, self.config.template_id, data)
        else:
            await self.client.send_text(openid, text)
        await self.outbound.update_one({"idempotency_key": idempotency_key}, {"$set": {"sent": True}})
        await self._sent(customer_id, None, openid, text, idempotency_key)

    # ---------------------------------------------------------------------------------- internals

    def _check_signature(self, query: Mapping[str, str]) -> None:
        from wechatpy.exceptions import InvalidSignatureException
        from wechatpy.utils import check_signature

        if not self.config.token:
            raise Forbidden("WeChat is not configured (HUILIU_WECHAT_TOKEN)", code="webhook_disabled")
        signature, timestamp, nonce = (query.get(k) for k in ("signature", "timestamp", "nonce"))
        if not signature or not timestamp or not nonce:
            raise Forbidden("signature, timestamp and nonce are required", code="signature_missing")
        try:
            check_signature(self.config.token, signature, timestamp, nonce)
        except InvalidSignatureException:
            raise Forbidden("the WeChat signature does not match", code="signature_invalid") from None
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > self.config.tolerance_seconds:
            raise Forbidden("the request timestamp is outside the replay window", code="signature_expired")

    def _crypto(self) -> WeChatCrypto:
        from wechatpy.crypto import WeChatCrypto

        if not self.config.encoding_aes_key or not self.config.app_id or not self.config.token:
            raise Invalid(
                "safe mode needs HUILIU_WECHAT_ENCODING_AES_KEY and HUILIU_WECHAT_APP_ID",
                code="wechat_aes_not_configured",
            )
        return WeChatCrypto(self.config.token, self.config.encoding_aes_key, self.config.app_id)

    def _decrypt(self, query: Mapping[str, str], body: bytes) -> str:
        from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException

        msg_signature = query.get("msg_signature")
        if not msg_signature:
            raise Forbidden("msg_signature is required in safe mode", code="signature_missing")
        _parse_tree(body)
        try:
            plain: str = self._crypto().decrypt_message(
                body, msg_signature, query["timestamp"], query["nonce"]
            )
        except InvalidSignatureException:
            raise Forbidden("the message signature does not match", code="signature_invalid") from None
        except InvalidAppIdException:
            raise Forbidden("the message is for another app id", code="signature_invalid") from None
        except (ValueError, KeyError) as exc:
            raise Invalid(f"cannot decrypt the message: {exc}", code="invalid_ciphertext") from None
        return plain

    async def _respond(self, message: Any) -> str | None:
        openid = str(message.source or "")
        if not openid:
            raise Invalid("FromUserName is missing", code="invalid_message")
        customer, created = await self.omni.customers.resolve(
            [Identity(kind=IdentityKind.wechat_openid, value=openid)]
        )
        if created:
            self._later(self._add_unionid(customer.id, openid))
        conversation, _ = await self.omni.conversations.open(
            customer.id, NewConversation(channel=Channel.wechat, external_ref=f"wechat:{openid}")
        )
        kind = str(message.type)
        if kind == "event":
            key = f"wechat:event:{openid}:{message.create_time.timestamp():.0f}:{message.event}"
            if str(message.event) == "click":  # two menu items tapped within a second are two messages
                key = f"{key}:{message.key}"
        else:
            key = f"wechat:msg:{message.id}"
        body: dict[str, Any] = {"msg_type": kind, "msg_id": message.id, "openid": openid}
        text = ""
        if kind == "text":
            text = str(message.content or "")
        elif kind == "voice":
            text = str(message.recognition or "")
            body.update(media_id=message.media_id, format=message.format, recognition=message.recognition)
        elif kind == "image":
            body.update(media_id=message.media_id, pic_url=message.image)
        elif kind == "event":
            body.update(event=str(message.event), key=getattr(message, "key", None))
            if str(message.event) == "click":
                text = str(message.key or "")
        body["text"] = text
        _, fresh = await self.omni.timeline.append(
            customer.id,
            NewEvent(
                kind="message.in",
                channel=Channel.wechat,
                conversation_id=conversation.id,
                body=body,
                idempotency_key=key,
            ),
            Actor(type="customer", id=customer.id),
        )
        if not fresh:
            return None  # WeChat retried a message we already have
        if kind == "voice" and not text.strip() and self.transcribe is not None and message.media_id:
            # recognition takes longer than the 5-second passive window: the answer comes later
            self._later(self._hear(message, str(message.media_id), customer.id, conversation.id, openid, key))
            return None
        reply = await self._answer(kind, message, text, customer.id, conversation.id, openid, key)
        if reply:
            await self._sent(customer.id, conversation.id, openid, reply, f"reply:{key}")
        return reply

    async def _answer(
        self,
        kind: str,
        message: Any,
        text: str,
        customer_id: str,
        conversation_id: str,
        openid: str,
        key: str,
    ) -> str | None:
        if kind == "event" and str(message.event) == "subscribe":
            return WELCOME_TEXT
        if not text.strip() or self.pipeline is None:
            return None
        pipeline, bot, handoff = self.pipeline, self.bot, self.handoff

        async def think() -> str | None:
            said = dict(customer_id=customer_id, conversation_id=conversation_id, text=text, source_key=key)
            if bot is not None:
                return (await bot.respond(channel=Channel.wechat, **said)).reply
            reply = (await pipeline.run(channel=Channel.wechat, **said)).reply
            if handoff is not None:
                await handoff.hand_off(conversation_id, customer_id, Channel.wechat, "no_bot", None)
            return reply

        work = asyncio.ensure_future(think())
        try:
            result = await asyncio.wait_for(asyncio.shield(work), self.config.reply_timeout_seconds)
        except TimeoutError:
            # Too slow for the passive reply: answer with a customer-service message when done.
            self._late.add(work)
            work.add_done_callback(
                lambda done: self._answer_later(done, customer_id, conversation_id, openid, key)
            )
            return None
        return result

    def _answer_later(
        self,
        done: asyncio.Future[str | None],
        customer_id: str,
        conversation_id: str,
        openid: str,
        key: str,
    ) -> None:
        self._late.discard(done)
        if done.cancelled() or done.exception() is not None:
            log.error(
                "wechat.pipeline_failed",
                key=key,
                error=str(done.exception() if not done.cancelled() else "cancelled"),
            )
            return
        reply = done.result()
        if reply:
            self._later(self._send_later(customer_id, conversation_id, openid, reply, key))

    async def _hear(
        self, message: Any, media_id: str, customer_id: str, conversation_id: str, openid: str, key: str
    ) -> None:
        """A voice message without WeChat's recognition: download it, recognise it, put the words on the
        timeline (``transcript.final`` of the message) and answer them like a text message, late."""
        assert self.transcribe is not None
        try:
            audio = await self.client.download_media(media_id)
            text = await self.transcribe(audio, self.voice_language)
        except Exception as exc:  # the agent still sees the voice message; nothing to answer
            log.warning("wechat.voice_not_recognised", key=key, error=_redacted(exc))
            return
        await self.omni.timeline.append(
            customer_id,
            NewEvent(
                kind="transcript.final",
                channel=Channel.wechat,
                conversation_id=conversation_id,
                body={"text": text, "msg_id": message.id, "media_id": media_id, "source": "wechat_voice"},
                idempotency_key=f"{key}:heard",
            ),
            Actor(type="customer", id=customer_id),
        )
        if not text:
            return
        heard = f"{key}:heard"
        reply = await self._answer("voice", message, text, customer_id, conversation_id, openid, heard)
        if reply:
            await self._send_later(customer_id, conversation_id, openid, reply, heard)

    def _later(self, work: Any) -> None:
        """Run ``work`` after the passive reply; ``close`` cancels what is still running."""
        task = asyncio.ensure_future(work)
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def _send_later(
        self, customer_id: str, conversation_id: str, openid: str, text: str, key: str
    ) -> None:
        """The answer as a customer-service message, tried ``late_reply_attempts`` times with backoff; one
        that never goes out is logged and noted on the timeline (``message.failed``) for an agent."""
        attempts = self.config.late_reply_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self.client.send_text(openid, text)
            except Exception as exc:
                error = _redacted(exc)
                if attempt < attempts:
                    delay = self.config.late_reply_backoff_seconds * 2.0 ** (attempt - 1)
                    log.warning(
                        "wechat.late_reply_retry", key=key, attempt=attempt, error=error, retry_in=delay
                    )
                    await asyncio.sleep(delay)
                    continue
                log.error("wechat.late_reply_failed", key=key, attempts=attempt, error=error)
                await self.omni.timeline.append(
                    customer_id,
                    NewEvent(
                        kind="message.failed",
                        channel=Channel.wechat,
                        conversation_id=conversation_id,
                        body={"openid": openid, "text": text, "error": error},
                        idempotency_key=f"wechat:failed:reply:{key}",
                    ),
                    _SYSTEM,
                )
                return
            await self._sent(customer_id, conversation_id, openid, text, f"reply:{key}")
            return

    async def _sent(
        self, customer_id: str, conversation_id: str | None, openid: str, text: str, key: str
    ) -> None:
        await self.omni.timeline.append(
            customer_id,
            NewEvent(
                kind="message.out",
                channel=Channel.wechat,
                conversation_id=conversation_id,
                body={"openid": openid, "text": text},
                idempotency_key=f"wechat:out:{key}",
            ),
            _SYSTEM,
        )

    async def _add_unionid(self, customer_id: str, openid: str) -> None:
        """A new follower's unionid (when the account is bound to an open platform) on their customer."""
        try:
            unionid = await self.client.unionid_of(openid)
            if unionid:
                await self.omni.customers.add_identity(
                    customer_id, Identity(kind=IdentityKind.wechat_unionid, value=unionid)
                )
        except Conflict as exc:  # known as another customer: merging the two is a person's decision
            log.info("wechat.unionid_in_use", openid=openid, owner_id=exc.extra.get("owner_id"))
        except Exception as exc:  # the profile lookup is a nicety; the message has landed anyway
            log.warning("wechat.unionid_failed", openid=openid, error=_redacted(exc))


def _redacted(exc: Exception) -> str:
    """The error for the log, without the access token that wechatpy's request URLs carry."""
    return re.sub(r"(access_token|secret)=[^&\s'\"]+", r"\1=***", str(exc))[:500]


def _parse_tree(raw: bytes | str) -> None:
    """Refuse malformed XML and XML with entity / DTD tricks before anything else reads it."""
    try:
        SafeXml.fromstring(raw)
    except DefusedXmlException:
        raise Invalid("XML with DTDs or entities is not accepted", code="xml_forbidden") from None
    except SafeXml.ParseError as exc:
        raise Invalid(f"body is not well-formed XML: {exc}", code="invalid_xml") from None


def _parse(xml: str) -> Any:
    from wechatpy import parse_message

    _parse_tree(xml)
    message = parse_message(xml)
    try:
        # wechatpy converts fields when first read: a MsgId or CreateTime that is not a number fails here
        # as bad input (400), not later as a 500 after the sender was stored.
        _ = (message.id, message.create_time)
    except (TypeError, ValueError) as exc:
        raise Invalid(f"malformed message field: {exc}", code="invalid_message") from None
    return message
