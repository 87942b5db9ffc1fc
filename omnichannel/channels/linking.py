"""Identity linking: a phone number or email address given on web chat (or a number on WeChat), proven by a
code sent to it — by SMS or by email — links this customer to the one who owns it (or adds it when nobody
does).

The code lives in Redis for ten minutes, hashed, with five tries, each counted in Redis before the code is
compared (parallel guesses cannot share a try). One code per minute per customer, and per number or address
one a minute and five an hour, whoever asks (a visitor token is free: the number or mailbox is what must
not be flooded). A verified number or address owned by another customer is a **merge**
(``CustomerService.merge``: explicit, recorded in ``customer_merges``, reversible with
``POST /api/merges/{id}/undo``) into its owner, whose history is usually the longer one (calls, SMS,
email); the merge is written to the audit log as ``identity_verified`` and to the timeline as
``identity.verified``.

Codes by email go out through the email channel's outbound SMTP (``EmailService.notify``), so without
``HUILIU_SMTP_HOST`` only phone numbers can be verified.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import smtplib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from core.audit import AuditLog
from core.errors import Conflict, TooManyRequests, Unavailable
from core.log import get_logger
from omnichannel import (
    Actor,
    Channel,
    Identity,
    IdentityKind,
    NewEvent,
    Omnichannel,
    normalize_email,
    normalize_phone,
)
from omnichannel.channels.sms_service import SmsService

if TYPE_CHECKING:
    from omnichannel.channels.mail import EmailService

log = get_logger(__name__)

CODE_TTL_SECONDS = 600
RESEND_SECONDS = 60
MAX_ATTEMPTS = 5
CODES_PER_ADDRESS = 5  # to one number or email address per ADDRESS_WINDOW_SECONDS
ADDRESS_WINDOW_SECONDS = 3600

# Counts one try and reads the code in one step: {tries, phone, email, code hash}, one of phone and email
# set. False when no code waits (or a key from before codes were hashes, which is no code either).
_TRY = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return false end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return {attempts, redis.call('HGET', KEYS[1], 'phone'), redis.call('HGET', KEYS[1], 'email'),
        redis.call('HGET', KEYS[1], 'code')}
"""

_VERIFICATION = Actor(type="system", name="身份验证 Verification")


@dataclass(frozen=True)
class Linked:
    customer_id: str
    merged: bool
    merge_id: str | None = None


@dataclass(frozen=True)
class _Route:
    """How codes reach one kind of address: its name in Redis keys and messages, and its limit's code."""

    key: str
    called: str
    limited_code: str
    actor: str


_ROUTES = {
    IdentityKind.phone: _Route("number", "this number", "verification_number_limited", "sms-verification"),
    IdentityKind.email: _Route("email", "this address", "verification_email_limited", "email-verification"),
}


def mask(phone: str) -> str:
    return phone[:-8] + "****" + phone[-4:] if len(phone) > 8 else "****"


def mask_email(address: str) -> str:
    """``l***@example.com``: the visitor recognises their mailbox; someone looking on learns little."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def code_email(code: str, language: str | None) -> tuple[str, str]:
    """Subject and text of the code email: Chinese and English, the visitor's language first."""
    zh_subject, en_subject = "【汇流】邮箱验证码", "Your Huiliu verification code"
    zh = (
        f"您的验证码是 {code}，10 分钟内有效。\n"
        "如果您没有在汇流在线客服中验证这个邮箱，请忽略本邮件，无需任何操作。"
    )
    en = (
        f"Your Huiliu verification code is {code}. It is valid for 10 minutes.\n"
        "If you did not ask to verify this address in our web chat, ignore this email; nothing will change."
    )
    if language == "en":
        return f"{en_subject} · {zh_subject}", f"{en}\n\n{zh}\n"
    return f"{zh_subject} · {en_subject}", f"{zh}\n\n{en}\n"


class IdentityLinker:
    def __init__(
        self,
        omni: Omnichannel,
        sms: SmsService,
        redis: aioredis.Redis,
        audit: AuditLog,
        secret: str,
        *,
        email: EmailService | None = None,
    ) -> None:
        self.omni = omni
        self.sms = sms
        self.email = email  # None without outbound SMTP: no codes by email
        self.redis = redis
        self.audit = audit
        # Named when only phones were verified; a new name would void the codes waiting at an upgrade.
        self.key = hashlib.sha256(("phone-verification:" + secret).encode()).digest()

    def _hash(self, customer_id: str, code: str) -> str:
        return hmac.new(self.key, f"{customer_id}:{code}".encode(), hashlib.sha256).hexdigest()

    async def pending(self, customer_id: str) -> bool:
        return bool(await self.redis.exists(f"huiliu:verify:{customer_id}"))

    async def start(self, customer_id: str, raw_phone: str) -> str:
        """Send a code to ``raw_phone``; the number as the customer may see it (masked)."""
        phone = normalize_phone(raw_phone, self.sms.config.default_region)
        code = await self._new_code(customer_id, Identity(kind=IdentityKind.phone, value=phone))
        await self.sms.send(
            phone,
            f"【汇流】您的验证码是 {code}，10 分钟内有效。Your Huiliu verification code is {code} (10 min).",
            transactional=True,
            customer_id=customer_id,
            idempotency_key=f"verify:{customer_id}:{uuid.uuid4().hex}",
        )
        return mask(phone)

    async def start_email(self, customer_id: str, raw_address: str, language: str | None = None) -> str:
        """Email a code to ``raw_address`` (Chinese and English, ``language`` first); the address masked.
        The mail is handed to the SMTP relay before this returns: ``email_send_failed`` when it refuses."""
        if self.email is None:
            raise Unavailable(
                "codes by email need outbound SMTP (HUILIU_SMTP_HOST)", code="email_verification_unavailable"
            )
        address = normalize_email(raw_address)
        code = await self._new_code(customer_id, Identity(kind=IdentityKind.email, value=address))
        subject, text = code_email(code, language)
        try:
            await self.email.notify(
                address,
                text,
                customer_id=customer_id,
                idempotency_key=f"verify:{customer_id}:{uuid.uuid4().hex}",
                subject=subject,
            )
        except (smtplib.SMTPException, OSError) as exc:
            # Nobody got this code: it must not look pending (the bot would take six digits for it).
            await self.redis.delete(f"huiliu:verify:{customer_id}")
            log.warning("verification.email_failed", error=str(exc)[:200])
            raise Unavailable(
                "the code could not be emailed; try again in a minute",
                code="email_send_failed",
                retry_after=RESEND_SECONDS,
            ) from None
        return mask_email(address)

    async def _new_code(self, customer_id: str, identity: Identity) -> str:
        """A fresh code for ``identity`` (stored hashed, replacing any code waiting for this customer),
        once the customer's and the address's limits allow one."""
        if not await self.redis.set(f"huiliu:verify:wait:{customer_id}", "1", nx=True, ex=RESEND_SECONDS):
            raise TooManyRequests(
                "a code was sent less than a minute ago", code="verification_rate_limited", retry_after=60
            )
        await self._count_code_to(identity)
        code = f"{secrets.randbelow(1_000_000):06d}"
        key = f"huiliu:verify:{customer_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    identity.kind.value: identity.value,
                    "code": self._hash(customer_id, code),
                    "attempts": 0,
                },
            )
            pipe.expire(key, CODE_TTL_SECONDS)
            await pipe.execute()
        return code

    async def _count_code_to(self, identity: Identity) -> None:
        """Count a code to ``identity`` against its limits (one a minute, ``CODES_PER_ADDRESS`` a window)."""
        route = _ROUTES[identity.kind]
        wait = f"huiliu:verify:{route.key}-wait:{identity.value}"
        if not await self.redis.set(wait, "1", nx=True, ex=RESEND_SECONDS):
            raise TooManyRequests(
                f"a code was sent to {route.called} less than a minute ago",
                code="verification_rate_limited",
                retry_after=RESEND_SECONDS,
            )
        key = f"huiliu:verify:{route.key}:{identity.value}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, ADDRESS_WINDOW_SECONDS, nx=True)
            pipe.ttl(key)
            count, _, ttl = await pipe.execute()
        if int(count) > CODES_PER_ADDRESS:
            raise TooManyRequests(
                f"{CODES_PER_ADDRESS} codes were sent to {route.called} within the hour; try again later",
                code=route.limited_code,
                retry_after=max(int(ttl), 1),
            )

    async def verify(
        self,
        customer_id: str,
        code: str,
        *,
        channel: Channel = Channel.internal,
        conversation_id: str | None = None,
    ) -> Linked:
        """Check the code; on success link the number or address (merging into its owner when there is
        one) and say so on the timeline as ``identity.verified`` (in ``conversation_id`` when given)."""
        key = f"huiliu:verify:{customer_id}"
        tried = await self.redis.eval(_TRY, 1, key)
        if not tried:
            raise Conflict(
                "no verification is waiting (or it expired); ask for a new code", code="no_verification"
            )
        attempts, phone, address, hashed = int(tried[0]), tried[1], tried[2], _text(tried[3])
        if attempts > MAX_ATTEMPTS:  # tries used up: this one is not even compared
            raise Conflict("too many wrong codes; ask for a new one", code="verification_locked")
        if not hmac.compare_digest(hashed, self._hash(customer_id, code.strip())):
            if attempts == MAX_ATTEMPTS:
                raise Conflict("too many wrong codes; ask for a new one", code="verification_locked")
            raise Conflict(
                "the code is wrong", code="verification_failed", attempts_left=MAX_ATTEMPTS - attempts
            )
        if not await self.redis.delete(key):  # the same right code twice at once: one links
            raise Conflict("this code was used already", code="no_verification")
        identity = (
            Identity(kind=IdentityKind.phone, value=_text(phone))
            if phone
            else Identity(kind=IdentityKind.email, value=_text(address))
        )
        system = f"system:{_ROUTES[identity.kind].actor}"
        me = await self.omni.customers.live(customer_id)
        owner = await self.omni.customers.find_by_identity(identity)
        if owner is None or owner.id == me.id:
            await self.omni.customers.add_identity(me.id, identity)
            linked = Linked(me.id, merged=False)
        else:
            merge = await self.omni.customers.merge(owner.id, me.id, {"id": None, "username": system})
            linked = Linked(owner.id, merged=True, merge_id=merge.id)
        shown = mask(identity.value) if identity.kind is IdentityKind.phone else mask_email(identity.value)
        await self.audit.record(
            actor={"id": None, "username": system, "role": None},
            action="identity_verified",
            status=200,
            target=f"/api/customers/{linked.customer_id}",
            details={identity.kind.value: shown, "source_id": me.id, "merge_id": linked.merge_id},
        )
        await self.omni.timeline.append(
            linked.customer_id,
            NewEvent(
                kind="identity.verified",
                channel=channel,
                conversation_id=conversation_id,
                body={
                    "identity": identity.kind.value,
                    "value": identity.value,
                    "merged": linked.merged,
                    "merge_id": linked.merge_id,
                    "from_customer_id": me.id,
                },
                idempotency_key=f"identity:verified:{uuid.uuid4().hex}",
            ),
            _VERIFICATION,
        )
        return linked


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
