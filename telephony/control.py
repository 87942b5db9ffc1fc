"""Commands to live calls from any process (web, Celery): each goes to the worker that owns the call; and
outbound calls, placed by the least loaded live worker.

The ``calls`` document names the owning worker; the command is pushed on that worker's Redis list
(``COMMANDS_KEY``) with a reply key, and the worker's answer is awaited. A list rather than pub/sub: a
worker that is briefly disconnected from Redis still finds the command when it reconnects (it expires
after a minute, and the call's own end makes it moot).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.db import utcnow
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

    async def consult(self, call_id: str, target: str, *, wait: float = 45.0) -> str:
        """Hold the customer and ring ``target`` for the agent to talk to first (``telephony.consult``);
        returns the consultation leg's call id once the target answered."""
        reply = await self._send(call_id, {"op": "consult", "target": target}, wait)
        return str(reply.get("consult_call_id", ""))

    async def complete_consult(self, call_id: str, *, wait: float = 10.0) -> None:
        """Bridge the customer to the consulted target (the attended transfer is done)."""
        await self._send(call_id, {"op": "consult_complete"}, wait)

    async def cancel_consult(self, call_id: str, *, wait: float = 10.0) -> None:
        """End the consultation; the agent talks with the customer again."""
        await self._send(call_id, {"op": "consult_cancel"}, wait)

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

    async def dial(self, target: str, *, wait: float = 10.0) -> str:
        """Place an outbound call to ``target`` (a number dialed through the SIP front) on the least loaded
        live worker; the new call's id, once it rings out. ``Unavailable`` when no worker could place it."""
        workers = await self.store.live_workers(utcnow())
        candidates = sorted(
            (doc for doc in workers if not doc.get("draining") and _room(doc) > 0),
            key=lambda doc: (-_room(doc), random.random()),
        )
        if not candidates:
            raise Unavailable("no telephony worker can place a call now", code="telephony_unavailable")
        refused = ""
        for worker in candidates:  # a worker that filled up or began draining since its heartbeat says no
            # a worker that finds the command after ``until`` drops it: nobody waits for that call any more
            command = {"op": "dial", "target": target, "until": time.time() + wait}
            reply = await self._ask(str(worker["_id"]), command, wait)
            if reply is None:  # it may still be placing it: asking another worker could ring twice
                raise Unavailable(
                    f"telephony worker {worker.get('name', '')} did not answer", code="telephony_unavailable"
                )
            if reply.get("ok"):
                return str(reply["call_id"])
            refused = str(reply.get("detail", "the worker could not place the call"))
        raise Unavailable(f"the call could not be placed: {refused}", code="dial_failed")

    async def _send(self, call_id: str, command: dict[str, Any], wait: float) -> dict[str, Any]:
        call = await self.store.call(call_id)
        if call is None:
            raise NotFound(f"no call {call_id}", code="call_not_found")
        if call.get("status") != ACTIVE:
            raise Conflict(f"call {call_id} has ended", code="call_ended")
        reply = await self._ask(call["worker_id"], {**command, "call_id": call_id}, wait)
        if reply is None:
            raise Unavailable(
                f"the worker owning call {call_id} did not answer", code="telephony_unavailable"
            )
        if not reply.get("ok"):
            if reply.get("code") == "call_not_found":
                raise Conflict(f"call {call_id} has ended", code="call_ended")
            raise Conflict(str(reply.get("detail", "the command failed")), code=str(reply.get("code")))
        return reply

    async def _ask(self, worker_id: str, command: dict[str, Any], wait: float) -> dict[str, Any] | None:
        """Push ``command`` on the worker's list and wait for its reply (None: no reply within ``wait``)."""
        reply_to = REPLIES_KEY.format(token=uuid.uuid4().hex)
        key = COMMANDS_KEY.format(worker_id=worker_id)
        try:
            await self.redis.rpush(key, json.dumps({**command, "reply_to": reply_to}))
            await self.redis.expire(key, COMMAND_TTL_SECONDS)
            return await self._reply(reply_to, wait)
        except (RedisError, OSError) as exc:
            raise Unavailable(
                f"cannot reach the telephony workers: {exc}", code="telephony_unavailable"
            ) from exc

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


def _room(worker: dict[str, Any]) -> int:
    """How many more calls a worker said it can take at its last heartbeat."""
    return int(worker.get("max_calls") or 0) - int(worker.get("active_calls") or 0)
