"""Web-chat benchmark: a visitor's message → the unified timeline → the serving agent's socket.

    .venv/bin/python bench/channels.py                       # 10 visitors, 30 messages each, 20 msg/s
    .venv/bin/python bench/channels.py --visitors 20 --messages 50 --rate 50

It starts the embedded MongoDB and redis-server on free loopback ports and the real web application in a
child process (``huiliu web``, one node), logs in the demo agent ``agent1`` (chat capacity raised to the
number of visitors), then opens ``--visitors`` real Socket.IO visitors on ``/visitor``. Each asks for a
person ("转人工"): the bot hands off, the agent accepts every offer over REST. Then the visitors send
``--messages`` messages each, paced to ``--rate`` per second in total. For every message it measures

* stored: the visitor's ``message`` emit → its acknowledgement (the event is in MongoDB), and
* at agent: the emit → the agent's ``chat.message`` (timeline append → Redis bus → the desktop's relay);

the sustained rate is messages acknowledged per second of sending. A phase without pacing (``--burst``
messages per visitor, all at once) gives the throughput ceiling. Progress goes to stderr; stdout gets the
machine and one table.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from core.embedded import free_port, start_mongo, start_redis

P95_TARGET_MS = 100.0
REPO = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Bench:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sent_at: dict[str, float] = {}
        self.at_agent_ms: list[float] = []
        self.offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.arrived = asyncio.Event()
        self.expected = 0

    async def on_chat(self, data: dict[str, Any]) -> None:
        client_id = data.get("body", {}).get("client_id")
        started = self.sent_at.pop(client_id, None) if isinstance(client_id, str) else None
        if started is not None:
            self.at_agent_ms.append((time.perf_counter() - started) * 1000)
            if len(self.at_agent_ms) >= self.expected:
                self.arrived.set()

    async def on_offer(self, data: dict[str, Any]) -> None:
        self.offers.put_nowait(data)


async def login(session: aiohttp.ClientSession, url: str, username: str, password: str) -> tuple[str, str]:
    async with session.post(f"{url}/api/auth/login", json={"username": username, "password": password}) as r:
        body = await r.json()
        return body["token"], body["user"]["id"]


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="huiliu-bench-channels-"))
    mongo = start_mongo(root / "mongo", free_port(), root / "mongo.log")
    redis = start_redis(root / "redis", free_port(), root / "redis.log")
    server: asyncio.subprocess.Process | None = None
    clients: list[socketio.AsyncClient] = []
    try:
        port = free_port()
        server = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "huiliu"),
            "web",
            env={
                **os.environ,
                "HUILIU_MONGO_URL": mongo.url,
                "HUILIU_REDIS_URL": redis.url,
                "HUILIU_DB_NAME": "bench_channels",
                "HUILIU_DATA_DIR": str(root / "var"),
                "HUILIU_WEB_PORT": str(port),
                "HUILIU_DEMO": "true",
                "HUILIU_LOG_LEVEL": "WARNING",
                "HUILIU_SECRET_KEY": "bench-secret-key-not-for-production",
                "HUILIU_WEBCHAT_VISITORS_PER_MINUTE": "10000",
            },
            cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        bench = Bench(url)
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, url)
            admin, _ = await login(session, url, "admin", "admin-demo")
            agent_token, agent_id = await login(session, url, "agent1", "agent1-demo")
            auth = {"Authorization": f"Bearer {agent_token}"}
            agent = socketio.AsyncClient(reconnection=False)
            clients.append(agent)
            agent.on("chat.message", bench.on_chat, namespace="/agent")
            agent.on("offer", bench.on_offer, namespace="/agent")
            await agent.connect(
                url, namespaces=["/agent"], auth={"token": agent_token}, transports=["websocket"]
            )
            skills = {"skills": {"webchat": 1, "lang_zh": 1}, "max_chats": min(20, args.visitors)}
            async with session.put(
                f"{url}/api/desktop/agents/{agent_id}/skills",
                json=skills,
                headers={"Authorization": f"Bearer {admin}"},
            ) as response:
                assert response.status == 200, await response.text()
            async with session.put(
                f"{url}/api/desktop/me/state", json={"state": "available"}, headers=auth
            ) as r:
                assert r.status == 200, await r.text()

            visitors: list[socketio.AsyncClient] = []
            for _ in range(args.visitors):
                async with session.post(f"{url}/api/webchat/visitors") as response:
                    token = (await response.json())["token"]
                visitor = socketio.AsyncClient(reconnection=False)
                await visitor.connect(
                    url,
                    namespaces=["/visitor"],
                    socketio_path="chat/socket.io",
                    auth={"token": token, "language": "zh"},
                    transports=["websocket"],
                )
                clients.append(visitor)
                visitors.append(visitor)
                await visitor.call(
                    "message", {"client_id": uuid.uuid4().hex, "text": "转人工"}, namespace="/visitor"
                )
                pop = await asyncio.wait_for(bench.offers.get(), 30)
                async with session.post(
                    f"{url}/api/desktop/offers/{pop['contact']['id']}/accept", headers=auth
                ) as response:
                    assert response.status == 200, await response.text()
            log(f"{len(visitors)} visitors handed off and accepted by agent1")

            stored_ms: list[float] = []

            async def send(visitor: socketio.AsyncClient, number: int) -> None:
                client_id = uuid.uuid4().hex
                started = time.perf_counter()
                bench.sent_at[client_id] = started
                ack = await visitor.call(
                    "message", {"client_id": client_id, "text": f"第 {number} 条消息"}, namespace="/visitor"
                )
                assert "ok" in ack, ack
                stored_ms.append((time.perf_counter() - started) * 1000)

            total = args.visitors * args.messages
            bench.expected = total
            started = time.perf_counter()
            sends = []
            for number in range(total):
                sends.append(asyncio.create_task(send(visitors[number % len(visitors)], number)))
                await asyncio.sleep(max(0.0, started + (number + 1) / args.rate - time.perf_counter()))
            await asyncio.gather(*sends)
            paced_s = time.perf_counter() - started
            try:
                await asyncio.wait_for(bench.arrived.wait(), 30)
            except TimeoutError:
                log(f"only {len(bench.at_agent_ms)} of {total} reached the agent within 30 s")
            paced_at_agent = list(bench.at_agent_ms)
            paced_stored = list(stored_ms)

            stored_ms.clear()
            bench.at_agent_ms.clear()
            bench.arrived.clear()
            burst = args.visitors * args.burst
            bench.expected = burst
            started = time.perf_counter()
            await asyncio.gather(*(send(visitors[n % len(visitors)], n) for n in range(burst)))
            try:
                await asyncio.wait_for(bench.arrived.wait(), 60)
            except TimeoutError:
                log(f"burst: only {len(bench.at_agent_ms)} of {burst} reached the agent within 60 s")
            burst_s = time.perf_counter() - started
            report(args, paced_stored, paced_at_agent, total / paced_s, burst, burst_s, bench.at_agent_ms)
    finally:
        for client in clients:
            await client.disconnect()
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(server.wait(), 15)
            except TimeoutError:
                server.kill()
                await server.wait()
        mongo.stop()
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)


async def wait_healthy(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(600):
        try:
            async with session.get(url + "/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("the web node did not become healthy")


def report(
    args: argparse.Namespace,
    stored: list[float],
    at_agent: list[float],
    paced_rate: float,
    burst: int,
    burst_s: float,
    burst_at_agent: list[float],
) -> None:
    print(
        f"machine: {platform.node()} · {platform.machine()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · "
        f"python-socketio {importlib.metadata.version('python-socketio')}"
        " · embedded MongoDB (SecantusDB) + redis-server, one web node"
    )
    rows = [
        ("visitors (Socket.IO /visitor) handed off to one agent", f"{args.visitors}"),
        ("paced: messages sent / at the agent", f"{len(stored)} / {len(at_agent)}"),
        ("paced: rate asked / sustained", f"{args.rate:.0f}/s / {paced_rate:.1f}/s"),
    ]
    if stored:
        rows.append(
            (
                "visitor emit → stored (ack) p50 / p95",
                f"{percentile(stored, 0.5):.1f} / {percentile(stored, 0.95):.1f} ms",
            )
        )
    if at_agent:
        rows.append(
            (
                "visitor emit → timeline → agent socket p50 / p95",
                f"{percentile(at_agent, 0.5):.1f} / {percentile(at_agent, 0.95):.1f} ms"
                f" (target p95 ≤ {P95_TARGET_MS:.0f})",
            )
        )
    rows.append(("burst: messages at once / at the agent", f"{burst} / {len(burst_at_agent)}"))
    rows.append(("burst: throughput (all at the agent)", f"{len(burst_at_agent) / burst_s:.1f} msg/s"))
    if burst_at_agent:
        rows.append(("burst: emit → agent socket p95", f"{percentile(burst_at_agent, 0.95):.0f} ms"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visitors", type=int, default=10)
    parser.add_argument("--messages", type=int, default=30, help="paced messages per visitor")
    parser.add_argument("--rate", type=float, default=20.0, help="paced messages per second, all visitors")
    parser.add_argument("--burst", type=int, default=20, help="unpaced messages per visitor")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
