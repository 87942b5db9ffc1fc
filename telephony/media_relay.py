"""A call's audio between the telephony worker that owns the call and the web process that carries the
agent's web softphone (WebRTC, see ``agent_desktop.softphone``).

The two processes exchange raw PCM — 16 kHz, mono, signed 16-bit little-endian, 20 ms frames, the format
of ``Call.audio_frames`` and ``Call.send_audio`` — over Redis pub/sub channels, one per side of the call
(``media_channel(db, call_id, side)``):

* ``caller``: what the caller says, published by the worker; the agent and supervisors hear it;
* ``agent``: what the agent says (web softphone); the caller and supervisors hear it;
* ``whisper``: a supervisor coaching the agent; only the agent hears it;
* ``barge``: a supervisor joining the conversation; the agent and the caller hear it.

The worker mixes ``barge`` into what it plays to the caller, paced by the agent's frames (and on its own
when the agent's side is quiet).

Pub/sub fits live audio: a frame nobody listens to is dropped rather than queued, and a late frame is as
good as lost anyway. On loopback a frame takes well under a millisecond; one call is 100 small messages a
second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.log import get_logger
from telephony.api import FRAME_BYTES, Call, CallEnded, CallError

log = get_logger(__name__)

Side = Literal["caller", "agent", "whisper", "barge"]
AGENT_SILENT_SECONDS = 0.06  # no agent frame for this long: barge frames go to the caller unmixed


def media_channel(db_name: str, call_id: str, side: Side) -> str:
    return f"huiliu-media:{db_name}:{call_id}:{side}"


async def relay_call_audio(
    call: Call, redis: aioredis.Redis, *, db_name: str, channel_id: str | None = None
) -> None:
    """Publish the caller's audio and play the agent's audio into the call until the call ends (or this is
    cancelled, e.g. when the agent leg is gone). ``channel_id`` names the channels when they are another
    call's: an agent consulting a transfer target talks to the target on the customer's call's channels
    (``telephony.consult``)."""
    channel_id = channel_id or call.call_id
    upstream = asyncio.create_task(
        _caller_to_redis(call, redis, db_name, channel_id), name=f"media-up-{call.call_id}"
    )
    downstream = asyncio.create_task(
        _redis_to_caller(call, redis, db_name, channel_id), name=f"media-down-{call.call_id}"
    )
    try:
        done, _ = await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                if not isinstance(exc, CallEnded):
                    log.warning("media.relay_failed", call_id=call.call_id, error=str(exc))
    finally:
        for task in (upstream, downstream):
            task.cancel()
        for task in (upstream, downstream):
            with contextlib.suppress(asyncio.CancelledError, CallError, RedisError, OSError):
                await task


async def _caller_to_redis(call: Call, redis: aioredis.Redis, db_name: str, channel_id: str) -> None:
    channel = media_channel(db_name, channel_id, "caller")
    async for frame in call.audio_frames():
        try:
            await redis.publish(channel, frame)
        except (RedisError, OSError) as exc:  # a Redis hiccup costs audio, never the call
            log.warning("media.publish_failed", call_id=call.call_id, error=str(exc))
            await asyncio.sleep(0.5)


def mix_frames(frames: Sequence[bytes]) -> bytes:
    """Sum 16-bit PCM frames sample by sample, clipped; the result is as long as the longest."""
    if len(frames) == 1:
        return frames[0]
    import numpy as np  # only mixing needs it (a supervisor on a call): not in every idle worker (~10 MiB)

    length = max(len(frame) for frame in frames) // 2
    total = np.zeros(length, dtype=np.int32)
    for frame in frames:
        samples = np.frombuffer(frame[: len(frame) - len(frame) % 2], dtype="<i2")
        total[: len(samples)] += samples
    return np.clip(total, -32768, 32767).astype("<i2").tobytes()


def valid_pcm(data: object) -> bytes | None:
    if isinstance(data, bytes) and data and len(data) % 2 == 0 and len(data) <= 50 * FRAME_BYTES:
        return data
    return None


async def _redis_to_caller(call: Call, redis: aioredis.Redis, db_name: str, channel_id: str) -> None:
    agent = media_channel(db_name, channel_id, "agent").encode()
    barge = media_channel(db_name, channel_id, "barge").encode()
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    loop = asyncio.get_running_loop()
    last_agent_frame = 0.0
    barged: deque[bytes] = deque(maxlen=25)
    try:
        await pubsub.subscribe(agent, barge)
        while True:
            message = await pubsub.get_message(timeout=AGENT_SILENT_SECONDS)
            pcm = valid_pcm(message.get("data")) if message else None
            if pcm is not None and message is not None and message.get("channel") == barge:
                barged.append(pcm)
                pcm = None
            if pcm is not None:
                last_agent_frame = loop.time()
                await call.send_audio(mix_frames([pcm, barged.popleft()]) if barged else pcm)
            elif barged and loop.time() - last_agent_frame > AGENT_SILENT_SECONDS:
                await call.send_audio(barged.popleft())
    finally:
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
