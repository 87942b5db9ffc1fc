"""Commands to live calls from any process (web, Celery): each goes to the worker that owns the call.

The ``calls`` document names the owning worker; the command is pushed on that worker's Redis list
(``COMMANDS_KEY``) with a reply key, and the worker's answer is awaited. A list rather than pub/sub: a
worker that is briefly disconnected from Redis still finds the command when it reconnects (it expires
after a minute, and the call's own end makes it moot).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.errors import Conflict, NotFound, Unavailable
from telephony.api import HangupCause
from telephony.store import ACTIVE, TelephonyStore

COMMANDS_KEY = "huiliu:telephony:commands:{worker_id}"
REPLIES_KEY = "huiliu:telephony:replies:{token}"
COMMAND_TTL_SECONDS = 60


class CallControl:
    def __init__(self, store: TelephonyStore, redis: aioredis.Redis) -> None:
        self.store = store
        self.redis = redis

    async def hangup(
        self, call_id: str, cause: HangupCause = HangupCause.agent_hangup, *, wait: float = 5.0
    ) -> None:
        """Hang up a live call; returns once its worker did it."""
        await self._send(call_id, {"op": "hangup", "cause": cause.value}, wait)

    async def transfer(
        self, call_id: str, target: str, *, attended: bool = False, wait: float = 45.0
    ) -> None:
        """Transfer a live call (blind or attended); returns once the transfer succeeded."""
        await self._send(call_id, {"op": "transfer", "target": target, "attended": attended}, wait)

    async def attach_media(self, call_id: str, *, wait: float = 5.0) -> None:
        """Have the owning worker relay the call's audio over Redis (``telephony.media_relay``) for a web
        softphone; a no-op when it already does."""
        await self._send(call_id, {"op": "media"}, wait)

    async def hold(self, call_id: str, on: bool = True, *, wait: float = 10.0) -> None:
        """Put the caller on hold (music/silence, re-INVITE) or take them off it."""
        await self._send(call_id, {"op": "hold", "on": on}, wait)

    async def send_dtmf(self, call_id: str, digits: str, *, wait: float = 15.0) -> None:
        """Send ``digits`` (0-9 * # A-D) to the other side of an answered call as RFC 2833 events; returns
        once they are out (about 0.3 s a key)."""
        await self._send(call_id, {"op": "dtmf", "digits": digits}, wait)

    async def _send(self, call_id: str, command: dict[str, Any], wait: float) -> None:
        call = await self.store.call(call_id)
        if call is None:
            raise NotFound(f"no call {call_id}", code="call_not_found")
        if call.get("status") != ACTIVE:
            raise Conflict(f"call {call_id} has ended", code="call_ended")
        reply_to = REPLIES_KEY.format(token=uuid.uuid4().hex)
        key = COMMANDS_KEY.format(worker_id=call["worker_id"])
        try:
            await self.redis.rpush(key, json.dumps({**command, "call_id": call_id, "reply_to": reply_to}))
            await self.redis.expire(key, COMMAND_TTL_SECONDS)
            reply = await self._reply(reply_to, wait)
        except (RedisError, OSError) as exc:
            raise Unavailable(
                f"cannot reach the telephony workers: {exc}", code="telephony_unavailable"
            ) from exc
        if reply is None:
            raise Unavailable(
                f"the worker owning call {call_id} did not answer", code="telephony_unavailable"
            )
        if not reply.get("ok"):
            if reply.get("code") == "call_not_found":
                raise Conflict(f"call {call_id} has ended", code="call_ended")
            raise Conflict(str(reply.get("detail", "the command failed")), code=str(reply.get("code")))

    async def _reply(self, key: str, wait: float) -> dict[str, Any] | None:
        # short blocking pops: the caller's Redis client may have a socket timeout of a few seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while loop.time() < deadline:
            item = await self.redis.blpop([key], timeout=1)
            if item is not None:
                reply: dict[str, Any] = json.loads(item[1])
                return reply
        return None
