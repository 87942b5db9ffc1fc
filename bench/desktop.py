"""Desktop benchmark: agents held on Socket.IO, offers per second, screen-pop latency and wallboard latency.

    .venv/bin/python -m bench.desktop                       # 1,000 agents, 200 offers at 20/s, 20 probes
    .venv/bin/python -m bench.desktop --agents 200 --offers 50 --probes 10
    .venv/bin/python -m bench.desktop --probes 0            # screen-pops only, no supervisor connected

(Run as a module from the repository root: as a script, ``bench/`` would come first on ``sys.path`` and
``bench/tickets.py`` would shadow the ``tickets`` package.)

It starts the embedded MongoDB and redis-server on free loopback ports, seeds the agents (users, tokens,
skills, available), one queue and a customer per offer with a history of ``--history`` timeline events on two
channels plus a live transcript, then runs the real web application in a child process (``huiliu web``: one
web node, its ACD loop routing) and connects one Socket.IO client per agent from this process. Contacts are
queued through the ACD at ``--rate`` per second; every agent accepts the offer it gets. The screen-pop latency
is the server's ``decided_at`` (wall clock, taken when the agent was claimed) to the moment the client's
handler runs with the whole payload; both processes share the machine's clock.

Unless ``--probes 0``, a supervisor is connected to ``/supervisor`` throughout (as on a real floor) and the
wallboard is measured after the offers: a probe contact is queued in a queue no agent can serve, and the
latency is from the end of that enqueue to the first pushed wallboard that counts it. At the end it counts the
agent sockets still connected and reads the web node's RSS. Progress goes to stderr; stdout gets the machine
and one table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import importlib.metadata
import os
import platform
import resource
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from argon2 import PasswordHasher
from bson import ObjectId

import bench  # noqa: F401  (first: run as a script, it unshadows the tickets package)

# isort: split
from agent_desktop import AgentSkills, ContactKind, Desktop, NewContact, QueueConfig, RecordingNotifier
from agent_desktop.models import StateChange
from core.auth import Role, User, UserService
from core.db import Database, utcnow
from core.embedded import free_port, start_mongo, start_redis
from core.settings import Settings, load_settings
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, NewEvent, Omnichannel
from tickets.service import create_service

P95_TARGET_MS = 150.0
WALLBOARD_TARGET_MS = 1000.0
REPO = Path(__file__).resolve().parent.parent
DB_NAME = "bench_desktop"
PROBE_QUEUE = "probe"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_settings(mongo_url: str, redis_url: str, data_dir: Path) -> Settings:
    return load_settings(
        environ={},
        mongo_url=mongo_url,
        redis_url=redis_url,
        db_name=DB_NAME,
        data_dir=data_dir,
        secret_key="bench-secret-key-not-for-production",
    )


# ------------------------------------------------------------------------------------------------ seeding


async def seed(
    settings: Settings, agents: int, offers: int, history: int
) -> tuple[list[str], Desktop, list[str]]:
    """Agents (with tokens) and customers; returns (tokens, a desktop to queue contacts, customer ids)."""
    assert settings.mongo_url is not None
    db = Database.connect(settings.mongo_url, settings.db_name)
    await db.prepare()
    # One argon2 hash for every bench agent, and tokens stored the way UserService.login stores them:
    # hashing and verifying 1,000 passwords would take a minute of CPU and measure nothing we care about.
    password_hash = PasswordHasher().hash("bench-agent-password")
    now = utcnow()
    user_docs: list[dict[str, Any]] = [
        {
            "_id": ObjectId(),
            "username": f"bench{number:04d}",
            "display_name": f"Bench {number:04d}",
            "role": "agent",
            "language": "zh",
            "disabled": False,
            "password_hash": password_hash,
            "created_at": now,
        }
        for number in range(agents)
    ]
    await db["users"].insert_many(user_docs)
    tokens = [secrets.token_urlsafe(32) for _ in user_docs]
    await db["auth_tokens"].insert_many(
        [
            {
                "_id": hashlib.sha256(token.encode()).hexdigest(),
                "user_id": doc["_id"],
                "created_at": now,
                "expires_at": now + dt.timedelta(hours=2),
            }
            for token, doc in zip(tokens, user_docs, strict=True)
        ]
    )
    omni = Omnichannel.create(db, None)
    desktop = Desktop.create(
        db, omni, create_service(db, omni, settings), UserService(db), RecordingNotifier()
    )
    await desktop.store.create_queue(
        QueueConfig(id="after_sales", skills={"after_sales": 1}, offer_timeout_seconds=60, wrap_up_seconds=0)
    )
    for number, doc in enumerate(user_docs):
        user = User(
            id=str(doc["_id"]),
            username=doc["username"],
            display_name=doc["display_name"],
            role=Role.agent,
            created_at=now,
        )
        await desktop.agents.ensure(user)
        await desktop.agents.set_skills(user.id, AgentSkills(skills={"after_sales": 1 + number % 5}))
        await desktop.agents.set_state(user, StateChange(state="available"))
    log(f"seeded {agents} agents")
    customers = []
    for number in range(offers):
        customer, _ = await omni.customers.resolve(
            [Identity(kind=IdentityKind.phone, value=f"1380000{number:04d}")]
        )
        conversation, _ = await omni.conversations.open(
            customer.id, NewConversation(channel=Channel.voice, external_ref=f"bench-call-{number}")
        )
        for event in range(history):
            channel = Channel.wechat if event % 2 else Channel.voice
            await omni.timeline.append(
                customer.id,
                NewEvent(
                    kind="message.in" if channel is Channel.wechat else "transcript.final",
                    channel=channel,
                    conversation_id=None if channel is Channel.wechat else conversation.id,
                    body={"text": f"我要退货，订单号 {number:05d}（第 {event} 句）"},
                ),
                Actor(type="customer"),
            )
        customers.append(f"{customer.id}|{conversation.id}")
    log(f"seeded {offers} customers with {history} events each")
    return tokens, desktop, customers


# ------------------------------------------------------------------------------------------------ clients


class Agents:
    def __init__(self, url: str) -> None:
        self.url = url
        self.clients: list[socketio.AsyncClient] = []
        self.latencies_ms: list[float] = []
        self.sizes: list[int] = []
        self.queued_ms: list[float] = []
        self.received = asyncio.Event()
        self.expected = 0

    async def connect(self, token: str) -> None:
        client = socketio.AsyncClient(reconnection=False)

        async def on_offer(pop: dict[str, Any]) -> None:
            arrived = time.time()
            self.latencies_ms.append((arrived - pop["decided_at"]) * 1000)
            self.sizes.append(len(str(pop)))
            enqueued = dt.datetime.fromisoformat(pop["contact"]["enqueued_at"]).timestamp()
            self.queued_ms.append((pop["decided_at"] - enqueued) * 1000)
            if len(self.latencies_ms) >= self.expected:
                self.received.set()
            await client.emit("accept", {"contact_id": pop["contact"]["id"]}, namespace="/agent")

        client.on("offer", on_offer, namespace="/agent")
        await client.connect(
            self.url, namespaces=["/agent"], auth={"token": token}, transports=["websocket"], wait_timeout=30
        )
        self.clients.append(client)

    async def close(self) -> None:
        for start in range(0, len(self.clients), 100):
            await asyncio.gather(
                *(client.disconnect() for client in self.clients[start : start + 100]), return_exceptions=True
            )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


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
        if args.probes > 0:
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
        wallboard_ms: list[float] = []
        if args.probes > 0:
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
        if boards.client.connected:
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


async def wait_healthy(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("the web node did not become healthy")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


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
        ("history per customer (timeline events)", f"{args.history}"),
        (
            "screen-pop payload size (median, chars of JSON)",
            f"{statistics.median(agents.sizes):.0f}" if agents.sizes else "-",
        ),
    ]
    if latencies:
        rows += [
            ("decision → screen-pop at agent p50", f"{percentile(latencies, 0.50):.1f} ms"),
            (
                "decision → screen-pop at agent p95",
                f"{percentile(latencies, 0.95):.1f} ms (target ≤ {P95_TARGET_MS:.0f})",
            ),
            ("decision → screen-pop at agent max", f"{max(latencies):.1f} ms"),
            (
                "queued → routing decision p50 / p95 (queued by another process: ACD tick)",
                f"{percentile(agents.queued_ms, 0.5):.0f} / {percentile(agents.queued_ms, 0.95):.0f} ms",
            ),
        ]
    if args.probes > 0:
        rows.append(("wallboard pushes to one supervisor during the offers", f"{pushes}"))
    if wallboard_ms:
        rows += [
            (
                f"contact queued → wallboard shows it p50 / p95 / max ({len(wallboard_ms)} probes)",
                f"{percentile(wallboard_ms, 0.5):.0f} / {percentile(wallboard_ms, 0.95):.0f} / "
                f"{max(wallboard_ms):.0f} ms (target ≤ {WALLBOARD_TARGET_MS:.0f})",
            )
        ]
    rows += [
        ("web node RSS at the end", f"{rss_mb(server_pid):.0f} MB"),
        (
            "bench client process max RSS",
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
        ),
    ]
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
