"""Telephony faults with every part real: ``huiliu web`` and ``huiliu telephony`` (Kamailio, a pjsua2 worker,
the shipped IVR made open around the clock) as processes on the session's MongoDB and Redis, callers
played by pjsua2 phones (``tests/telephony/peer.py``), an agent's desktop on the ``/agent`` socket.

* The web process is SIGKILLed while a caller is in the IVR: the telephony node does not notice; the
  caller goes on through the menu into the queue while the web is down; once the web is back the queued
  call is offered to an agent, the web's hang-up reaches the call, and the timeline holds every step once.
* The whole telephony node — pool, worker, Kamailio: its process group — is SIGKILLed mid-call with one
  caller queued and one in the menu: the web process ends both calls (``node_lost``, once, last on their
  timelines), takes the queued one out of its queue, and a restarted node takes new calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from core.embedded import EmbeddedServer, free_port
from tests.conftest import ApiClient
from tests.journeys.processes import REPO, environment
from tests.telephony.node import (
    PEER,
    Node,
    open_main_line,
    restart_node,
    sip_tools_missing,
    start_node,
    stop_node,
)

pytestmark = pytest.mark.slow


class WebProcess:
    """``huiliu web`` on the node's database, killable and restartable on the same port."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = workdir / "web.log"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 90.0) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "core.cli", "web"], cwd=REPO, env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "huiliu web exited:\n" + self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"huiliu web was not healthy within {within} s")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Platform:
    node: Node
    web: WebProcess


@pytest.fixture(scope="module")
def platform(
    mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    missing = sip_tools_missing()
    if missing:
        pytest.skip(missing)
    workdir = tmp_path_factory.mktemp("faults-telephony")
    db_name = f"t_{uuid.uuid4().hex[:12]}"
    asyncio.run(open_main_line(mongo_server.url, db_name))
    port = free_port()
    web = WebProcess(
        workdir, environment(mongo_server.url, redis_server.url, db_name, workdir / "web", port), port
    )
    web.start()
    node = None
    try:
        node = start_node(
            workdir / "node",
            mongo_server,
            redis_server,
            pool_size=1,
            db_name=db_name,
            new_session=True,  # its own process group: pool, workers and Kamailio die together
            telephony_router="ivr_flows.line:router",
        )
        yield Platform(node, web)
    finally:
        web.stop()
        if node is not None:
            with_group_gone(node)
            stop_node(node)


def with_group_gone(node: Node) -> None:
    """Nothing of the node's process group outlives the test."""
    if node.process.poll() is None:
        return
    try:
        os.killpg(node.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Phone:
    """A pjsua2 caller in the background (``peer.py``)."""

    def __init__(self, node: Node, workdir: Path, *args: str, seconds: float) -> None:
        self.caller = "139" + str(uuid.uuid4().int)[:8]
        workdir.mkdir(parents=True)
        self.process = subprocess.Popen(
            [
                *(sys.executable, str(PEER), "--workdir", str(workdir)),
                *("--target", f"sip:4008001234@{node.front}", "--caller", self.caller),
                *("--seconds", str(seconds), *args),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.seconds = seconds

    async def result(self) -> dict[str, Any]:
        out, err = await asyncio.to_thread(self.process.communicate, None, self.seconds + 30)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert lines, f"peer failed ({self.process.returncode}):\n{out}\n{err[-3000:]}"
        result: dict[str, Any] = json.loads(lines[-1])["call"]
        return result


class AgentDesktop:
    """An agent's ``/agent`` socket, collecting the offers it is sent."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.client.on("offer", self._offer, namespace="/agent")

    async def _offer(self, data: dict[str, Any]) -> None:
        self.offers.put_nowait(data)

    async def open(self, base: str, token: str) -> None:
        await self.client.connect(
            base, namespaces=["/agent"], auth={"token": token}, transports=["websocket"], wait_timeout=15
        )

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.client.call(event, data, namespace="/agent", timeout=15)


async def wait_for(node: Node, predicate: Any, within: float, what: str) -> Any:
    return await asyncio.to_thread(node.wait_for, predicate, within, what)


def the_call(node: Node, phone: Phone) -> dict[str, Any] | None:
    calls = node.calls_from("+86" + phone.caller)
    assert len(calls) <= 1, calls
    return calls[0] if calls else None


def kinds(node: Node, call_id: str) -> list[str]:
    return [event["kind"] for event in node.events(call_id)]


def ivr_path(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["body"]["node"], e["body"]["result"]) for e in events if e["kind"] == "ivr.step"]


def assert_written_once(events: list[dict[str, Any]]) -> None:
    keys = [event["idempotency_key"] for event in events]
    assert len(keys) == len(set(keys)), f"an event was written twice: {keys}"
    for kind in ("call.started", "call.answered", "call.ended"):
        assert [event["kind"] for event in events].count(kind) == 1, (kind, [e["kind"] for e in events])


async def staff_the_general_queue(web: WebProcess, http: aiohttp.ClientSession, username: str) -> ApiClient:
    """The agent has the skill of the queue key 0 leads to, and is on a break: staffed, not available (a
    call queues and waits instead of overflowing to voicemail)."""
    admin = await ApiClient(http, web.base).as_user("admin", "admin-demo")
    agent = await ApiClient(http, web.base).as_user(username, f"{username}-demo")
    status, me, _ = await agent.request("GET", "/api/desktop/me")
    assert status == 200, me
    status, body, _ = await admin.request(
        "PUT", f"/api/desktop/agents/{me['user_id']}/skills", json={"skills": {"general": 1}}
    )
    assert status == 200, body
    status, body, _ = await agent.request(
        "PUT", "/api/desktop/me/state", json={"state": "break", "reason": "x"}
    )
    assert status == 200, body
    return agent


async def test_a_caller_in_the_ivr_rides_out_a_web_restart_and_is_offered_to_an_agent_after(
    platform: Platform, tmp_path: Path
) -> None:
    node, web = platform.node, platform.web
    workers = node.worker_pids()
    async with aiohttp.ClientSession() as http:
        agent = await staff_the_general_queue(web, http, "agent1")
    # 9 (English) and 0 (an agent) are pressed while the web process is down
    phone = Phone(node, tmp_path / "caller", "--keys", "9@5", "--keys", "0@13", seconds=90)
    call = await wait_for(
        node,
        lambda: (found := the_call(node, phone)) and "call.answered" in kinds(node, found["_id"]) and found,
        within=30,
        what="the call answered",
    )
    call_id = call["_id"]

    web.kill()
    await wait_for(
        node, lambda: "call.queued" in kinds(node, call_id), within=45, what="the call queued (web down)"
    )
    assert web.process is not None and web.process.poll() is not None, "the web came back too early"
    assert node.process.poll() is None and node.worker_pids() == workers

    await asyncio.to_thread(web.start)
    desktop = AgentDesktop()
    async with aiohttp.ClientSession() as http:
        try:
            await desktop.open(web.base, str(agent.token))
            changed = await desktop.call("state", {"state": "available"})
            assert changed["ok"]["presence"] == "available", changed
            offer = await asyncio.wait_for(desktop.offers.get(), 30)
            assert offer["contact"]["external_ref"] == call_id, offer["contact"]
            chosen = [(step["node"], step["result"]) for step in offer["ivr"]["path"]]
            assert ("main_menu", "chose 0") in chosen, offer["ivr"]  # the screen-pop has the IVR path
        finally:
            await desktop.client.disconnect()
        # the restarted web reaches the call on its worker
        supervisor = await ApiClient(http, web.base).as_user("supervisor", "supervisor-demo")
        status, body, _ = await supervisor.request("POST", f"/api/calls/{call_id}/hangup")
        assert status == 204, body
    heard = await phone.result()
    assert heard["connected"] and heard["rms"] > 300, heard

    def ended_and_left_the_queue(events: list[dict[str, Any]]) -> bool:
        """``call.ended``, and the flow's queue step that noticed it (written just after)."""
        return "call.ended" in {e["kind"] for e in events} and ivr_path(events)[-1][0] == "agent_queue"

    events = await wait_for(
        node,
        lambda: (found := node.events(call_id)) and ended_and_left_the_queue(found) and found,
        within=20,
        what="call.ended and the queue step",
    )
    assert_written_once(events)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    # every step taken while the web was down is there, in order, once
    assert ivr_path(events)[:5] == [
        ("office_hours", "open"),
        ("greeting", "played"),
        ("main_menu", "chose 9"),
        ("english", "set"),
        ("main_menu", "chose 0"),
    ], ivr_path(events)
    ended = next(e for e in events if e["kind"] == "call.ended")["body"]
    assert ended["cause"] == "agent_hangup", ended
    assert [e["kind"] for e in events].index("call.queued") < [e["kind"] for e in events].index("call.ended")
    assert node.process.poll() is None and node.worker_pids() == workers, "the telephony node was disturbed"


async def test_killing_the_whole_telephony_node_ends_its_calls_and_a_restarted_node_takes_new_ones(
    platform: Platform, tmp_path: Path
) -> None:
    node, web = platform.node, platform.web
    async with aiohttp.ClientSession() as http:
        await staff_the_general_queue(web, http, "agent2")
    queued = Phone(node, tmp_path / "queued", "--keys", "0@5", seconds=40)
    in_menu = Phone(node, tmp_path / "in-menu", seconds=40)
    queued_call = await wait_for(
        node,
        lambda: (found := the_call(node, queued)) and "call.queued" in kinds(node, found["_id"]) and found,
        within=40,
        what="the first call queued",
    )
    menu_call = await wait_for(
        node,
        lambda: (found := the_call(node, in_menu)) and "call.answered" in kinds(node, found["_id"]) and found,
        within=20,
        what="the second call answered",
    )
    old_workers = {queued_call["worker_id"], menu_call["worker_id"]}

    os.killpg(node.process.pid, signal.SIGKILL)  # the pool, its worker and Kamailio, at once
    await asyncio.to_thread(node.process.wait, 10)
    deadline = time.monotonic() + 10
    while True:
        try:
            os.killpg(node.process.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "processes of the killed node are still there"
        await asyncio.sleep(0.1)

    def swept(call_id: str) -> bool:
        """The sweeper marks the call ended, writes ``call.ended``, then closes the conversation."""
        conversation = node.mongo().conversations.find_one({"external_ref": call_id})
        return conversation is not None and conversation["status"] == "closed"

    for call in (queued_call, menu_call):
        await wait_for(
            node, lambda call_id=call["_id"]: swept(call_id), within=30, what="the lost call ended and closed"
        )
    for call in (queued_call, menu_call):
        doc = node.call_doc(call["_id"])
        assert doc["cause"] == "node_lost", doc
        events = node.events(call["_id"])
        assert_written_once(events)
        ended = events[-1]
        assert ended["kind"] == "call.ended", [e["kind"] for e in events]
        assert ended["body"]["cause"] == "node_lost" and ended["body"]["worker_id"] == doc["worker_id"]
    # the queued caller is no longer waiting for an agent
    contact = await wait_for(
        node,
        lambda: (
            (found := node.mongo().queue_contacts.find_one({"external_ref": queued_call["_id"]}))
            and found["status"] == "withdrawn"
            and found
        ),
        within=15,
        what="the lost call's queue contact withdrawn",
    )
    assert contact["withdrawn"] == "node_lost", contact

    await asyncio.to_thread(restart_node, node)
    fresh = Phone(node, tmp_path / "after", "--keys", "0@5", seconds=12)
    assert (await fresh.result())["connected"]
    new_call = the_call(node, fresh)
    assert new_call is not None and new_call["worker_id"] not in old_workers
    events = await wait_for(
        node,
        lambda: (
            (found := node.events(new_call["_id"])) and "call.ended" in {e["kind"] for e in found} and found
        ),
        within=20,
        what="the new call ended",
    )
    assert ("main_menu", "chose 0") in ivr_path(events) and "call.queued" in [e["kind"] for e in events]
    # the restarted node's own sweeper found nothing more to end on the lost calls
    for call in (queued_call, menu_call):
        assert_written_once(node.events(call["_id"]))
    for phone in (queued, in_menu):
        assert (await phone.result())["connected"]
