"""Desktop benchmark: agents held on Socket.IO, offers per second, screen-pop latency and wallboard latency.

    .venv/bin/python -m bench.desktop                       # 1,000 agents, 200 offers at 20/s, 20 probes
    .venv/bin/python -m bench.desktop --agents 200 --offers 50 --probes 10

(Run as a module from the repository root: as a script, ``bench/`` would come first on ``sys.path`` and
``bench/tickets.py`` would shadow the ``tickets`` package.)

Same setup as ``bench/screenpop.py`` (whose seeding, clients and report helpers it reuses): embedded MongoDB
and redis-server, the real web application as a child process (``huiliu web``), one Socket.IO client per agent
in this process, every agent accepting what it is offered. On top it connects a supervisor to
``/supervisor`` and measures the wallboard: a probe contact is queued in a queue no agent can serve, and the
latency is from the end of that enqueue to the first pushed wallboard that counts it. At the end it counts the
agent sockets still connected, and reads the web node's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import importlib.metadata
import os
import platform
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import socketio
from bson import ObjectId

from agent_desktop import ContactKind, Desktop, NewContact, QueueConfig
from bench.screenpop import (
    DB_NAME,
    P95_TARGET_MS,
    REPO,
    Agents,
    bench_settings,
    log,
    percentile,
    rss_mb,
    seed,
    wait_healthy,
)
from core.db import Database, utcnow
from core.embedded import free_port, start_mongo, start_redis
from core.settings import Settings

PROBE_QUEUE = "probe"
WALLBOARD_TARGET_MS = 1000.0


async def supervisor_token(settings: Settings) -> str:
    """A supervisor user with a stored token (the way UserService.login stores it)."""
    assert settings.mongo_url is not None
    db = Database.connect(settings.mongo_url, settings.db_name)
    now = utcnow()
    user_id = ObjectId()
    await db["users"].insert_one(
        {
            "_id": user_id,
            "username": "bench_supervisor",
            "display_name": "Bench supervisor",
            "role": "supervisor",
            "language": "zh",
            "disabled": False,
            "password_hash": "unused",
            "created_at": now,
        }
    )
    token = secrets.token_urlsafe(32)
    await db["auth_tokens"].insert_one(
        {
            "_id": hashlib.sha256(token.encode()).hexdigest(),
            "user_id": user_id,
            "created_at": now,
            "expires_at": now + dt.timedelta(hours=2),
        }
    )
    await db.close()
    return token


class Wallboards:
    """The supervisor's socket: every pushed wallboard with the time it arrived."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.boards: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.pushes = 0

    async def connect(self, url: str, token: str) -> None:
        async def on_board(board: dict[str, Any]) -> None:
            self.pushes += 1
            self.boards.put_nowait((time.perf_counter(), board))

        self.client.on("wallboard", on_board, namespace="/supervisor")
        await self.client.connect(
            url, namespaces=["/supervisor"], auth={"token": token}, transports=["websocket"], wait_timeout=30
        )

    async def first_with(self, waiting: int, within: float = 5.0) -> float | None:
        """Arrival time of the first board whose probe queue has ``waiting`` contacts."""
        try:
            async with asyncio.timeout(within):
                while True:
                    arrived, board = await self.boards.get()
                    for queue in board["queues"]:
                        if queue["queue"] == PROBE_QUEUE and queue["waiting"] >= waiting:
                            return arrived
        except TimeoutError:
            return None


async def probe_wallboard(
    desktop: Desktop, boards: Wallboards, customers: list[str], probes: int
) -> list[float]:
    latencies: list[float] = []
    while not boards.boards.empty():
        boards.boards.get_nowait()
    for number in range(probes):
        customer_id = customers[number % len(customers)].split("|")[0]
        await desktop.acd.add(
            NewContact(
                queue=PROBE_QUEUE,
                kind=ContactKind.chat,
                customer_id=customer_id,
                external_ref=f"bench-probe-{number}",
            )
        )
        queued = time.perf_counter()
        arrived = await boards.first_with(number + 1)
        if arrived is None:
            log(f"probe {number}: no wallboard counted it within 5 s")
            continue
        latencies.append((arrived - queued) * 1000)
        await asyncio.sleep(0.2)
    return latencies


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="huiliu-bench-desktop-"))
    mongo = start_mongo(root / "mongo", free_port(), root / "mongo.log")
    redis = start_redis(root / "redis", free_port(), root / "redis.log")
    server: asyncio.subprocess.Process | None = None
    agents: Agents | None = None
    boards = Wallboards()
    try:
        settings = bench_settings(mongo.url, redis.url, root / "var")
        tokens, desktop, customers = await seed(settings, args.agents, args.offers, args.history)
        await desktop.store.create_queue(QueueConfig(id=PROBE_QUEUE, skills={"nobody_has_this": 1}))
        supervisor = await supervisor_token(settings)
        port = free_port()
        server = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "huiliu"),
            "web",
            env={
                **os.environ,
                "HUILIU_MONGO_URL": mongo.url,
                "HUILIU_REDIS_URL": redis.url,
                "HUILIU_DB_NAME": DB_NAME,
                "HUILIU_DATA_DIR": str(root / "var"),
                "HUILIU_WEB_PORT": str(port),
                "HUILIU_DEMO": "false",
                "HUILIU_LOG_LEVEL": "WARNING",
                "HUILIU_SECRET_KEY": "bench-secret-key-not-for-production",
            },
            cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url)
        agents = Agents(url)
        started = time.perf_counter()
        for start in range(0, len(tokens), 50):
            await asyncio.gather(*(agents.connect(token) for token in tokens[start : start + 50]))
            log(f"connected {len(agents.clients)} agents")
        connect_s = time.perf_counter() - started
        await boards.connect(url, supervisor)
        await asyncio.sleep(1.0)

        agents.expected = args.offers
        started = time.perf_counter()
        for number, pair in enumerate(customers):
            customer_id, conversation_id = pair.split("|")
            await desktop.acd.add(
                NewContact(
                    queue="after_sales",
                    kind=ContactKind.call,
                    customer_id=customer_id,
                    conversation_id=conversation_id,
                    external_ref=f"bench-call-{number}",
                    context={"flow": "main", "path": [], "variables": {"order_number": f"{number:05d}"}},
                )
            )
            await asyncio.sleep(max(0.0, started + (number + 1) / args.rate - time.perf_counter()))
        try:
            async with asyncio.timeout(60):
                await agents.received.wait()
        except TimeoutError:
            log(f"only {len(agents.latencies_ms)} of {args.offers} offers arrived within 60 s")
        offers_s = time.perf_counter() - started
        pushes_during_offers = boards.pushes
        log("probing the wallboard")
        wallboard_ms = await probe_wallboard(desktop, boards, customers, args.probes)
        held = sum(1 for client in agents.clients if client.connected)
        report(
            args,
            held,
            len(agents.clients),
            connect_s,
            agents,
            offers_s,
            pushes_during_offers,
            wallboard_ms,
            server.pid,
        )
    finally:
        await boards.client.disconnect()
        if agents is not None:
            await agents.close()
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(15):
                    await server.wait()
            except TimeoutError:
                log("the web node did not stop within 15 s; killing it")
                server.kill()
                await server.wait()
        mongo.stop()
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)


def report(
    args: argparse.Namespace,
    held: int,
    connected: int,
    connect_s: float,
    agents: Agents,
    offers_s: float,
    pushes: int,
    wallboard_ms: list[float],
    server_pid: int,
) -> None:
    latencies = agents.latencies_ms
    print(
        f"machine: {platform.node()} · {platform.machine()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · "
        f"python-socketio {importlib.metadata.version('python-socketio')} · "
        "embedded MongoDB (SecantusDB) + redis-server, one web node"
    )
    rows = [
        ("agents connected / still connected at the end", f"{connected} / {held}"),
        ("time to connect them", f"{connect_s:.1f} s"),
        ("offers queued / screen-pops received", f"{args.offers} / {len(latencies)}"),
        ("offers per second asked / achieved", f"{args.rate:.0f}/s / {len(latencies) / offers_s:.1f}/s"),
    ]
    if latencies:
        rows += [
            ("decision → screen-pop at agent p50", f"{percentile(latencies, 0.50):.1f} ms"),
            (
                "decision → screen-pop at agent p95",
                f"{percentile(latencies, 0.95):.1f} ms (target ≤ {P95_TARGET_MS:.0f})",
            ),
        ]
    rows.append(("wallboard pushes to one supervisor during the offers", f"{pushes}"))
    if wallboard_ms:
        rows += [
            (
                f"contact queued → wallboard shows it p50 / p95 / max ({len(wallboard_ms)} probes)",
                f"{percentile(wallboard_ms, 0.5):.0f} / {percentile(wallboard_ms, 0.95):.0f} / "
                f"{max(wallboard_ms):.0f} ms (target ≤ {WALLBOARD_TARGET_MS:.0f})",
            )
        ]
    rows.append(("web node RSS at the end", f"{rss_mb(server_pid):.0f} MB"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--offers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="contacts queued per second")
    parser.add_argument("--history", type=int, default=20, help="timeline events per customer")
    parser.add_argument("--probes", type=int, default=20, help="wallboard latency probes")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
