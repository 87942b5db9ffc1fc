"""Tickets benchmark: intent → ticket created and customer SMS queued, tickets created per second, and how
late SLA escalations fire while many timers are open.

    .venv/bin/python bench/tickets.py            # 100 k open timers, 100 intents, 150 concurrent creations
    .venv/bin/python bench/tickets.py --quick    # 10 k open timers, fewer of everything

It starts the embedded MongoDB and redis-server on free loopback ports in a temporary directory. The ticket
service is the one the web process runs (``create_service`` with the channels' notifier: the customer's SMS
is written to MongoDB and its delivery task queued on Redis before ``from_intent`` returns), so the
latency of one call is "intent → ticket created and SMS queued". Then ``--timers`` open SLA timers (due in a
day, shaped exactly like ``SlaEngine.start`` writes them) are bulk-loaded, a real Celery worker (threads
pool) and beat (1 s sweep) start as ``huiliu run`` starts them and deliver the SMS queued so far, and
``--probes`` urgent tickets with a 10-second first-response target are opened ``--spacing`` seconds apart.
Lateness is the time from a probe's due time to the moment its first escalation was recorded
(``fired[].at`` on the timer, written by the worker). Progress goes to stderr; stdout gets the machine and
one table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._machine import machine  # first: importing bench unshadows the tickets package

# isort: split

import redis.asyncio as aioredis
import yaml
from bson import ObjectId

from core.auth import Role, User
from core.db import Database, utcnow
from core.embedded import EmbeddedServer, free_port, spawn, start_mongo, start_redis
from core.settings import Settings, load_settings
from omnichannel import Channel, Identity, IdentityKind, Omnichannel
from omnichannel.channels import create_channels
from tickets import IntentSignal, Priority, TicketService, create_service
from tickets.config import SCHEMAS
from tickets.models import StaffInput

REPO = Path(__file__).resolve().parent.parent
DB_NAME = "bench_tickets"
INTENT_P95_TARGET_MS = 500.0
LATENESS_TARGET_S = 2.0
PROBE_TARGET_S = 10
STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def percentile(samples: list[float], p: int) -> float:
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add(self, metric: str, value: str, target: str = "") -> None:
        self.rows.append((metric, value, target))

    def render(self) -> str:
        header = ("metric", "value", "target")
        widths = [max(len(row[i]) for row in [header, *self.rows]) for i in range(3)]

        def line(cells: tuple[str, str, str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        return "\n".join(
            [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, self.rows)]
        )


def fast_schemas(root: Path) -> Path:
    """The shipped schemas with a 10-second first-response target for urgent tickets (24×7)."""
    target = root / "schemas"
    shutil.copytree(SCHEMAS, target)
    sla_path = target / "sla.yaml"
    sla = yaml.safe_load(sla_path.read_text(encoding="utf-8"))
    sla["targets"]["urgent"] = {
        "first_response": f"{PROBE_TARGET_S}s",
        "resolution": "4h",
        "calendar": "always",
    }
    sla_path.write_text(yaml.safe_dump(sla, allow_unicode=True), encoding="utf-8")
    return target


def bench_settings(mongo: EmbeddedServer, redis_server: EmbeddedServer, data_dir: Path) -> Settings:
    return load_settings(
        environ={},
        mongo_url=mongo.url,
        redis_url=redis_server.url,
        db_name=DB_NAME,
        data_dir=data_dir,
        secret_key="bench-secret-key-not-for-production",
        demo=False,
    )


async def hire(service: TicketService) -> None:
    team: dict[str, tuple[Role, dict[str, Any]]] = {
        "li": (Role.agent, {"departments": ["after_sales"], "skills": ["after_sales"], "max_open": 1000}),
        "alex": (Role.agent, {"departments": ["after_sales"], "skills": ["after_sales"], "max_open": 1000}),
        "zhao": (
            Role.agent,
            {
                "departments": ["after_sales"],
                "lead_of": ["after_sales"],
                "phone": "13900000001",
                "max_open": 1000,
            },
        ),
        "wang": (Role.supervisor, {"supervisor_of": ["*"], "phone": "13900000009"}),
    }
    for username, (role, profile) in team.items():
        user = User(
            id=str(ObjectId()),
            username=username,
            display_name=username,
            role=role,
            created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        )
        await service.put_staff(user, StaffInput(**profile))


async def customers(omni: Omnichannel, count: int, offset: int) -> list[str]:
    ids = []
    for n in range(count):
        customer, _ = await omni.customers.resolve(
            [Identity(kind=IdentityKind.phone, value=f"+86138{offset + n:08d}")],
            name=f"客户{n}",
            language="zh",
        )
        ids.append(customer.id)
    return ids


def signal_for(customer_id: str, n: int, priority: Priority = Priority.normal) -> IntentSignal:
    return IntentSignal(
        customer_id=customer_id,
        intent="return_request" if priority == Priority.normal else "cancel_order",
        confidence=0.9,
        entities={"order_number": str(100000 + n)},
        priority=priority,
        text=f"我要退货，订单号 {100000 + n}",
        channel=Channel.sms,
        language="zh",
        idempotency_key=f"bench-{n}",
    )


async def measure_intents(service: TicketService, db: Database, ids: list[str], table: Table) -> None:
    latencies = []
    for n, customer_id in enumerate(ids):
        started = time.perf_counter()
        outcome = await service.from_intent(signal_for(customer_id, n))
        latencies.append((time.perf_counter() - started) * 1000)
        assert outcome.action == "created", outcome
    queued = await db["sms_messages"].count_documents({})
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    table.add(
        f"intent → ticket created + SMS queued ({len(ids)} one at a time)",
        f"p50 {p50:.0f} ms / p95 {p95:.0f} ms / max {max(latencies):.0f} ms",
        f"p95 ≤ {INTENT_P95_TARGET_MS:.0f} ms: {'met' if p95 <= INTENT_P95_TARGET_MS else 'MISSED'}",
    )
    table.add("customer SMS queued for those tickets", f"{queued} of {len(ids)}", "all")


async def measure_throughput(service: TicketService, ids: list[str], concurrency: int, table: Table) -> None:
    queue = list(enumerate(ids, start=1_000_000))

    async def work() -> None:
        while queue:
            n, customer_id = queue.pop()
            outcome = await service.from_intent(signal_for(customer_id, n))
            assert outcome.action == "created", outcome

    started = time.perf_counter()
    await asyncio.gather(*(work() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    table.add(
        f"tickets created/s ({len(ids)} tickets, {concurrency} concurrent, SMS queued each)",
        f"{len(ids) / elapsed:.1f} /s",
    )


async def load_timers(db: Database, count: int) -> float:
    """``count`` running timers due in a day, as ``SlaEngine.start`` writes them; returns seconds taken."""
    started = time.perf_counter()
    now = utcnow()
    due = now + dt.timedelta(days=1)
    chain = [{"to": "assignee", "channel": "web", "after_minutes": 0.0}]
    batch: list[dict[str, Any]] = []
    for n in range(count):
        batch.append(
            {
                "_id": f"bench:{n}:resolution:1",
                "ticket_id": f"bench-ticket-{n}",
                "customer_id": "bench-customer",
                "number": f"B-{n}",
                "kind": "resolution",
                "label": "resolution",
                "department": None,
                "calendar": "always",
                "state": "running",
                "target_seconds": 86_400.0,
                "started_at": now,
                "due_at": due,
                "remind_at": now + dt.timedelta(hours=19),
                "reminded_at": None,
                "breached_at": None,
                "level": 0,
                "chain": chain,
                "generation": 0,
                "effects": [],
                "effects_pending": False,
                "lease_until": None,
                "fired": [],
                "stopped_at": None,
                "next_check_at": now + dt.timedelta(hours=19),
            }
        )
        if len(batch) == 5000:
            await db["sla_timers"].insert_many(batch, ordered=False)
            batch = []
            progress(f"  {n + 1:,} timers loaded")
    if batch:
        await db["sla_timers"].insert_many(batch, ordered=False)
    return time.perf_counter() - started


async def unsent(db: Database) -> int:
    return int(await db["sms_messages"].count_documents({"status": {"$in": ["queued", "sending"]}}))


def start_celery(env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    base = [sys.executable, "-m", "celery", "-A", "core.worker"]
    beat = spawn(
        [*base, "beat", "--schedule", str(logs / "beat-schedule")],
        env=env,
        log_path=logs / "beat.log",
        cwd=REPO,
    )
    worker = spawn(
        [
            *base,
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ],
        env=env,
        log_path=logs / "worker.log",
        cwd=REPO,
    )
    return [beat, worker]


async def measure_lateness(
    service: TicketService,
    db: Database,
    ids: list[str],
    probes: int,
    spacing: float,
    open_timers: int,
    table: Table,
) -> None:
    cases = []
    for n, customer_id in enumerate(ids[:probes]):
        outcome = await service.from_intent(signal_for(customer_id, 2_000_000 + n, Priority.urgent))
        assert outcome.ticket is not None
        timer = await db["sla_timers"].find_one({"ticket_id": outcome.ticket.id, "kind": "first_response"})
        assert timer is not None
        cases.append((timer["_id"], timer["due_at"]))
        await asyncio.sleep(spacing)
    deadline = time.monotonic() + PROBE_TARGET_S + 60
    late: dict[str, float] = {}
    while time.monotonic() < deadline and len(late) < len(cases):
        await asyncio.sleep(0.5)
        for timer_id, due in cases:
            doc = await db["sla_timers"].find_one({"_id": timer_id}, {"fired": 1})
            fired = [f["at"] for f in (doc or {}).get("fired", []) if f["key"].endswith(":level1")]
            if fired:
                late[timer_id] = (fired[0] - due).total_seconds()
    lateness = list(late.values())
    missed = len(cases) - len(lateness)
    if lateness:
        p50, p95, worst = percentile(lateness, 50), percentile(lateness, 95), max(lateness)
        verdict = "met" if worst <= LATENESS_TARGET_S and not missed else "MISSED"
        table.add(
            f"SLA escalation lateness ({len(cases)} probes, {open_timers:,} other open timers)",
            f"p50 {p50:.2f} s / p95 {p95:.2f} s / max {worst:.2f} s",
            f"≤ {LATENESS_TARGET_S:.0f} s: {verdict}",
        )
    table.add("escalations missed (not fired within a minute of the deadline)", str(missed), "0")


async def run(args: argparse.Namespace, root: Path) -> None:
    mongo = start_mongo(root / "mongo", free_port(), root / "mongo.log")
    redis_server = start_redis(root / "redis", free_port(), root / "redis.log")
    processes: list[subprocess.Popen[bytes]] = []
    data_dir = root / "var"
    data_dir.mkdir()
    (data_dir / "tickets.yaml").write_text(
        f"sla_sweep_seconds: 1\nschemas_dir: {fast_schemas(root)}\n", encoding="utf-8"
    )
    settings = bench_settings(mongo, redis_server, data_dir)
    assert settings.mongo_url is not None and settings.redis_url is not None
    db = Database.connect(settings.mongo_url, settings.db_name)
    redis = aioredis.from_url(settings.redis_url)
    table = Table()
    try:
        await db.prepare()
        omni = Omnichannel.create(db, None, default_region=settings.default_region)
        channels = create_channels(db, omni, redis, settings)
        service = create_service(db, omni, settings, notifier=channels.notifier)
        await hire(service)
        total = args.intents + args.concurrent + args.probes
        progress(f"creating {total} customers")
        ids = await customers(omni, total, 0)
        progress(f"intent → ticket, {args.intents} one at a time")
        await measure_intents(service, db, ids[: args.intents], table)
        progress(f"{args.concurrent} tickets, {args.concurrency} at a time")
        await measure_throughput(
            service, ids[args.intents : args.intents + args.concurrent], args.concurrency, table
        )
        progress(f"loading {args.timers:,} open SLA timers")
        seconds = await load_timers(db, args.timers)
        table.add("open SLA timers bulk-loaded", f"{args.timers:,} in {seconds:.0f} s")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HUILIU_")},
            "HUILIU_MONGO_URL": settings.mongo_url,
            "HUILIU_REDIS_URL": settings.redis_url,
            "HUILIU_DB_NAME": settings.db_name,
            "HUILIU_DATA_DIR": str(data_dir),
            "HUILIU_SECRET_KEY": "bench-secret-key-not-for-production",
            "HUILIU_LOG_LEVEL": "WARNING",
        }
        processes = start_celery(env, root)
        await asyncio.sleep(3)  # the worker connects and beat starts its 1-second sweep
        # The SMS of the tickets above are delivered first: probes measure the steady state, not a backlog.
        for _ in range(120):  # at most a minute
            if not (await redis.llen("celery") or await unsent(db)):
                break
            await asyncio.sleep(0.5)
        table.add("queued SMS delivered by the worker before the probes", f"{await unsent(db)} left")
        sweep_started = time.perf_counter()
        await service.sla.sweep()
        table.add(
            "one SLA sweep over them (nothing due)", f"{(time.perf_counter() - sweep_started) * 1000:.0f} ms"
        )
        progress(f"{args.probes} urgent probes, {PROBE_TARGET_S} s first-response target")
        await measure_lateness(
            service, db, ids[-args.probes :], args.probes, args.spacing, args.timers, table
        )
        await channels.close()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        await redis.aclose()
        await db.close()
        redis_server.stop()
        mongo.stop()
    print("\n".join(machine()))
    started = dt.datetime.now(dt.UTC)
    print(f"embedded MongoDB (SecantusDB) and redis-server on loopback; {started:%Y-%m-%d %H:%M} UTC")
    print()
    print(table.render())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="10 k timers, fewer tickets")
    parser.add_argument("--timers", type=int, default=None, help="open SLA timers (default 100,000)")
    parser.add_argument("--intents", type=int, default=None)
    parser.add_argument("--concurrent", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--probes", type=int, default=12)
    parser.add_argument("--spacing", type=float, default=1.5, help="seconds between probe tickets")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and logs")
    args = parser.parse_args()
    args.timers = args.timers if args.timers is not None else (10_000 if args.quick else 100_000)
    args.intents = args.intents if args.intents is not None else (50 if args.quick else 100)
    args.concurrent = args.concurrent if args.concurrent is not None else (50 if args.quick else 150)
    root = Path(tempfile.mkdtemp(prefix="huiliu-bench-tickets-"))
    try:
        asyncio.run(run(args, root))
    finally:
        if args.keep:
            progress(f"kept {root} (worker.log has each task's duration)")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
