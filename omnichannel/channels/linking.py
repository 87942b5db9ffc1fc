"""Identity linking: a phone number given on web chat or WeChat, proven by a code sent to it by SMS, links
this customer to the one who owns that number (or adds the number when nobody does).

The code lives in Redis for ten minutes, hashed, with five tries, each counted in Redis before the code is
compared (parallel guesses cannot share a try). One code per minute per customer, and per number one a
minute and five an hour, whoever asks (a visitor token is free: the number is what must not be flooded). A
verified number owned by another customer is a **merge** (``CustomerService.merge``: explicit, recorded
in ``customer_merges``, reversible with ``POST /api/merges/{id}/undo``) into the number's owner, whose history
is usually the longer one (calls, SMS); the merge is written to the audit log as ``identity_verified``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from core.audit import AuditLog
from core.errors import Conflict, TooManyRequests
from omnichannel import Identity, IdentityKind, Omnichannel, normalize_phone
from omnichannel.channels.sms_service import SmsService

CODE_TTL_SECONDS = 600
RESEND_SECONDS = 60
MAX_ATTEMPTS = 5
CODES_PER_NUMBER = 5  # per NUMBER_WINDOW_SECONDS
NUMBER_WINDOW_SECONDS = 3600

# Counts one try and reads the code in one step. False when no code waits (or a key from before codes
# were hashes, which is no code either).
_TRY = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return false end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return {attempts, redis.call('HGET', KEYS[1], 'phone'), redis.call('HGET', KEYS[1], 'code')}
"""


@dataclass(frozen=True)
class Linked:
    customer_id: str
    merged: bool
    merge_id: str | None = None


def mask(phone: str) -> str:
    return phone[:-8] + "****" + phone[-4:] if len(phone) > 8 else "****"


class IdentityLinker:
    def __init__(
        self, omni: Omnichannel, sms: SmsService, redis: aioredis.Redis, audit: AuditLog, secret: str
    ) -> None:
        self.omni = omni
        self.sms = sms
        self.redis = redis
        self.audit = audit
        self.key = hashlib.sha256(("phone-verification:" + secret).encode()).digest()

    def _hash(self, customer_id: str, code: str) -> str:
        return hmac.new(self.key, f"{customer_id}:{code}".encode(), hashlib.sha256).hexdigest()

    async def pending(self, customer_id: str) -> bool:
        return bool(await self.redis.exists(f"huiliu:verify:{customer_id}"))

    async def start(self, customer_id: str, raw_phone: str) -> str:
        """Send a code to ``raw_phone``; the number as the customer may see it (masked)."""
        phone = normalize_phone(raw_phone, self.sms.config.default_region)
        if not await self.redis.set(f"huiliu:verify:wait:{customer_id}", "1", nx=True, ex=RESEND_SECONDS):
            raise TooManyRequests(
                "a code was sent less than a minute ago", code="verification_rate_limited", retry_after=60
            )
        await self._count_code_to(phone)
        code = f"{secrets.randbelow(1_000_000):06d}"
        key = f"huiliu:verify:{customer_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"phone": phone, "code": self._hash(customer_id, code), "attempts": 0})
            pipe.expire(key, CODE_TTL_SECONDS)
            await pipe.execute()
        await self.sms.send(
            phone,
            f"【汇流】您的验证码是 {code}，10 分钟内有效。Your Huiliu verification code is {code} (10 min).",
            transactional=True,
            customer_id=customer_id,
            idempotency_key=f"verify:{customer_id}:{uuid.uuid4().hex}",
        )
        return mask(phone)

    async def _count_code_to(self, phone: str) -> None:
        """Count a code to ``phone`` against its limits (one a minute, ``CODES_PER_NUMBER`` a window)."""
        if not await self.redis.set(f"huiliu:verify:number-wait:{phone}", "1", nx=True, ex=RESEND_SECONDS):
            raise TooManyRequests(
                "a code was sent to this number less than a minute ago",
                code="verification_rate_limited",
                retry_after=RESEND_SECONDS,
            )
        key = f"huiliu:verify:number:{phone}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, NUMBER_WINDOW_SECONDS, nx=True)
            pipe.ttl(key)
            count, _, ttl = await pipe.execute()
        if int(count) > CODES_PER_NUMBER:
            raise TooManyRequests(
                f"{CODES_PER_NUMBER} codes were sent to this number within the hour; try again later",
                code="verification_number_limited",
                retry_after=max(int(ttl), 1),
            )

    async def verify(self, customer_id: str, code: str) -> Linked:
        """Check the code; on success link the number (merging into its owner when there is one)."""
        key = f"huiliu:verify:{customer_id}"
        tried = await self.redis.eval(_TRY, 1, key)
        if not tried:
            raise Conflict(
                "no verification is waiting (or it expired); ask for a new code", code="no_verification"
            )
        attempts, phone, hashed = int(tried[0]), _text(tried[1]), _text(tried[2])
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
        identity = Identity(kind=IdentityKind.phone, value=phone)
        me = await self.omni.customers.live(customer_id)
        owner = await self.omni.customers.find_by_identity(identity)
        if owner is None or owner.id == me.id:
            await self.omni.customers.add_identity(me.id, identity)
            linked = Linked(me.id, merged=False)
        else:
            actor = {"id": None, "username": "system:sms-verification"}
            merge = await self.omni.customers.merge(owner.id, me.id, actor)
            linked = Linked(owner.id, merged=True, merge_id=merge.id)
        await self.audit.record(
            actor={"id": None, "username": "system:sms-verification", "role": None},
            action="identity_verified",
            status=200,
            target=f"/api/customers/{linked.customer_id}",
            details={"phone": mask(phone), "source_id": me.id, "merge_id": linked.merge_id},
        )
        return linked


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
