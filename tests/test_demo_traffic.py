"""A newcomer's first two minutes: `huiliu run`, then `huiliu demo traffic` — real SIP calls through the SIP
front and web-chat visitors — while an agent's desktop and the supervisor's wallboard are connected: an
offer pops with the customer, a ticket appears, the wallboard moves, the chat bot answers."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.test_run import Platform, reap

pytestmark = pytest.mark.slow


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Platform]:
    platform = Platform(tmp_path)
    yield platform
    reap(platform)


async def _socket(platform: Platform, namespace: str, token: str, events: dict[str, list[Any]]) -> Any:
    client = socketio.AsyncClient(reconnection=False)
    for name in events:
        client.on(name, _collect(events[name]), namespace=namespace)
    await client.connect(
        platform.url("/"),
        namespaces=[namespace],
        auth={"token": token},
        transports=["websocket"],
        wait_timeout=10,
    )
    return client


def _collect(into: list[Any]) -> Any:
    async def handler(data: Any) -> None:
        into.append(data)

    return handler


async def test_demo_traffic_pops_offers_makes_tickets_and_moves_the_wallboard(running: Platform) -> None:
    platform = running
    platform.start()
    platform.wait_healthy()
    _, agent = platform.call("POST", "/api/auth/login", {"username": "agent1", "password": "agent1-demo"})
    _, supervisor = platform.call(
        "POST", "/api/auth/login", {"username": "supervisor", "password": "supervisor-demo"}
    )
    desk: dict[str, list[Any]] = {"offer": []}
    board: dict[str, list[Any]] = {"wallboard": []}
    desktop = await _socket(platform, "/agent", agent["token"], desk)
    wallboard = await _socket(platform, "/supervisor", supervisor["token"], board)
    try:
        ready = await desktop.call("state", {"state": "available"}, namespace="/agent", timeout=10)
        assert "ok" in ready, ready
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HUILIU_")},
            "HUILIU_WEB_PORT": str(platform.web_port),
            "HUILIU_TELEPHONY_SIP_PORT": str(platform.sip_port),
            "HUILIU_DATA_DIR": str(platform.workdir / "var"),
        }
        demo = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "core.cli",
            "demo",
            "traffic",
            "--seconds",
            # the complaint (key 3 at 6 s, a prompt, a 15 s listen) files its ticket at ~25 s
            "35",
            cwd=platform.workdir,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(demo.communicate(), 120)
        said = out.decode()
        assert demo.returncode == 0, said
    finally:
        await desktop.disconnect()
        await wallboard.disconnect()
    # whatever the hour: the line answered as in office hours for the demo, and follows its calendar after
    assert "main line answers as in office hours" in said and "follows its office hours again" in said, said
    assert platform.call("GET", "/api/flows/main/hours-override", token=supervisor["token"])[0] == 404
    assert said.count(": answered,") == 3, said
    assert "web chat (zh) answer:" in said and "web chat (en) answer:" in said, said
    # the agent's desktop was offered a contact with the customer's card in it
    assert desk["offer"], said
    assert desk["offer"][0]["customer"]["id"]
    # tickets appeared: the complaint (key 3) makes an urgent one
    _, tickets = platform.call("GET", "/api/tickets?limit=20", token=supervisor["token"])
    assert any(ticket["intent"] == "complaint" for ticket in tickets["tickets"]), tickets
    assert "ticket T-" in said
    # the wallboard moved: some push showed contacts waiting or agents busy
    assert any(
        any(queue.get("waiting", 0) > 0 for queue in push.get("queues", []))
        or any(agent_.get("state") not in ("available", "offline") for agent_ in push.get("agents", []))
        for push in board["wallboard"]
    ), board["wallboard"][-1:]
    assert platform.stop() == 0
