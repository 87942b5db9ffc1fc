"""A call's live transcript: what the caller says, as the speech engine hears it.

* ``transcript.final`` — a timeline event of the call (``call.log_event``: on a real call the call's own
  ordered journal writes it to the caller's customer and the call's conversation).
* ``transcript.partial`` — published on the bus only (topic ``transcript.partial``, as ``asr.transcripts``
  does), for the agent's and supervisor's live view; never stored, lost when nobody listens.

Both carry the engine's result (``text``, ``start``/``end`` seconds into the listening, ``confidence``,
``words``, ``phrase``, ``language``, ``engine``) plus ``call_id``, ``source`` (``<call id>:caller``),
``speaker`` and ``utterance`` (n-th final of the call); finals also carry the flow ``node`` listening.

``CallTranscript`` listens during a flow's ``listen`` nodes (it is the executor's transcript listener);
``transcribe_call`` covers the whole call with a stream of its own (setting ``ivr_transcribe=call``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

from core.bus import EventBus
from core.db import utcnow
from core.log import get_logger
from ivr_flows.understanding import Transcribed, transcribed
from telephony.api import Call, CallEnded

if TYPE_CHECKING:
    from asr import Recognizer

log = get_logger(__name__)

PARTIAL_TOPIC = "transcript.partial"  # the topic asr.transcripts publishes partials on
FINAL_KIND = "transcript.final"


class CallTranscript:
    def __init__(self, call: Call, bus: EventBus | None) -> None:
        self.call = call
        self.bus = bus
        self.source = f"{call.call_id}:caller"[:150]
        self.finals = 0
        self.partials = 0
        self.node: str | None = None

    async def __call__(self, heard: Transcribed) -> None:
        body: dict[str, Any] = {
            **heard.body,
            "call_id": self.call.call_id,
            "source": self.source,
            "speaker": "customer",
            "utterance": self.finals,
        }
        if heard.final:
            if self.node is not None:
                body["node"] = self.node
            self.finals += 1
            await self.call.log_event(FINAL_KIND, body)
            return
        if self.bus is None:
            return
        self.partials += 1
        event = {
            "id": f"{self.source}:{body['utterance']}:{self.partials}:{uuid.uuid4().hex[:6]}",
            "ts": utcnow().isoformat(),
            "kind": PARTIAL_TOPIC,
            "caller": self.call.caller,
            **body,
        }
        try:
            await self.bus.publish(PARTIAL_TOPIC, event)
        except Exception:  # a lost partial is replaced by the next one
            log.warning("ivr.partial_not_published", call_id=self.call.call_id, exc_info=True)


async def transcribe_call(call: Call, recognizer: Recognizer, language: str, bus: EventBus | None) -> None:
    """Transcribe everything the caller says until the call ends (run it as a task; cancel to stop)."""
    transcript = CallTranscript(call, bus)
    stream = recognizer.open_stream(language)
    engine = getattr(recognizer, "engine", "")

    async def feed() -> None:
        with contextlib.suppress(CallEnded):
            async for frame in call.audio_frames():
                await stream.feed(frame)
        await stream.finish()

    feeding = asyncio.create_task(feed(), name=f"transcribe-{call.call_id}")
    try:
        async for result in stream.results():
            if result.text.strip() or not result.is_final:
                await transcript(transcribed(result, engine))
    finally:
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeding
        await stream.aclose()
