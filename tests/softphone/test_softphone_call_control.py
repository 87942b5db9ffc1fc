"""The softphone's call controls on real calls: the keypad (DTMF, RFC 2833) and hold.

Real parts: the web application (REST, ACD) on embedded MongoDB and redis-server, a telephony node (Kamailio +
one pjsua2 worker) writing to the same database, and a pjsua2 phone in its own process
(tests/telephony/peer.py) that reports the digits and hold it saw. It calls in and the ACD connects it to
the agent. No browser media here: WebRTC audio is test_softphone_media.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from agent_desktop import DESKTOP, AgentSkills, Desktop, QueueConfig
from core.embedded import EmbeddedServer
from core.settings import Settings, load_settings
from tests.conftest import ApiClient
from tests.desktop.conftest import queue_request
from tests.telephony.node import PEER, Node, sip_tools_missing, start_node, stop_node

PARKED_LINE = "5000"  # tests/telephony/routers.py: answers and waits for the caller to hang up


@pytest.fixture(scope="module")
def node(
    mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    missing = sip_tools_missing()
    if missing:
        pytest.skip(missing)
    running = start_node(tmp_path_factory.mktemp("telephony"), mongo_server, redis_server, pool_size=1)
    yield running
    stop_node(running)


@pytest.fixture
def settings(
    node: Node, mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path: Path
) -> Settings:
    """The web application on the telephony node's database (the ``server`` fixture drops it afterwards;
    the node's worker writes its heartbeat again within half a second)."""
    return load_settings(
        environ={},
        mongo_url=mongo_server.url,
        redis_url=redis_server.url,
        db_name=node.db_name,
        data_dir=tmp_path / "var",
        secret_key="test-secret-key-not-for-production",
        mongo_timeout_ms=1500,
    )


class Phone:
    """A pjsua2 phone (peer.py) running in the background; ``result()`` waits for its JSON report."""

    def __init__(self, node: Node, *args: str, seconds: float) -> None:
        self.workdir = node.workdir / f"phone-{uuid.uuid4().hex[:8]}"
        self.workdir.mkdir()
        self.seconds = seconds
        self.process = subprocess.Popen(
            [sys.executable, str(PEER), "--workdir", str(self.workdir), "--seconds", str(seconds), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def listening(self) -> None:
        """Wait until it answers calls (registered at the SIP front); pjlib's start-up lines come first."""
        assert self.process.stdout is not None
        seen = ""
        while (line := await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 20)) != "":
            if line.strip() == "listening":
                return
            seen += line
        _, err = self.process.communicate()
        raise AssertionError(f"the phone did not start:\n{seen}\n{err[-3000:]}")

    async def result(self) -> dict[str, Any]:
        out, err = await asyncio.to_thread(self.process.communicate, None, self.seconds + 30)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert lines, f"the phone failed ({self.process.returncode}):\n{out}\n{err[-3000:]}"
        report: dict[str, Any] = json.loads(lines[-1])
        return report

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
async def phones() -> AsyncIterator[list[Phone]]:
    started: list[Phone] = []
    yield started
    for phone in started:
        phone.stop()


def mobile() -> str:
    """A fresh mobile number per test (a new customer), national format."""
    return "139" + str(uuid.uuid4().int)[:8]


async def until(node: Node, predicate: Any, within: float = 15.0, what: str = "condition") -> Any:
    return await asyncio.to_thread(node.wait_for, predicate, within, what)


async def post(client: ApiClient, path: str, body: Any = None) -> tuple[int, Any]:
    status, data, _ = await client.request("POST", path, json=body)
    return status, data


async def go_available(client: ApiClient) -> None:
    status, agent, _ = await client.request("PUT", "/api/desktop/me/state", json={"state": "available"})
    assert status == 200, agent


async def test_a_caller_the_acd_connected_to_the_agent_is_held_and_hears_the_keypad(
    node: Node, server: TestServer, agent: ApiClient, http: ApiClient, phones: list[Phone]
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await desktop.store.create_queue(QueueConfig(id="after_sales", name="售后", skills={"after_sales": 1}))
    _, me, _ = await agent.request("GET", "/api/desktop/me")
    await desktop.agents.set_skills(me["user_id"], AgentSkills(skills={"after_sales": 2}))
    await go_available(agent)
    caller = mobile()
    phone = Phone(node, "--target", f"sip:{PARKED_LINE}@{node.front}", "--caller", caller, seconds=30)
    phones.append(phone)
    call = await until(
        node,
        lambda: (found := node.calls_from("+86" + caller)) and found[0].get("answered_at") and found[0],
        what="the call answered",
    )
    call_id = call["_id"]
    # before the agent has it, the agent may not act on it
    status, problem = await post(agent, f"/api/calls/{call_id}/dtmf", {"digits": "1"})
    assert (status, problem["code"]) == (403, "not_your_call"), problem

    await desktop.gateway.enqueue(queue_request(call_id, caller="+86" + caller))
    contact = await until(
        node,
        lambda: (
            (doc := node.mongo().queue_contacts.find_one({"external_ref": call_id, "status": "offered"}))
            and doc
        ),
        what="the offer",
    )
    status, accepted = await post(agent, f"/api/desktop/offers/{contact['_id']}/accept")
    assert status == 200, accepted
    status, problem = await post(agent, f"/api/calls/{call_id}/hold", {"on": True})
    assert status == 204, problem
    await asyncio.sleep(1.0)
    status, problem = await post(agent, f"/api/calls/{call_id}/hold", {"on": False})
    assert status == 204, problem
    status, problem = await post(agent, f"/api/calls/{call_id}/dtmf", {"digits": "42"})
    assert status == 204, problem
    status, problem = await post(agent, f"/api/calls/{call_id}/hangup")
    assert status == 204, problem

    heard = (await phone.result())["call"]
    assert heard["connected"] and heard["dtmf"] == "42" and heard["dtmf_methods"] == ["rfc2833"], str(heard)
    assert heard["media"] == ["active", "remote_hold", "active"], str(heard)
    ended = await until(node, lambda: (doc := node.call_doc(call_id)) and doc["status"] == "ended" and doc)
    assert ended["cause"] == "agent_hangup"
    # a call that has ended takes no more keys
    status, problem = await post(agent, f"/api/calls/{call_id}/dtmf", {"digits": "1"})
    assert (status, problem["code"]) == (409, "call_ended"), problem
