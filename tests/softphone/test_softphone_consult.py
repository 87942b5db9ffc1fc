"""Attended transfer from the softphone: the agent consults the target first, then completes or cancels.

Real parts: the web application (REST, ACD) on embedded MongoDB and redis-server, a telephony node (Kamailio +
one pjsua2 worker), and pjsua2 phones in their own processes (tests/telephony/peer.py): the customer calls in
playing a 300 Hz tone, the transfer target is a phone registered at the SIP front playing 500 Hz. The agent's
side is the web softphone's own interface to the worker — the call's Redis media channels
(``telephony.media_relay``), which aiortc fills in the browser tests — speaking 1100 Hz to the customer and
800 Hz while consulting. Each phone reports how loud each tone was in what it heard, so the test can tell who
heard whom.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import redis.asyncio as aioredis
import socketio
from aiohttp.test_utils import TestServer

from agent_desktop import AgentSkills, Desktop, QueueConfig
from agent_desktop.http import DESKTOP
from core.embedded import EmbeddedServer
from telephony.http import CALL_CONTROL
from telephony.media_relay import media_channel
from tests.conftest import ApiClient
from tests.desktop.conftest import AgentSocket, queue_request
from tests.softphone.phones import (  # noqa: F401 (the fixtures are used by name)
    PARKED_LINE,
    Phone,
    contact_status,
    go_available,
    mobile,
    node_fixture,
    phones_fixture,
    post,
    settings_fixture,
    until,
)
from tests.telephony.node import Node

RATE = 16_000
CUSTOMER_HZ, TARGET_HZ, AGENT_HZ, CONSULT_HZ = 300.0, 500.0, 1100.0, 800.0
HEARD = 300.0  # RMS of a tone someone heard (the tones are played at ~11,000 RMS)
UNHEARD = 150.0


def tone_frame(hz: float, n: int) -> bytes:
    t = (np.arange(320) + n * 320) / RATE
    return (np.sin(2 * math.pi * hz * t) * 12000).astype("<i2").tobytes()


def level(pcm: bytes, hz: float) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if not len(samples):
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    bins = np.fft.rfftfreq(len(samples), 1 / RATE)
    return float(np.sqrt(2 * spectrum[(bins > hz - 20) & (bins < hz + 20)].sum()) / len(samples))


@dataclass
class AgentAudio:
    """The agent's web softphone as the worker sees it: what it says (a tone, or silence) and what it hears,
    kept per phase of the test."""

    redis: aioredis.Redis
    db_name: str
    call_id: str
    saying: float | None = AGENT_HZ
    phase: str = "talk"
    heard: dict[str, bytearray] = field(default_factory=dict)

    async def speak(self) -> None:
        channel = media_channel(self.db_name, self.call_id, "agent")
        n = 0
        while True:
            if self.saying is not None:
                await self.redis.publish(channel, tone_frame(self.saying, n))
            n += 1
            await asyncio.sleep(0.02)

    async def listen(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(media_channel(self.db_name, self.call_id, "caller"))
        try:
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message and isinstance(message.get("data"), bytes):
                    self.heard.setdefault(self.phase, bytearray()).extend(message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    def level(self, phase: str, hz: float) -> float:
        return level(bytes(self.heard.get(phase, b"")), hz)


@pytest.fixture
async def redis(redis_server: EmbeddedServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def connected_call(node: Node, server: TestServer, agent: ApiClient, phones: list[Phone]) -> str:
    """A customer's call (playing its tone) that the ACD connected to agent1; its call id."""
    desktop: Desktop = server.app[DESKTOP]
    await desktop.store.create_queue(QueueConfig(id="after_sales", name="售后", skills={"after_sales": 1}))
    _, me, _ = await agent.request("GET", "/api/desktop/me")
    await desktop.agents.set_skills(me["user_id"], AgentSkills(skills={"after_sales": 2}))
    await go_available(agent)
    caller = mobile()
    phone = Phone(
        node,
        "--target", f"sip:{PARKED_LINE}@{node.front}", "--caller", caller, "--tone-hz", str(CUSTOMER_HZ),
        *listening_for(AGENT_HZ, CONSULT_HZ, TARGET_HZ),
        seconds=40,
    )  # fmt: skip
    phones.append(phone)
    call = await until(
        node,
        lambda: (found := node.calls_from("+86" + caller)) and found[0].get("answered_at") and found[0],
        what="the call answered",
    )
    await desktop.gateway.enqueue(queue_request(call["_id"], caller="+86" + caller))
    contact = await until(
        node,
        lambda: node.mongo().queue_contacts.find_one({"external_ref": call["_id"], "status": "offered"}),
        what="the offer",
    )
    status, accepted = await post(agent, f"/api/desktop/offers/{contact['_id']}/accept")
    assert status == 200, accepted
    return str(call["_id"])


def listening_for(*frequencies: float) -> list[str]:
    return [arg for hz in frequencies for arg in ("--listen-hz", str(hz))]


async def target_phone(node: Node, phones: list[Phone], *more: str) -> tuple[Phone, str]:
    number = "+86" + mobile()
    phone = Phone(
        node,
        "--register", node.front, "--caller", number, "--answer-after", "1", "--until-hangup",
        "--tone-hz", str(TARGET_HZ), *listening_for(CUSTOMER_HZ, AGENT_HZ, CONSULT_HZ), *more,
        seconds=40,
    )  # fmt: skip
    phones.append(phone)
    await phone.listening()
    return phone, number


@contextlib.asynccontextmanager
async def agent_softphone(
    server: TestServer, redis: aioredis.Redis, node: Node, call_id: str
) -> AsyncIterator[AgentAudio]:
    await server.app[CALL_CONTROL].attach_media(call_id)
    audio = AgentAudio(redis, node.db_name, call_id)
    tasks = [asyncio.create_task(audio.speak()), asyncio.create_task(audio.listen())]
    try:
        yield audio
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def consult_events(node: Node, call_id: str) -> list[tuple[str, str | None]]:
    return [
        (event["kind"], event["body"].get("outcome"))
        for event in node.events(call_id)
        if event["kind"].startswith("call.consult") or event["kind"] == "call.transferred"
    ]


async def test_the_agent_consults_the_target_then_hands_the_caller_over(
    node: Node,
    server: TestServer,
    agent: ApiClient,
    http: ApiClient,
    supervisor: ApiClient,
    redis: aioredis.Redis,
    phones: list[Phone],
) -> None:
    target, number = await target_phone(node, phones)
    call_id = await connected_call(node, server, agent, phones)
    customer = phones[-1]
    async with agent_softphone(server, redis, node, call_id) as audio:
        await asyncio.sleep(2.0)  # agent and customer talk
        # another agent may not consult on this call; nothing to complete before a consultation
        other = await http.as_user("agent2", "agent2-demo")
        status, problem = await post(other, f"/api/calls/{call_id}/consult", {"target": number})
        assert (status, problem["code"]) == (403, "not_your_call"), problem
        status, problem = await post(agent, f"/api/calls/{call_id}/consult/complete")
        assert (status, problem["code"]) == (409, "no_consultation"), problem

        audio.phase, audio.saying = "ringing", None
        status, consulted = await post(agent, f"/api/calls/{call_id}/consult", {"target": number})
        assert status == 200, consulted
        audio.phase, audio.saying = "consult", CONSULT_HZ
        assert consulted["call_id"] == call_id and consulted["consult_call_id"] not in ("", call_id)
        status, problem = await post(agent, f"/api/calls/{call_id}/consult", {"target": number})
        assert (status, problem["code"]) == (409, "consult_in_progress"), problem
        await asyncio.sleep(2.5)  # the agent and the target talk; the customer is on hold
        audio.phase, audio.saying = "after", None
        status, problem = await post(agent, f"/api/calls/{call_id}/consult/complete")
        assert status == 204, problem
        await asyncio.sleep(2.5)  # the customer and the target talk

    # the agent heard the customer, then only the target while consulting
    assert audio.level("talk", CUSTOMER_HZ) > HEARD, audio.level("talk", CUSTOMER_HZ)
    assert audio.level("consult", TARGET_HZ) > HEARD, audio.level("consult", TARGET_HZ)
    assert audio.level("consult", CUSTOMER_HZ) < UNHEARD, audio.level("consult", CUSTOMER_HZ)
    # once the transfer completed the agent is out of the call: nothing reaches their softphone
    assert audio.level("after", TARGET_HZ) < UNHEARD and audio.level("after", CUSTOMER_HZ) < UNHEARD

    # a supervisor hangs the customer up: the target's leg ends with it
    status, problem = await post(supervisor, f"/api/calls/{call_id}/hangup")
    assert status == 204, problem
    heard_by_customer = (await customer.result())["call"]
    heard_by_target = (await target.result())["in1"]
    # the customer heard the agent, was held (never heard the consultation), then talked with the target
    tones = heard_by_customer["tones"]
    assert tones["1100"] > HEARD and tones["500"] > HEARD and tones["800"] < UNHEARD, heard_by_customer
    assert heard_by_customer["media"][:3] == ["active", "remote_hold", "active"], heard_by_customer
    # the target heard the agent consulting, then the customer — never the agent's words to the customer
    tones = heard_by_target["tones"]
    assert tones["800"] > HEARD and tones["300"] > HEARD and tones["1100"] < UNHEARD, heard_by_target

    ended = await until(node, lambda: (doc := node.call_doc(call_id)) and doc["status"] == "ended" and doc)
    assert ended["cause"] == "agent_hangup", ended
    events = await until(
        node,
        lambda: (found := consult_events(node, call_id)) and len(found) == 3 and found,
        what="the consultation on the timeline",
    )
    assert events == [
        ("call.consult_started", None),
        ("call.consult_ended", "completed"),
        ("call.transferred", None),
    ]
    transferred = next(e for e in node.events(call_id) if e["kind"] == "call.transferred")
    assert transferred["body"]["attended"] is True and number in transferred["body"]["target"]


async def test_a_consultation_that_fails_or_is_cancelled_takes_the_agent_back_to_the_caller(
    node: Node, server: TestServer, agent: ApiClient, redis: aioredis.Redis, phones: list[Phone]
) -> None:
    target, number = await target_phone(node, phones)
    call_id = await connected_call(node, server, agent, phones)
    customer = phones[-1]
    async with agent_softphone(server, redis, node, call_id) as audio:
        await asyncio.sleep(1.0)
        # a number nobody has: refused with the reason, the agent is back with the customer
        status, problem = await post(agent, f"/api/calls/{call_id}/consult", {"target": "+86" + mobile()})
        assert (status, problem["code"]) == (409, "consult_failed"), problem["detail"]
        assert "unknown_destination" in problem["detail"], problem
        audio.phase = "back"
        await asyncio.sleep(1.5)
        # the target answers, the agent changes their mind
        audio.phase, audio.saying = "ringing", None
        status, consulted = await post(agent, f"/api/calls/{call_id}/consult", {"target": number})
        assert status == 200, (consulted, node.call_doc(call_id), node.events(call_id))
        audio.phase, audio.saying = "consult", CONSULT_HZ
        await asyncio.sleep(1.5)
        audio.saying = None  # the customer would hear what the agent says once back
        status, problem = await post(agent, f"/api/calls/{call_id}/consult/cancel")
        assert status == 204, problem
        audio.phase, audio.saying = "again", AGENT_HZ
        await asyncio.sleep(2.0)
        status, problem = await post(agent, f"/api/calls/{call_id}/consult/cancel")
        assert (status, problem["code"]) == (409, "no_consultation"), problem
    assert audio.level("back", CUSTOMER_HZ) > HEARD, audio.level("back", CUSTOMER_HZ)
    assert audio.level("consult", TARGET_HZ) > HEARD, audio.level("consult", TARGET_HZ)
    assert audio.level("again", CUSTOMER_HZ) > HEARD and audio.level("again", TARGET_HZ) < UNHEARD
    heard_by_target = (await target.result())["in1"]
    assert heard_by_target["connected"] and heard_by_target["tones"]["300"] < UNHEARD, heard_by_target

    status, problem = await post(agent, f"/api/calls/{call_id}/hangup")
    assert status == 204, problem
    heard_by_customer = (await customer.result())["call"]
    assert heard_by_customer["tones"]["500"] < UNHEARD and heard_by_customer["tones"]["800"] < UNHEARD
    assert heard_by_customer["tones"]["1100"] > HEARD, heard_by_customer
    events = await until(
        node,
        lambda: (found := consult_events(node, call_id)) and len(found) == 4 and found,
        what="both consultations on the timeline",
    )
    assert events == [
        ("call.consult_started", None),
        ("call.consult_ended", "unknown_destination"),
        ("call.consult_started", None),
        ("call.consult_ended", "cancelled"),
    ]
    # the call itself went on until the agent hung up; the contact ended with it
    ended = await until(node, lambda: (doc := node.call_doc(call_id)) and doc["status"] == "ended" and doc)
    assert ended["cause"] == "agent_hangup"


async def test_the_target_hanging_up_takes_the_agent_back_to_the_caller_and_tells_the_desktop(
    node: Node,
    server: TestServer,
    agent: ApiClient,
    redis: aioredis.Redis,
    phones: list[Phone],
) -> None:
    target, number = await target_phone(node, phones, "--hang-up-answered-at", "1.5")
    call_id = await connected_call(node, server, agent, phones)
    client = socketio.AsyncClient(reconnection=False)
    desktop = AgentSocket(client, "/agent")
    await client.connect(
        str(server.make_url("/")),
        namespaces=["/agent"],
        auth={"token": agent.token},
        transports=["websocket"],
        wait_timeout=5,
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(client.disconnect)
        audio = await stack.enter_async_context(agent_softphone(server, redis, node, call_id))
        audio.phase, audio.saying = "ringing", None
        status, consulted = await post(agent, f"/api/calls/{call_id}/consult", {"target": number})
        assert status == 200, consulted
        started = await desktop.next("call.consult", within=10)
        assert (started["kind"], started["call_id"]) == ("call.consult_started", call_id), started
        ended = await desktop.next("call.consult", within=10)
        assert (ended["kind"], ended["outcome"]) == ("call.consult_ended", "target_hung_up"), ended
        assert ended["contact_id"] == started["contact_id"] and number in ended["target"]
        audio.phase, audio.saying = "back", AGENT_HZ
        await asyncio.sleep(1.5)
        status, problem = await post(agent, f"/api/calls/{call_id}/consult/complete")
        assert (status, problem["code"]) == (409, "no_consultation"), problem
    assert audio.level("back", CUSTOMER_HZ) > HEARD, audio.level("back", CUSTOMER_HZ)
    assert (await target.result())["in1"]["connected"]
    status, problem = await post(agent, f"/api/calls/{call_id}/hangup")
    assert status == 204, problem
    assert (await phones[-1].result())["call"]["tones"]["1100"] > HEARD


async def test_a_target_still_ringing_is_let_go_when_the_agent_cancels_or_the_customer_hangs_up(
    node: Node, server: TestServer, agent: ApiClient, supervisor: ApiClient, phones: list[Phone]
) -> None:
    slow, slow_number = await target_phone(node, phones, "--answer-after", "8")
    other, other_number = await target_phone(node, phones, "--answer-after", "8")
    call_id = await connected_call(node, server, agent, phones)

    # the agent gives up on a target that does not pick up: back to the customer at once
    ringing = asyncio.create_task(post(agent, f"/api/calls/{call_id}/consult", {"target": slow_number}))
    await asyncio.sleep(1.5)
    status, problem = await post(agent, f"/api/calls/{call_id}/consult/cancel")
    assert status == 204, problem
    status, problem = await asyncio.wait_for(ringing, 10)
    assert (status, problem["code"]) == (409, "consult_cancelled"), problem
    assert not (await slow.result())["in1"]["connected"]  # its phone stopped ringing, unanswered

    # the customer hangs up while the next target rings: nobody is left to transfer, the ringing stops
    ringing = asyncio.create_task(post(agent, f"/api/calls/{call_id}/consult", {"target": other_number}))
    await asyncio.sleep(1.5)
    status, problem = await post(supervisor, f"/api/calls/{call_id}/hangup")
    assert status == 204, problem
    status, problem = await asyncio.wait_for(ringing, 10)
    assert (status, problem["code"]) == (409, "call_ended"), problem
    assert not (await other.result())["in1"]["connected"]
    events = await until(
        node,
        lambda: (found := consult_events(node, call_id)) and len(found) == 4 and found,
        what="both consultations on the timeline",
    )
    assert events == [
        ("call.consult_started", None),
        ("call.consult_ended", "cancelled"),
        ("call.consult_started", None),
        ("call.consult_ended", "caller_hung_up"),
    ]
