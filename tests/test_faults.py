"""A dependency that goes away: requests fail fast with 503 + Retry-After, the process stays up, and it all
works again when the dependency is back, with nothing accepted lost.

And restarts while people work: MongoDB restarted under a stream of writes, the web process killed with
agents connected, Redis restarted under connected desktops: nothing accepted is lost or duplicated, desktops
reconnect by themselves and find their state as they left it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp.test_utils import TestServer

from core.app import build_app
from core.embedded import EmbeddedServer, free_port, start_mongo, start_redis
from core.settings import load_settings
from tests.conftest import ApiClient, wait_until_ready

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def own_mongo(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedServer, Path]]:
    """A MongoDB server only this test stops and starts."""
    data = tmp_path / "mongo"
    server = start_mongo(data, free_port(), tmp_path / "mongo.log")
    yield server, data
    server.stop()


async def web_on(mongo: EmbeddedServer, redis: EmbeddedServer, tmp_path: Path) -> tuple[TestServer, str]:
    """The web app on this test's own MongoDB (which the test restarts), failing fast while it is down."""
    settings = load_settings(
        environ={},
        mongo_url=mongo.url,
        redis_url=redis.url,
        db_name=f"f_{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "var",
        mongo_timeout_ms=500,
    )
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server()
    return server, str(server.make_url("")).rstrip("/")


async def test_mongodb_down_gives_503_then_recovers(
    own_mongo, redis_server: EmbeddedServer, tmp_path: Path
) -> None:
    mongo, data = own_mongo
    server, base = await web_on(mongo, redis_server, tmp_path)
    try:
        await wait_until_ready(base)
        async with aiohttp.ClientSession() as session:
            agent = await ApiClient(session, base).as_user("agent1", "agent1-demo")
            status, accepted, _ = await agent.request(
                "POST",
                "/api/customers/resolve",
                json={"identities": [{"kind": "phone", "value": "13800138000"}]},
            )
            assert status == 201
            customer_id = accepted["customer"]["id"]
            await agent.request(
                "POST",
                f"/api/customers/{customer_id}/timeline",
                json={"kind": "note.added", "channel": "internal", "idempotency_key": "before"},
            )

            mongo.stop()
            status, body, headers = await agent.request("GET", f"/api/customers/{customer_id}/timeline")
            assert status == 503 and body["code"] == "mongodb_unavailable"
            assert headers["Content-Type"].startswith("application/problem+json")
            assert int(headers["Retry-After"]) > 0
            status, health, _ = await agent.request("GET", "/healthz")
            assert status == 503 and health["down"] == ["mongodb"]

            restarted = start_mongo(data, mongo.port, tmp_path / "mongo2.log")
            mongo.process = restarted.process  # so the fixture stops the new one
            for _ in range(100):
                status, page, _ = await agent.request("GET", f"/api/customers/{customer_id}/timeline")
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert status == 200
            assert [e["idempotency_key"] for e in page["events"]] == ["before"]
            status, health, _ = await agent.request("GET", "/healthz")
            assert status == 200
    finally:
        await server.close()


async def test_web_process_starts_while_mongodb_is_down_and_becomes_ready(
    redis_server: EmbeddedServer, tmp_path: Path
) -> None:
    port = free_port()
    settings = load_settings(
        environ={},
        mongo_url=f"mongodb://127.0.0.1:{port}/?directConnection=true",
        redis_url=redis_server.url,
        db_name="late",
        data_dir=tmp_path / "var",
        mongo_timeout_ms=300,
    )
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    mongo = None
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/healthz") as response:
                health = await response.json()
            assert response.status == 503 and "mongodb" in health["down"]
            mongo = start_mongo(tmp_path / "late-mongo", port)
            await wait_until_ready(base, within=40)
            await ApiClient(session, base).as_user("admin", "admin-demo")
    finally:
        await server.close()
        if mongo is not None:
            mongo.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = start_redis(tmp_path / "redis", free_port(), tmp_path / "redis.log")
    yield server
    server.stop()


class WebProcess:
    """``huiliu web`` as its own process, so it can be killed and started again on the same port."""

    def __init__(self, tmp_path: Path, mongo: EmbeddedServer, redis: EmbeddedServer) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "web.log"
        self.env = {
            **{name: value for name, value in os.environ.items() if not name.startswith("HUILIU_")},
            "PYTHONPATH": str(REPO),
            "HUILIU_MONGO_URL": mongo.url,
            "HUILIU_REDIS_URL": redis.url,
            "HUILIU_DB_NAME": f"r_{uuid.uuid4().hex[:8]}",
            "HUILIU_DATA_DIR": str(tmp_path / "var"),
            "HUILIU_SECRET_KEY": "test-secret-key-not-for-production",
            "HUILIU_WEB_PORT": str(self.port),
        }
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - a background server, never waited on here
                [sys.executable, "-m", "core.cli", "web"], cwd=REPO, env=self.env, stdout=log, stderr=log
            )
        await wait_until_ready(self.base, within=60)

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


@pytest.fixture
async def web(
    tmp_path: Path, own_mongo: tuple[EmbeddedServer, Path], own_redis: EmbeddedServer
) -> AsyncIterator[WebProcess]:
    process = WebProcess(tmp_path, own_mongo[0], own_redis)
    await process.start()
    yield process
    process.stop()


class Desktop:
    """An agent's (or supervisor's) Socket.IO connection that reconnects by itself, as the page's does."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.client = socketio.AsyncClient(
            reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1
        )
        self.connects = 0
        self.states: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.client.on("connect", self._connected, namespace=namespace)
        self.client.on("agent.state", self._state, namespace=namespace)

    async def _connected(self) -> None:
        self.connects += 1

    async def _state(self, data: dict[str, Any]) -> None:
        self.states.put_nowait(data)

    async def open(self, base: str, token: str) -> None:
        await self.client.connect(
            base,
            namespaces=[self.namespace],
            auth={"token": token},
            transports=["websocket"],
            wait_timeout=10,
        )

    async def reconnected(self, connects: int, within: float = 60.0) -> None:
        async with asyncio.timeout(within):
            while self.connects < connects or not self.client.connected:  # noqa: ASYNC110 - two conditions
                await asyncio.sleep(0.1)

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.client.call(event, data, namespace=self.namespace, timeout=10)


async def test_mongodb_restarted_under_writes_loses_and_duplicates_nothing(
    own_mongo: tuple[EmbeddedServer, Path], redis_server: EmbeddedServer, tmp_path: Path
) -> None:
    mongo, data = own_mongo
    server, base = await web_on(mongo, redis_server, tmp_path)
    try:
        await wait_until_ready(base)
        async with aiohttp.ClientSession() as session:
            agent = await ApiClient(session, base).as_user("agent1", "agent1-demo")
            status, body, _ = await agent.request(
                "POST",
                "/api/customers/resolve",
                json={"identities": [{"kind": "phone", "value": "13800138111"}]},
            )
            customer = body["customer"]["id"]
            accepted: set[str] = set()
            refused = 0
            restarted = asyncio.Event()

            async def write(key: str) -> None:
                """A client that retries a refused write with the same idempotency key, as ours do."""
                nonlocal refused
                while True:
                    status, _, _ = await agent.request(
                        "POST",
                        f"/api/customers/{customer}/timeline",
                        json={
                            "kind": "note.added",
                            "channel": "internal",
                            "idempotency_key": key,
                            "body": {"n": key},
                        },
                    )
                    if status in (200, 201):
                        accepted.add(key)
                        return
                    assert status == 503, status
                    refused += 1
                    await asyncio.sleep(0.2)

            async def writer() -> None:
                for index in range(120):
                    await write(f"w{index:03d}")
                    if index == 40:
                        restarted.set()

            async def restart() -> None:
                await restarted.wait()
                mongo.stop()
                await asyncio.sleep(1.0)
                again = start_mongo(data, mongo.port, tmp_path / "mongo2.log")
                mongo.process = again.process

            await asyncio.wait_for(asyncio.gather(writer(), restart()), 180)
            events: list[dict[str, Any]] = []
            cursor = None
            while True:
                query = f"?limit=100&kind=note.added{'&cursor=' + cursor if cursor else ''}"
                status, page, _ = await agent.request("GET", f"/api/customers/{customer}/timeline{query}")
                assert status == 200
                events += page["events"]
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        keys = [event["idempotency_key"] for event in events]
        assert refused > 0, "the restart was not noticed: nothing was refused"
        assert len(keys) == len(set(keys)) == 120
        assert set(keys) == accepted
    finally:
        await server.close()


async def test_desktops_reconnect_after_the_web_process_is_killed_and_find_their_state(
    web: WebProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        agent = await ApiClient(session, web.base).as_user("agent1", "agent1-demo")
        supervisor = await ApiClient(session, web.base).as_user("supervisor", "supervisor-demo")
    desktop = Desktop("/agent")
    wallboard = Desktop("/supervisor")
    try:
        await desktop.open(web.base, str(agent.token))
        await wallboard.open(web.base, str(supervisor.token))
        changed = await desktop.call("state", {"state": "break", "reason": "lunch"})
        assert changed["ok"]["presence"] == "break"

        web.kill()
        await web.start()
        await desktop.reconnected(2)
        await wallboard.reconnected(2)

        resumed = await desktop.call("resume")
        assert resumed["ok"]["agent"]["presence"] == "break"
        assert resumed["ok"]["agent"]["reason"] == "lunch"
        board = await wallboard.call("wallboard")
        assert "ok" in board, board
        # and the reconnected desktop works on: going available is seen by the desktop itself
        back = await desktop.call("state", {"state": "available"})
        assert back["ok"]["presence"] == "available"
    finally:
        await desktop.client.disconnect()
        await wallboard.client.disconnect()


async def test_a_redis_restart_is_ridden_out_by_connected_desktops(
    web: WebProcess, own_redis: EmbeddedServer, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        agent = await ApiClient(session, web.base).as_user("agent1", "agent1-demo")
        desktop = Desktop("/agent")
        try:
            await desktop.open(web.base, str(agent.token))
            own_redis.stop()
            await asyncio.sleep(1.0)
            again = start_redis(tmp_path / "redis", own_redis.port, tmp_path / "redis2.log")
            own_redis.process = again.process
            # state changes made over REST reach the desktop through the Redis manager again
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                status, body, _ = await agent.request(
                    "PUT", "/api/desktop/me/state", json={"state": "available"}
                )
                if status == 200:
                    break
                assert asyncio.get_running_loop().time() < deadline, (status, body)
                await asyncio.sleep(0.5)
            while not desktop.states.empty():
                desktop.states.get_nowait()
            status, _, _ = await agent.request(
                "PUT", "/api/desktop/me/state", json={"state": "break", "reason": "training"}
            )
            assert status == 200
            async with asyncio.timeout(15):
                while True:
                    state = await desktop.states.get()
                    if state["presence"] == "break":
                        break
            assert state["reason"] == "training"
            status, health, _ = await agent.request("GET", "/healthz")
            assert status == 200, health
        finally:
            await desktop.client.disconnect()
