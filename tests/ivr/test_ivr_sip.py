"""The IVR on real SIP calls: a telephony node (Kamailio + two pjsua2 workers) whose default router is the
flow engine, a pjsua2 caller typing RFC 2833 / SIP INFO DTMF and speaking espeak-ng audio, the flow
versions in MongoDB, queues in the ACD's MongoDB collections, tickets through the tickets service.

The node serves the shipped ``main.yaml`` with its office hours set to always open (so the tests do not
depend on the time of day in Shanghai) on every number, and a one-question speech flow on 1001.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.bus import EventBus
from core.db import Database
from core.embedded import EmbeddedServer
from ivr_flows import FlowInvalid, FlowService, FlowStore, PromptRenderer, parse_flow
from ivr_flows.service import FLOW_ACTIVATED, SHIPPED_DIR
from tests.telephony.node import Node, sip_tools_missing, start_node, stop_node
from tests.telephony.test_telephony_calls import sip_request

MAIN = (SHIPPED_DIR / "main.yaml").read_text(encoding="utf-8")
ALWAYS_OPEN = MAIN.replace(
    '    hours:\n      mon-fri: "08:00-22:00"\n      sat-sun: "09:00-18:00"\n'
    "    holidays: [2026-01-01, 2026-02-17, 2026-02-18, 2026-10-01, 2026-10-02]\n",
    '    hours: {mon-sun: "00:00-24:00"}\n',
)
DICTATION = """\
description: one question, answered by speech (live transcript test)
language: en
start: ask
variables: {order_number: ""}
nodes:
  ask:
    type: listen
    prompt: {say: "Hello.", language: en}
    timeout: 25  # whisper decodes an utterance once it ended: seconds on two busy cores
    retries: 0
    next: understand
    on_failure: bye
  understand:
    type: intent
    text: "{utterance}"
    min_confidence: 0.3
    entities: {order_number: order_number}
    branches: {return_request: ticket}
    default: bye
  ticket:
    type: ticket
    intent: "{intent}"
    fields: {order_number: "{order_number}"}
    summary: "{utterance}"
    into: ticket_number
    next: bye
  bye:
    type: hangup
    prompt: {say: "Goodbye.", language: en}
"""


def number() -> str:
    return "139" + str(uuid.uuid4().int)[:8]


async def _install(mongo_url: str, redis_url: str, db_name: str) -> None:
    db = Database.connect(mongo_url, db_name)
    redis = aioredis.from_url(redis_url)
    try:
        service = FlowService(FlowStore(db), EventBus(redis, db))
        await service.upload("main", ALWAYS_OPEN, "test", activate=True)
        await service.upload("dictation", DICTATION, "test", activate=True)
    finally:
        await redis.aclose()
        await db.close()


@pytest.fixture(scope="module")
def ivr_node(
    mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    missing = sip_tools_missing()
    if missing:
        pytest.skip(missing)
    assert ALWAYS_OPEN != MAIN, "main.yaml's office hours changed: update ALWAYS_OPEN"
    db_name = f"t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_install(mongo_server.url, redis_server.url, db_name))
    running = start_node(
        tmp_path_factory.mktemp("ivr"),
        mongo_server,
        redis_server,
        db_name=db_name,
        telephony_router="ivr_flows.line:router",
        ivr_lines="1001=dictation,*=main",
        ivr_flow_poll_seconds="60",  # activations must arrive over the bus
        log_format="json",
    )
    yield running
    stop_node(running)


@pytest.fixture(scope="module")
def seconds_of(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """How long a node's prompt of main.yaml plays (the same TTS the node renders)."""
    renderer = PromptRenderer(tmp_path_factory.mktemp("prompts"))
    flow = parse_flow(ALWAYS_OPEN, "main.yaml")

    def seconds(node_id: str, field: str = "prompt") -> float:
        path = asyncio.run(renderer.render(getattr(flow.nodes[node_id], field), "zh"))
        with wave.open(str(path), "rb") as audio:
            return float(audio.getnframes() / audio.getframerate())

    return seconds


def steps(node: Node, call_id: str) -> list[dict[str, Any]]:
    return [event["body"] for event in node.events(call_id) if event["kind"] == "ivr.step"]


def ended(node: Node, caller: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The caller's only call once it has ended, and its timeline."""
    call = node.wait_for(
        lambda: (found := node.calls_from("+86" + caller)) and found[0]["status"] == "ended" and found[0],
        within=20,
        what="the call to end",
    )
    node.wait_for(
        lambda: any(event["kind"] == "call.ended" for event in node.events(call["_id"])),
        what="call.ended on the timeline",
    )
    time.sleep(0.5)  # what the flow logged as the call ended
    return call, node.events(call["_id"])


def test_caller_barging_in_with_1_and_keying_an_order_number_waits_in_the_after_sales_queue(
    ivr_node: Node, seconds_of: Any
) -> None:
    caller = number()
    greeting = seconds_of("greeting")
    press_1_at = greeting + 1.5  # one and a half seconds into the menu prompt
    result = ivr_node.peer(
        "--target", f"sip:4008001234@{ivr_node.front}", "--caller", caller,
        "--keys", f"1@{press_1_at}", "--keys", f"12345#@{press_1_at + 2}", "--hangup-at", "14",
        seconds=20,
    )  # fmt: skip
    assert result["call"]["connected"] and result["call"]["rms"] > 300, result
    call, events = ended(ivr_node, caller)

    walked = steps(ivr_node, call["_id"])
    assert [step["node"] for step in walked[:5]] == [
        "office_hours", "greeting", "main_menu", "after_sales", "after_sales_queue",
    ], (call.get("cause"), walked)  # fmt: skip
    assert walked[2]["input"] == ["1"] and walked[2]["result"] == "chose 1"
    assert walked[3]["result"] == "dtmf" and walked[3]["input"][-1] == {"dtmf": "12345"}
    # barge-in: the menu was left long before its prompt (about 9 s) would have ended
    times = {event["body"].get("node"): event["ts"] for event in events if event["kind"] == "ivr.step"}
    assert (times["main_menu"] - times["greeting"]).total_seconds() < seconds_of("main_menu") - 3

    contact = ivr_node.mongo().queue_contacts.find_one({"external_ref": call["_id"]})
    assert contact is not None, "the call never reached the ACD"
    assert contact["queue"] == "after_sales" and contact["skills"] == {"after_sales": 1}
    assert contact["kind"] == "call" and contact["customer_id"] == str(events[0]["customer_id"])
    assert contact["context"]["variables"]["order_number"] == "12345"
    assert [step["node"] for step in contact["context"]["path"]][-1] == "after_sales"
    # nobody staffs after_sales in this test: the caller was withdrawn and offered a callback
    assert contact["status"] == "withdrawn"
    [queued] = [event for event in events if event["kind"] == "call.queued"]
    assert queued["body"]["queue"] == "after_sales" and queued["body"]["skills"] == ["after_sales"]
    # what the timeline is told; the ACD's routing ids stay out of it
    assert set(queued["body"]) == {"call_id", "queue", "skills", "priority", "max_wait", "context"}
    kinds = [event["kind"] for event in events]
    assert kinds[:3] == ["call.started", "call.answered", "ivr.step"]
    assert kinds.index("call.queued") < kinds.index("call.ended")
    [end] = [event for event in events if event["kind"] == "call.ended"]
    assert end["body"]["cause"] == "caller_hangup"


def test_an_invalid_key_and_silence_follow_the_menu_then_sip_info_0_reaches_an_agent_queue(
    ivr_node: Node, seconds_of: Any
) -> None:
    caller = number()
    greeting, invalid, menu = (
        seconds_of("greeting"),
        seconds_of("main_menu", "invalid_prompt"),
        seconds_of("main_menu"),
    )
    silence_prompt = seconds_of("main_menu", "timeout_prompt")
    press_0_at = greeting + invalid + menu + 6 + silence_prompt + 2.0  # into the third menu prompt
    result = ivr_node.peer(
        "--target", f"sip:4008001234@{ivr_node.front}", "--caller", caller, "--dtmf-method", "info",
        "--keys", "7@1.0", "--keys", f"0@{press_0_at}", "--hangup-at", f"{press_0_at + 4}",
        seconds=press_0_at + 10,
    )  # fmt: skip
    assert result["call"]["connected"], result
    call, _ = ended(ivr_node, caller)
    walked = steps(ivr_node, call["_id"])
    menu_step = next(step for step in walked if step["node"] == "main_menu")
    assert menu_step["input"] == ["7", "timeout", "0"] and menu_step["next"] == "agent_queue"
    contact = ivr_node.mongo().queue_contacts.find_one({"external_ref": call["_id"]})
    assert contact is not None and contact["queue"] == "general" and contact["skills"] == {"general": 1}


def test_caller_hanging_up_mid_prompt_ends_the_call_and_leaves_nothing_running(ivr_node: Node) -> None:
    caller = number()
    ivr_node.peer(
        "--target", f"sip:4008001234@{ivr_node.front}", "--caller", caller, "--hangup-at", "1.0",
        seconds=6,
    )  # fmt: skip
    call, events = ended(ivr_node, caller)
    assert call["cause"] == "caller_hangup"
    [end] = [event for event in events if event["kind"] == "call.ended"]
    assert end["body"]["cause"] == "caller_hangup"
    walked = steps(ivr_node, call["_id"])
    assert walked[-1]["node"] == "greeting" and walked[-1]["result"] == "hung_up"
    ivr_node.wait_for(
        lambda: all(
            doc["active_calls"] == 0
            for doc in ivr_node.mongo().telephony_workers.find(
                {"expires_at": {"$gt": dt.datetime.now(dt.UTC)}}
            )
        ),
        what="no call left on any live worker",
    )
    assert ivr_node.mongo().calls.count_documents({"status": "active"}) == 0


def test_an_invite_offering_only_an_unsupported_codec_gets_488(ivr_node: Node) -> None:
    response = sip_request(ivr_node.sip_port, "INVITE", "sip:4008001234@127.0.0.1", sdp=True, codec="AMR-WB")
    assert response.startswith("SIP/2.0 488"), response


async def test_a_flow_with_an_error_is_refused_with_its_line_while_calls_keep_working(
    ivr_node: Node, redis_server: EmbeddedServer
) -> None:
    broken = ALWAYS_OPEN.replace("      0: agent_queue\n", "      0: agent_queu\n")
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "agent_queu\n" in text + "\n")
    db = Database.connect(ivr_node.mongo_url, ivr_node.db_name)
    redis = aioredis.from_url(redis_server.url)
    try:
        store = FlowStore(db)
        service = FlowService(store, EventBus(redis, db))
        serving = (await store.active("main")).version  # type: ignore[union-attr]
        with pytest.raises(FlowInvalid) as refused:
            await service.upload("main", broken, "test", activate=True)
        [error] = refused.value.errors
        assert (error.file, error.line, error.node) == ("main.yaml", line, "main_menu"), error
        assert "agent_queu" in error.message
        # a broken version that reached MongoDB some other way is refused by the workers too
        stored = await store.add("main", broken, "test", "not-checked")
        await store.activate("main", stored.version, "test")
        await service.bus.publish(  # type: ignore[union-attr]
            FLOW_ACTIVATED, {"id": uuid.uuid4().hex, "name": "main", "version": stored.version}
        )
        await asyncio.sleep(1.5)
    finally:
        await redis.aclose()
        await db.close()
    logs = ivr_node.log("telephony-w0.log") + ivr_node.log("telephony-w1.log")
    assert "flow.refused" in logs and f"main.yaml:{line}:" in logs

    caller = number()
    ivr_node.peer(
        "--target", f"sip:4008001234@{ivr_node.front}", "--caller", caller, "--keys", "0@1.0",
        "--hangup-at", "5", seconds=8,
    )  # fmt: skip
    call, _ = await asyncio.to_thread(ended, ivr_node, caller)
    walked = steps(ivr_node, call["_id"])
    assert {step["version"] for step in walked} == {serving}
    assert [step["node"] for step in walked][:3] == ["office_hours", "greeting", "main_menu"]


async def test_a_new_version_activated_serves_the_next_call_at_once(
    ivr_node: Node, redis_server: EmbeddedServer
) -> None:
    # the same flow with another greeting (it keeps serving the tests after this one)
    greeting = "您好，欢迎致电汇流客服。"
    assert greeting in ALWAYS_OPEN
    newer = ALWAYS_OPEN.replace(greeting, "您好，这里是汇流客服。", 1)
    db = Database.connect(ivr_node.mongo_url, ivr_node.db_name)
    redis = aioredis.from_url(redis_server.url)
    try:
        service = FlowService(FlowStore(db), EventBus(redis, db))
        activated = await service.upload("main", newer, "test", activate=True)
        await asyncio.sleep(1.0)  # over the bus: the workers' poll is a minute here
        caller = number()
        await asyncio.to_thread(
            ivr_node.peer,
            "--target", f"sip:4008001234@{ivr_node.front}", "--caller", caller, "--hangup-at", "3",
            seconds=6,
        )  # fmt: skip
        call, _ = await asyncio.to_thread(ended, ivr_node, caller)
        walked = steps(ivr_node, call["_id"])
        assert {step["version"] for step in walked} == {activated.version}
        assert [step["node"] for step in walked][:2] == ["office_hours", "greeting"]
    finally:
        await redis.aclose()
        await db.close()


def test_what_the_caller_says_is_transcribed_onto_the_timeline_and_understood(
    ivr_node: Node, tmp_path: Path
) -> None:
    from tests.asr.speech import speaker

    speech = tmp_path / "return.wav"
    said = "I want to return order number 1 2 3 4 5"
    pcm = speaker(tmp_path)(said, voice="en-us", speed=140)
    with wave.open(str(speech), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(pcm)
    caller = number()
    ivr_node.peer(
        "--target", f"sip:1001@{ivr_node.front}", "--caller", caller, "--say", str(speech),
        "--say-at", "2.0", seconds=45,
    )  # fmt: skip
    call, events = ended(ivr_node, caller)
    finals = [event for event in events if event["kind"] == "transcript.final"]
    assert len(finals) == 1, [(event["kind"], event["body"]) for event in events]
    final = finals[0]
    assert "return order number" in final["body"]["text"].lower(), final["body"]
    assert final["body"]["engine"] and final["body"]["end"] > final["body"]["start"]
    assert final["body"]["node"] == "ask" and final["body"]["speaker"] == "customer"
    assert final["conversation_id"] == events[0]["conversation_id"]
    walked = steps(ivr_node, call["_id"])
    assert [step["node"] for step in walked] == ["ask", "understand", "ticket", "bye"], (walked, final)
    assert walked[1]["input"]["intent"] == "return_request"
    assert walked[1]["input"]["entities"] == {"order_number": "12345"}, walked[1]["input"]
    assert walked[2]["result"].startswith("ticket created")
    ticket = ivr_node.mongo().tickets.find_one({"customer_id": str(events[0]["customer_id"])})
    assert ticket is not None and ticket["intent"] == "return_request", ticket
    assert "12345" in str(ticket), ticket
    kinds = [event["kind"] for event in events]
    assert kinds.index("call.answered") < kinds.index("transcript.final") < kinds.index("call.ended")
