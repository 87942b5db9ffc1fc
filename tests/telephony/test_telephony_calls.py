"""Real calls over loopback into a telephony node (Kamailio + pool of pjsua2 workers): what a caller does,
what the timeline then shows, and what the node survives."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.db import Database
from core.embedded import EmbeddedServer
from telephony.control import CallControl
from telephony.store import TelephonyStore
from tests.telephony.node import PEER, Node, free_udp_tcp_port


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["kind"] for event in events]


def only_call(node: Node, caller: str) -> dict[str, Any]:
    calls = node.calls_from(caller)
    assert len(calls) == 1, calls
    return calls[0]


def number() -> str:
    """A fresh mobile number per test, so each test's caller is a new customer."""
    return "139" + str(uuid.uuid4().int)[:8]


def test_caller_pressing_1_after_the_greeting_is_on_the_timeline_in_order(node: Node) -> None:
    caller = number()
    run = node.sipp("ivr_dtmf.xml", caller=caller, pause_ms=1500, digit="1")
    assert (run.successful, run.failed) == (1, 0), run.output[-2000:] + run.errors

    call = only_call(node, "+86" + caller)
    events = node.wait_for(
        lambda: (found := node.events(call["_id"])) and found[-1]["kind"] == "call.ended" and found,
        what="call.ended on the timeline",
    )
    assert kinds(events) == ["call.started", "call.answered", "ivr.step", "call.ended"]
    started, _, step, ended = events
    assert started["body"]["caller"] == "+86" + caller and started["body"]["called"] == "1000"
    assert step["body"] == {"call_id": call["_id"], "step": "demo.menu", "digit": "1", "input": "dtmf"}
    assert ended["body"]["cause"] == "normal" and ended["body"]["duration_seconds"] >= 1.5
    # one customer (found by the caller's number), one conversation for the call
    assert {event["customer_id"] for event in events} == {started["customer_id"]}
    conversation = node.mongo().conversations.find_one({"external_ref": call["_id"]})
    assert conversation["channel"] == "voice" and conversation["status"] == "closed"
    assert {event["conversation_id"] for event in events} == {conversation["_id"]}
    customer = node.mongo().customers.find_one({"_id": started["customer_id"]})
    assert {"kind": "phone", "value": "+86" + caller} in customer["identities"]


def test_a_pjsua2_caller_hears_the_greeting_and_its_sip_info_key_is_taken(node: Node) -> None:
    caller = number()
    result = node.peer(
        "--target", f"sip:1000@{node.front}", "--caller", caller, "--dtmf", "7", "--dtmf-at", "2.5",
        "--dtmf-method", "info",
    )  # fmt: skip
    heard = result["call"]
    assert heard["connected"] and heard["heard_seconds"] >= 2.0
    assert heard["rms"] > 300, f"the greeting was not heard: {heard}"
    call = only_call(node, "+86" + caller)
    events = node.wait_for(lambda: (found := node.events(call["_id"])) and len(found) == 4 and found)
    assert events[2]["body"]["digit"] == "7"


def test_more_calls_than_one_worker_holds_all_succeed_and_nobody_hears_busy(node: Node) -> None:
    caps = {doc["max_calls"] for doc in node.mongo().telephony_workers.find({"expires_at": {"$gt": _now()}})}
    calls = min(caps) + 2  # more than one worker can carry, fewer than the pool
    assert calls <= sum(
        doc["max_calls"] for doc in node.mongo().telephony_workers.find({"expires_at": {"$gt": _now()}})
    )
    caller = number()
    run = node.sipp("ivr_dtmf.xml", caller=caller, calls=calls, rate=20, pause_ms=2500, digit="3")
    assert (run.successful, run.failed) == (calls, 0), run.output[-2000:] + run.errors
    assert 486 not in run.responses
    assert "failing over" not in node.log("kamailio.log"), "a worker refused a call Kamailio gave it"
    owners = {doc["worker_id"] for doc in node.calls_from("+86" + caller)}
    assert len(owners) >= 2, "the calls were not spread over the pool"


def test_a_number_nobody_serves_is_refused_with_404(node: Node) -> None:
    response = sip_request(node.sip_port, "INVITE", "sip:99999@127.0.0.1", sdp=True)
    assert response.startswith("SIP/2.0 404"), response


def test_garbage_and_malformed_sip_leave_the_front_and_the_workers_up(node: Node) -> None:
    pids = node.worker_pids()
    junk = [
        os.urandom(1200),
        b"\x00" * 512,
        b"INVITE sip:1000@127.0.0.1 SIP/2.0\r\n\r\n",
        b"INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n"
        b"Content-Length: 99999\r\nCall-ID: x\r\nCSeq: banana INVITE\r\nFrom: <>\r\nTo: <>\r\n\r\nv=0",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Long: " + b"a" * 60_000 + b"\r\n\r\n",
        "INVITE sip:测试@127.0.0.1 SIP/2.0\r\nFrom: 😀\r\n\r\n".encode(),
    ]
    for port in (node.sip_port, *node.worker_ports):
        for payload in junk:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.sendto(payload[:65000], ("127.0.0.1", port))
            with socket.create_connection(("127.0.0.1", port), timeout=2) as tcp:
                tcp.sendall(payload)
    time.sleep(1.0)
    assert node.process.poll() is None
    assert node.worker_pids() == pids, "a worker died from garbage"
    for port in node.worker_ports:
        assert sip_request(port, "OPTIONS", f"sip:127.0.0.1:{port}").startswith("SIP/2.0 200")
    caller = number()
    run = node.sipp("ivr_dtmf.xml", caller=caller, pause_ms=500, digit="9")
    assert run.successful == 1, run.output[-2000:]


def test_a_worker_killed_mid_call_ends_the_call_as_node_lost_and_the_pool_recovers(node: Node) -> None:
    caller = number()
    waiting = node.start_sipp("caller_waits.xml", caller=caller)
    call = node.wait_for(
        lambda: (found := node.calls_from("+86" + caller)) and found[0].get("answered_at") and found[0],
        what="the call to be answered",
    )
    pid = int(call["worker_id"].split(":")[2])
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    ended = node.wait_for(
        lambda: (doc := node.call_doc(call["_id"])) and doc["status"] == "ended" and doc, within=10
    )
    assert ended["cause"] == "node_lost"
    assert time.monotonic() - killed_at < 5
    events = node.wait_for(lambda: (found := node.events(call["_id"])) and len(found) == 3 and found)
    assert kinds(events) == ["call.started", "call.answered", "call.ended"]
    assert events[-1]["body"]["cause"] == "node_lost"
    # the caller was hung up through the SIP front instead of being left in dead air
    run = waiting.finish(30)
    assert run.successful == 1, run.output[-2000:] + run.errors

    node.wait_for(lambda: pid not in node.worker_pids().values() and len(node.worker_pids()) == 2,
                  what="the worker to be restarted")  # fmt: skip
    again = number()
    run2 = node.sipp("ivr_dtmf.xml", caller=again, calls=4, rate=20, pause_ms=500, digit="2")
    assert (run2.successful, run2.failed) == (4, 0), run2.output[-2000:]


def test_a_hung_worker_stops_being_live_and_its_call_ends_as_node_lost(node: Node) -> None:
    """The pool writes its workers' heartbeats, but only for a worker that keeps writing its status: one
    that hangs (stopped here) is let expire and its call is ended, while the other worker stays live."""
    caller = number()
    waiting = node.start_sipp("caller_waits.xml", caller=caller)
    call = node.wait_for(
        lambda: (found := node.calls_from("+86" + caller)) and found[0].get("answered_at") and found[0],
        what="the call to be answered",
    )
    name, pid = call["worker_id"].split(":")[1], int(call["worker_id"].split(":")[2])
    others = {other: other_pid for other, other_pid in node.worker_pids().items() if other != name}
    assert others, "the node has one live worker besides the caller's"
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        ended = node.wait_for(
            lambda: (doc := node.call_doc(call["_id"])) and doc["status"] == "ended" and doc, within=15
        )
        # 2 s node timeout here, plus a beat (0.5 s) and the 1 s sweep
        assert ended["cause"] == "node_lost" and time.monotonic() - stopped_at < 6
        assert node.worker_pids() == others, "the hung worker still looks live, or the other one does not"
        before = node.mongo().telephony_workers.find_one({"pid": next(iter(others.values()))})["last_seen"]
        time.sleep(1.5)
        after = node.mongo().telephony_workers.find_one({"pid": next(iter(others.values()))})["last_seen"]
        assert after > before, "the pool stopped beating for the worker that is fine"
        run = waiting.finish(30)  # the caller was hung up through the SIP front
        assert run.successful == 1, run.output[-2000:] + run.errors
    finally:
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
    node.wait_for(lambda: len(node.worker_pids()) == 2, within=30, what="the worker to be restarted")


async def test_a_hang_up_from_the_web_reaches_the_worker_owning_the_call(
    node: Node, redis_server: EmbeddedServer
) -> None:
    caller = number()
    waiting = node.start_sipp("caller_waits.xml", caller=caller)
    db = Database.connect(node.mongo_url, node.db_name)
    redis = aioredis.from_url(redis_server.url, socket_timeout=2)
    try:
        call = await asyncio.to_thread(
            node.wait_for,
            lambda: (found := node.calls_from("+86" + caller)) and found[0].get("answered_at") and found[0],
        )
        await CallControl(TelephonyStore(db), redis).hangup(call["_id"])
        ended = await asyncio.to_thread(
            node.wait_for, lambda: (doc := node.call_doc(call["_id"])) and doc["status"] == "ended" and doc
        )
        assert ended["cause"] == "agent_hangup"
        run = await asyncio.to_thread(waiting.finish, 30)
        assert run.successful == 1, run.output[-2000:]
    finally:
        await redis.aclose()
        await db.close()


def test_voicemail_records_what_the_caller_says(node: Node) -> None:
    caller = number()
    result = node.peer(
        "--target", f"sip:2000@{node.front}", "--caller", caller, "--tone-hz", "300", seconds=10
    )
    assert result["call"]["connected"]
    call = only_call(node, "+86" + caller)
    recording = node.wait_for(lambda: node.mongo().recordings.find_one({"call_id": call["_id"]}))
    assert 1.8 <= recording["duration_seconds"] <= 2.3 and recording["ended_by"] == "max_seconds"
    from tests.telephony.peer import rms

    level, seconds = rms(__import__("pathlib").Path(recording["path"]))
    assert seconds == pytest.approx(recording["duration_seconds"], abs=0.05)
    assert level > 1000, "the recording is silent"
    assert kinds(node.events(call["_id"]))[-3:] == ["call.recorded", "ivr.step", "call.ended"]


def test_the_media_tap_hears_the_caller_and_the_caller_hears_what_python_sends(node: Node) -> None:
    caller = number()
    result = node.peer(
        "--target", f"sip:4000@{node.front}", "--caller", caller, "--tone-hz", "300", seconds=12
    )
    call = only_call(node, "+86" + caller)
    step = node.wait_for(lambda: next((e for e in node.events(call["_id"]) if e["kind"] == "ivr.step"), None))
    assert step["body"]["bytes"] >= 32_000 and step["body"]["rms"] > 1000, step["body"]
    assert result["call"]["rms"] > 1000, result


def test_a_blind_transfer_takes_the_caller_to_the_target(node: Node) -> None:
    caller = number()
    result = node.peer(
        "--target", f"sip:3000@{node.front}", "--caller", caller, "--dtmf", "", seconds=6
    )  # fmt: skip
    assert result["transferred_to"] and "1000@" in result["transferred_to"], result
    calls = node.wait_for(lambda: len(found := node.calls_from("+86" + caller)) == 2 and found)
    first, second = calls
    assert first["called"] == "3000" and second["called"] == "1000"
    first_events = node.events(first["_id"])
    assert kinds(first_events) == ["call.started", "call.answered", "call.transferred", "call.ended"]
    assert first_events[-1]["body"]["cause"] == "transferred"
    assert result["transferred"]["connected"] and result["transferred"]["rms"] > 300
    assert first["customer_id"] == second["customer_id"]


def test_an_attended_transfer_hands_the_caller_to_the_agent_who_answered_first(node: Node) -> None:
    agent_port = free_udp_tcp_port()
    agent = subprocess.Popen(
        [sys.executable, str(PEER), "--workdir", str(node.workdir), "--answer-on", str(agent_port),
         "--seconds", "25", "--until-hangup"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert agent.stdout is not None
        while agent.stdout.readline().strip() != "listening":
            assert agent.poll() is None, "the agent's phone did not start"
        caller = number()
        result = node.peer(
            "--target", f"sip:consult-{agent_port}@{node.front}", "--caller", caller, seconds=5
        )
        agent_output, _ = agent.communicate(timeout=40)
    finally:
        agent.kill()
    answered = json.loads(agent_output.strip().splitlines()[-1])
    assert result["transferred_to"] and f"127.0.0.1:{agent_port}" in result["transferred_to"], result
    assert "Replaces" in result["transferred_to"]
    assert answered["in1"]["connected"], "the agent never took the consultation call"
    assert answered["replaced"]["connected"] and result["transferred"]["connected"], (answered, result)
    call = only_call(node, "+86" + caller)
    events = node.wait_for(lambda: (found := node.events(call["_id"])) and len(found) == 4 and found)
    assert kinds(events) == ["call.started", "call.answered", "call.transferred", "call.ended"]
    assert events[2]["body"]["attended"] is True and events[3]["body"]["cause"] == "transferred"


# ------------------------------------------------------------------------------------------ helpers


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def sip_request(port: int, method: str, uri: str, *, sdp: bool = False, codec: str = "PCMU") -> str:
    """One SIP request over UDP (an INVITE offering ``codec`` with ``sdp``); the first final response."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        local = sock.getsockname()[1]
        tag, branch, call_id = uuid.uuid4().hex[:8], uuid.uuid4().hex, uuid.uuid4().hex
        payload, rate = (0, 8000) if codec == "PCMU" else (98, 16000)
        body = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {local + 2} RTP/AVP {payload}\r\na=rtpmap:{payload} {codec}/{rate}\r\n"
            if sdp
            else ""
        )
        headers = (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{branch};rport\r\n"
            f"From: <sip:13800000000@127.0.0.1>;tag={tag}\r\nTo: <{uri}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:13800000000@127.0.0.1:{local}>\r\n"
            f"Max-Forwards: 70\r\n"
            + ("Content-Type: application/sdp\r\n" if sdp else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.send((headers + body).encode())
        while True:
            response = sock.recv(65535).decode(errors="replace")
            if int(response.split(" ", 2)[1]) >= 200:
                if method == "INVITE":
                    to = next(line for line in response.split("\r\n") if line.lower().startswith("to:"))
                    ack = (
                        f"ACK {uri} SIP/2.0\r\n"
                        f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{branch};rport\r\n"
                        f"From: <sip:13800000000@127.0.0.1>;tag={tag}\r\n{to}\r\nCall-ID: {call_id}\r\n"
                        "CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                    )
                    sock.send(ack.encode())
                return response
