"""From a recognition stream to the customer's timeline: finals are stored, partials are only announced.

* ``transcript.final`` — appended to the timeline through ``omnichannel`` (MongoDB first; the timeline then
  announces ``timeline.transcript.final`` on the bus). Keyed ``transcript:<source>:<n>`` for the n-th
  non-empty final of the source, so replaying the same audio after a crash stores nothing twice.
* ``transcript.partial`` — published on the bus only (topic ``transcript.partial``), for the live transcript
  on the agent and supervisor desktops; never stored, lost if nobody listens.

Body fields (both kinds): ``text``, ``start``/``end`` (seconds into the stream), ``confidence``, ``words``,
``phrase``, ``language``, ``speaker``, ``source``, ``utterance`` (n), ``engine``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any, Literal

from pymongo.errors import PyMongoError

from asr.recognizer import RecognitionResult, RecognizerStream
from core.bus import EventBus
from core.db import utcnow
from core.errors import Invalid
from core.log import get_logger
from omnichannel import Actor, Channel, NewEvent, Omnichannel, TimelineEvent

log = get_logger(__name__)

PARTIAL_TOPIC = "transcript.partial"
FINAL_KIND = "transcript.final"
APPEND_ATTEMPTS = 3
MAX_SOURCE_CHARS = 150

Speaker = Literal["customer", "agent"]


class TranscriptRecorder:
    """Drains recognition streams into the timeline (finals) and onto the bus (partials)."""

    def __init__(
        self, omni: Omnichannel, bus: EventBus | None, *, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.omni = omni
        self.bus = bus
        self.clock = clock

    async def record(
        self,
        stream: RecognizerStream,
        *,
        customer_id: str,
        source: str,
        conversation_id: str | None = None,
        speaker: Speaker = "customer",
        actor: Actor | None = None,
        engine: str = "",
        started_at: dt.datetime | None = None,
    ) -> list[TimelineEvent]:
        """Consume ``stream.results()`` until it ends; returns the stored finals (empty finals are skipped).

        ``source`` names the audio (e.g. ``<call id>:caller``) and must be stable across retries.
        ``started_at`` is the wall-clock time of the stream's first sample (default: now); an event's
        ``ts`` is when its utterance ended.
        """
        if not source or len(source) > MAX_SOURCE_CHARS:
            raise Invalid(f"source must be 1..{MAX_SOURCE_CHARS} characters", code="asr_source")
        started = started_at or self.clock()
        who = actor or Actor(type=speaker)
        context = {
            "customer_id": customer_id,
            "conversation_id": conversation_id,
            "source": source,
            "speaker": speaker,
            "engine": engine,
        }
        stored: list[TimelineEvent] = []
        utterance = 0
        partials = 0
        async for result in stream.results():
            if not result.is_final:
                partials += 1
                await self._publish_partial(result, context, utterance, f"{source}:{utterance}:{partials}")
                continue
            if not result.text:
                continue
            event = NewEvent(
                kind=FINAL_KIND,
                channel=Channel.voice,
                conversation_id=conversation_id,
                ts=started + dt.timedelta(seconds=result.end),
                body=self._body(result, context, utterance),
                idempotency_key=f"transcript:{source}:{utterance}",
            )
            stored.append(await self._append(customer_id, event, who))
            utterance += 1
        return stored

    @staticmethod
    def _body(result: RecognitionResult, context: dict[str, Any], utterance: int) -> dict[str, Any]:
        body = result.to_json()
        del body["is_final"]
        body.update(
            speaker=context["speaker"],
            source=context["source"],
            engine=context["engine"],
            utterance=utterance,
        )
        return body

    async def _publish_partial(
        self, result: RecognitionResult, context: dict[str, Any], utterance: int, event_id: str
    ) -> None:
        if self.bus is None:
            return
        event = {
            "id": event_id,
            "ts": self.clock().isoformat(),
            "kind": PARTIAL_TOPIC,
            **context,
            **self._body(result, context, utterance),
        }
        try:
            await self.bus.publish(PARTIAL_TOPIC, event)
        except Exception:
            # A lost partial is replaced by the next one; it must not stop the transcript.
            log.warning("asr.partial_not_published", source=context["source"], exc_info=True)

    async def _append(self, customer_id: str, event: NewEvent, actor: Actor) -> TimelineEvent:
        for attempt in range(1, APPEND_ATTEMPTS + 1):
            try:
                stored, _created = await self.omni.timeline.append(customer_id, event, actor)
                return stored
            except PyMongoError:
                if attempt == APPEND_ATTEMPTS:
                    raise
                log.warning("asr.final_append_retry", key=event.idempotency_key, attempt=attempt)
                await asyncio.sleep(0.2 * attempt)
        raise AssertionError("unreachable")
