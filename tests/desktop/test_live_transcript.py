"""The live transcript of a call as the agent and the supervisor see it: partial results (not on the
timeline, replaced by the next) reach the agent who has the call; a supervisor who watches a call gets what
was said so far, then every final and partial, until they stop watching. Real Socket.IO clients on the real
app; the partials are published by the IVR's own ``CallTranscript``."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer

from agent_desktop import Desktop
from agent_desktop.http import DESKTOP
from core.app import BUS
from core.auth import NewUser, Role
from core.http import USERS
from ivr_flows import FakeCall
from ivr_flows.transcript import CallTranscript
from ivr_flows.understanding import Transcribed
from omnichannel import Actor, Channel, NewEvent
from tests.desktop.conftest import Connect, caller_with_history, make_agent, make_queue, queue_request

CALLER = "13800138000"


async def _partial(server: TestServer, call_id: str, text: str) -> None:
    call = FakeCall(call_id=call_id, caller=f"+86{CALLER}")
    await CallTranscript(call, server.app[BUS])(Transcribed(final=False, body={"text": text}))


async def test_the_agent_with_the_call_sees_the_callers_words_as_they_come(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    _, token = await make_agent(server, "listener", {"after_sales": 1})
    _, other_token = await make_agent(server, "bystander", {"after_sales": 1}, available=False)
    desk, other = await connect(server, token), await connect(server, other_token)
    _, call_id = await caller_with_history(server, CALLER)
    await desktop.gateway.enqueue(queue_request(call_id))
    offer = await desk.next("offer")
    assert (await desk.call("accept", {"contact_id": offer["contact"]["id"]}))["ok"]["status"] == "connected"

    await _partial(server, call_id, "我的快递")
    partial = await desk.next("transcript.partial")
    assert partial["contact_id"] == offer["contact"]["id"] and partial["call_id"] == call_id
    assert partial["text"] == "我的快递" and partial["speaker"] == "customer"
    assert other.events["transcript.partial"].empty()


async def test_a_supervisor_watching_a_call_gets_what_was_said_then_each_new_word_until_they_stop(
    server: TestServer, connect: Connect
) -> None:
    users = server.app[USERS]
    await users.create(NewUser(username="floor_lead", password="floor-lead-password", role=Role.supervisor))
    token, _ = await users.login("floor_lead", "floor-lead-password")
    board = await connect(server, token, "/supervisor")
    customer_id, call_id = await caller_with_history(server, CALLER)
    omni = server.app[DESKTOP].acd.omni
    await (
        server.app[DESKTOP]
        .store.contacts.database["calls"]
        .insert_one({"_id": call_id, "customer_id": customer_id, "status": "active"})
    )
    for text in ("我要退货", "订单号 12345"):
        await omni.timeline.append(
            customer_id,
            NewEvent(kind="transcript.final", channel=Channel.voice, body={"text": text, "call_id": call_id}),
            Actor(type="customer"),
        )

    so_far = (await board.call("watch_call", {"call_id": call_id}))["ok"]
    assert [final["body"]["text"] for final in so_far["finals"]] == ["我要退货", "订单号 12345"]

    await _partial(server, call_id, "什么时候")
    assert (await board.next("transcript.partial"))["text"] == "什么时候"
    await omni.timeline.append(
        customer_id,
        NewEvent(
            kind="transcript.final", channel=Channel.voice, body={"text": "什么时候退款", "call_id": call_id}
        ),
        Actor(type="customer"),
    )
    assert (await board.next("transcript"))["body"]["text"] == "什么时候退款"

    assert (await board.call("unwatch_call", {"call_id": call_id}))["ok"] == {"call_id": call_id}
    await _partial(server, call_id, "还在吗")
    await asyncio.sleep(0.5)
    assert board.events["transcript.partial"].empty()
    assert (await board.call("watch_call", {"call_id": "no-such-call"}))["error"]["code"] == "call_not_found"
