"""Timeline benchmark: append throughput and latest-50 read latency at 10 k and 1 M events.

    .venv/bin/python bench/timeline.py              # full run: 1 M events (about 12 minutes on 2 cores)
    .venv/bin/python bench/timeline.py --quick      # smoke run: 10 k events
    .venv/bin/python bench/timeline.py --mongo-url mongodb://host:27017/   # against a real MongoDB

Without ``--mongo-url`` it starts the embedded MongoDB (SecantusDB) with the platform's defaults on a free
loopback port in a temporary directory, and removes both afterwards. Appends are measured one event at a
time through ``omni.timeline.append`` and, for comparison, through the driver's ``insert_one`` of the same
document. The bulk of the history is loaded with raw ``insert_many`` batches of documents shaped exactly
like the ones ``append`` writes (checked field by field against an appended one): appending 1 M events one
by one would take most of an hour here. Reads go through ``omni.timeline.page``. Progress goes to stderr;
stdout gets the machine and one table of figures against the targets in DESIGN.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
from bson import ObjectId
from pymongo.errors import PyMongoError

from bench._machine import machine
from core.db import Database, utcnow
from core.embedded import EmbeddedServer, free_port, start_mongo
from core.pagination import decode_cursor

# Importing omnichannel registers its indexes, which Database.prepare() then creates.
from omnichannel import Actor, Channel, Identity, IdentityKind, NewEvent, Omnichannel

APPEND_TARGET_PER_S = 1_000
READ_P95_TARGET_MS = 10.0
TARGET_SCALE = 1_000_000  # the read target holds at this many events in the collection
PAGE_SIZE = 50
NEWEST_FIRST = [("ts", -1), ("_id", -1)]  # TimelineService.page's order
BULK_BATCH = 5_000
CUSTOMER = Actor(type="customer")
CUSTOMER_DOC = CUSTOMER.model_dump(mode="json")
HISTORY = dt.timedelta(days=365)
MESSAGES = [
    "您好，我的订单 {n} 什么时候发货？",
    "我要退货，订单号 {n}",
    "请问退款进度怎么样了？单号 {n}",
    "Hello, where is my parcel {n}?",
]


STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def message_text(n: int) -> str:
    return MESSAGES[n % len(MESSAGES)].format(n=100000 + n)


def event_doc(customer_id: ObjectId, ts: dt.datetime, key: str, text: str) -> dict[str, Any]:
    """The document ``TimelineService.append`` stores for a customer's WeChat message."""
    return {
        "_id": ObjectId(),
        "customer_id": customer_id,
        "conversation_id": None,
        "ts": ts,
        "channel": Channel.wechat.value,
        "kind": "message.in",
        "actor": dict(CUSTOMER_DOC),
        "body": {"text": text},
        "idempotency_key": key,
    }


def shape(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        key: shape(value) if isinstance(value, dict) else type(value).__name__ for key, value in doc.items()
    }


def human(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000} M"
    if count >= 1_000 and count % 1_000 == 0:
        return f"{count // 1_000} k"
    return f"{count:,}"


@dataclass
class Latencies:
    samples_ms: list[float] = field(default_factory=list)

    def percentile(self, p: int) -> float:
        if len(self.samples_ms) == 1:
            return self.samples_ms[0]
        return statistics.quantiles(self.samples_ms, n=100, method="inclusive")[p - 1]

    def summary(self) -> str:
        return " / ".join(f"p{p} {self.percentile(p):,.1f}" for p in (50, 95, 99)) + " ms"


@dataclass
class Table:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, value: str, target: str = "") -> None:
        self.rows.append((metric, value, target))

    def render(self) -> str:
        header = ("metric", "value", "target")
        widths = [max(len(row[i]) for row in [header, *self.rows]) for i in range(3)]

        def line(cells: tuple[str, str, str]) -> str:
            return (
                "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"
            )

        rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
        return "\n".join([line(header), rule, *(line(row) for row in self.rows)])


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


@dataclass
class Population:
    """1 heavy customer plus ordinary ones, and how many events each kind holds so far."""

    heavy: str
    others: list[str]
    heavy_share: float
    heavy_events: int = 0
    total_events: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(20260514))

    def random_other(self) -> str:
        return self.others[self.rng.randrange(len(self.others))]


class TimelineBench:
    def __init__(
        self, db: Database, omni: Omnichannel, args: argparse.Namespace, table: Table, unretried: Any
    ) -> None:
        self.db = db
        self.omni = omni
        self.args = args
        self.table = table
        self.events = db["timeline"]
        self.unretried_events = unretried  # the same collection through a client with retryWrites=false
        self.history_start = utcnow() - HISTORY
        self.bulk_loaded = 0

    async def create_customers(self, count: int, heavy_share: float) -> Population:
        ids: list[str] = [""] * count

        async def resolve(i: int) -> None:
            phone = f"+86138{i:08d}"
            customer, _created = await self.omni.customers.resolve(
                [Identity(kind=IdentityKind.phone, value=phone)]
            )
            ids[i] = customer.id

        rate = await run_concurrently(count, self.args.concurrency, resolve)
        progress(f"{count:,} customers resolved through the API ({rate:,.0f}/s)")
        self.table.add(
            f"customers created via omni.customers.resolve, {self.args.concurrency} tasks (n={count:,})",
            f"{rate:,.0f} customers/s",
        )
        return Population(heavy=ids[0], others=ids[1:], heavy_share=heavy_share)

    async def bulk_load(self, population: Population, total: int) -> None:
        """Raw ``insert_many`` until the collection holds ``total`` events; the heavy customer its share."""
        missing = total - population.total_events
        heavy_missing = round(total * population.heavy_share) - population.heavy_events
        if missing <= 0:
            return
        heavy_id, others = ObjectId(population.heavy), [ObjectId(other) for other in population.others]
        started = time.perf_counter()
        spacing = HISTORY / max(self.args.events, total)
        batch: list[dict[str, Any]] = []
        for j in range(missing):
            # Bresenham spread: exactly heavy_missing of the missing events go to the heavy customer.
            is_heavy = (j * heavy_missing) // missing != ((j + 1) * heavy_missing) // missing
            n = self.bulk_loaded
            owner = heavy_id if is_heavy else others[population.rng.randrange(len(others))]
            ts = self.history_start + spacing * n
            ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
            batch.append(event_doc(owner, ts, f"bench:bulk:{n}", message_text(n)))
            self.bulk_loaded += 1
            population.heavy_events += is_heavy
            if len(batch) == BULK_BATCH or j == missing - 1:
                await self.events.insert_many(batch, ordered=False)
                population.total_events += len(batch)
                batch = []
                done = j + 1
                if done % 50_000 < BULK_BATCH or done == missing:
                    rate = done / (time.perf_counter() - started)
                    eta = (missing - done) / rate
                    progress(
                        f"bulk insert_many: {done:,}/{missing:,} ({rate:,.0f} docs/s, {eta:,.0f} s left)"
                    )
        elapsed = time.perf_counter() - started
        self.table.notes.append(
            f"bulk to {human(total)}: {missing:,} events by raw insert_many in batches of {BULK_BATCH:,} "
            f"in {elapsed:,.0f} s ({missing / elapsed:,.0f} docs/s) — not through append"
        )

    async def check_bulk_shape(self, population: Population) -> None:
        """An appended event and a bulk one must be the same document but for values."""
        appended, _created = await self.omni.timeline.append(
            population.random_other(),
            NewEvent(
                kind="message.in",
                channel=Channel.wechat,
                body={"text": "shape"},
                idempotency_key="bench:shape",
            ),
            CUSTOMER,
        )
        population.total_events += 1
        stored = await self.events.find_one({"_id": ObjectId(appended.id)})
        bulk = await self.events.find_one({"idempotency_key": "bench:bulk:0"})
        assert stored is not None and bulk is not None
        if shape(stored) != shape(bulk) or stored["actor"] != bulk["actor"]:
            raise SystemExit(f"bulk documents differ from appended ones:\n{stored}\n{bulk}")
        self.table.notes.append(
            "bulk documents have the same fields and BSON types as one written by append (checked)"
        )

    async def measure_appends(self, population: Population, at: str, count: int) -> None:
        """Append throughput, sequential and concurrent, through the API layer and the raw driver."""

        def through_api(prefix: str) -> Callable[[int], Awaitable[None]]:
            async def append(i: int) -> None:
                event = NewEvent(
                    kind="message.in",
                    channel=Channel.wechat,
                    body={"text": message_text(i)},
                    idempotency_key=f"{prefix}:{i}",
                )
                await self.omni.timeline.append(population.random_other(), event, CUSTOMER)

            return append

        def through_driver(events: Any) -> Callable[[str], Callable[[int], Awaitable[None]]]:
            def make(prefix: str) -> Callable[[int], Awaitable[None]]:
                async def insert(i: int) -> None:
                    customer_id = ObjectId(population.random_other())
                    await events.insert_one(
                        event_doc(customer_id, utcnow(), f"{prefix}:{i}", message_text(i))
                    )

                return insert

            return make

        rates: dict[tuple[str, int], float] = {}
        layers = (
            ("api", through_api),
            ("raw", through_driver(self.events)),
            ("raw-noretry", through_driver(self.unretried_events)),
        )
        for layer, make_op in layers:
            for workers in (1, self.args.concurrency):
                op = make_op(f"bench:append:{at}:{layer}:{workers}")
                rates[layer, workers] = await run_concurrently(count, workers, op)
                population.total_events += count
                progress(f"append @ {at} {layer} x{workers}: {rates[layer, workers]:,.0f} events/s")
        target = f"≥ {APPEND_TARGET_PER_S:,} events/s"
        for workers in (1, self.args.concurrency):
            name = "sequential" if workers == 1 else f"{workers} concurrent tasks"
            api_rate, raw_rate = rates["api", workers], rates["raw", workers]
            self.table.add(
                f"append via omni.timeline.append, {name} @ {at} (n={count:,})",
                f"{api_rate:,.0f} events/s",
                f"{target} ({verdict(api_rate >= APPEND_TARGET_PER_S)})",
            )
            self.table.add(
                f"append via raw insert_one, {name} @ {at} (n={count:,})", f"{raw_rate:,.0f} events/s"
            )
            self.table.add(f"append API/raw ratio, {name} @ {at}", f"{api_rate / raw_rate:.2f}")
            self.table.add(
                f"append via raw insert_one, retryWrites=false, {name} @ {at} (n={count:,}, diagnostic)",
                f"{rates['raw-noretry', workers]:,.0f} events/s",
            )

    async def measure_reads(self, population: Population) -> None:
        """Latest-50 page latency for random customers and the heavy one, then one page-2 read."""
        at = human(population.total_events)
        applies = population.total_events >= TARGET_SCALE

        def target(latencies: Latencies) -> str:
            if not applies:
                return f"(p95 ≤ {READ_P95_TARGET_MS:g} ms applies at {human(TARGET_SCALE)})"
            return (
                f"p95 ≤ {READ_P95_TARGET_MS:g} ms ({verdict(latencies.percentile(95) <= READ_P95_TARGET_MS)})"
            )

        for _ in range(5):  # warm the connection pool and the server's caches
            await self.omni.timeline.page(population.random_other(), limit=PAGE_SIZE)
        randoms = await timed_reads(
            lambda: self.omni.timeline.page(population.random_other(), limit=PAGE_SIZE),
            self.args.reads,
            budget_s=60,
        )
        progress(f"read latest 50 @ {at}, random customers: {randoms.summary()}")
        per_other = (population.total_events - population.heavy_events) / len(population.others)
        self.table.add(
            f"read latest 50 @ {at}, random customers (~{per_other:,.0f} events each, "
            f"n={len(randoms.samples_ms)})",
            randoms.summary(),
            target(randoms),
        )

        first = await self.omni.timeline.page(population.heavy, limit=PAGE_SIZE)
        check_newest_first(first.events)
        heavy = await timed_reads(
            lambda: self.omni.timeline.page(population.heavy, limit=PAGE_SIZE),
            self.args.reads,
            budget_s=self.args.heavy_budget,
        )
        progress(f"read latest 50 @ {at}, heavy customer: {heavy.summary()}")
        self.table.add(
            f"read latest 50 @ {at}, heavy customer ({population.heavy_events:,} events, "
            f"n={len(heavy.samples_ms)})",
            heavy.summary(),
            target(heavy),
        )

        assert first.next_cursor is not None
        started = time.perf_counter()
        try:
            second = await self.omni.timeline.page(
                population.heavy, limit=PAGE_SIZE, cursor=first.next_cursor
            )
        except PyMongoError as error:
            page2 = f"failed after {time.perf_counter() - started:,.1f} s: {type(error).__name__}"
        else:
            page2 = f"{(time.perf_counter() - started) * 1000:,.1f} ms"
            check_newest_first([*first.events, *second.events])
        progress(f"read page 2 @ {at}, heavy customer: {page2}")
        self.table.add(f"read page 2 (cursor) @ {at}, heavy customer (n=1)", page2)

        await self.diagnose_heavy_read(population, at, first.next_cursor)

    async def diagnose_heavy_read(self, population: Population, at: str, cursor: str) -> None:
        """The page queries straight through the driver, and the server's plans for them."""
        latest = {"customer_id": ObjectId(population.heavy)}
        cursor_ts, _cursor_id = decode_cursor(cursor)
        next_page = {
            **latest,
            "ts": {"$lt": cursor_ts},
        }  # the main query TimelineService.page sends for page 2

        async def raw_find() -> None:
            _docs = [doc async for doc in self.events.find(latest, sort=NEWEST_FIRST, limit=PAGE_SIZE + 1)]

        raw = await timed_reads(raw_find, 20, budget_s=self.args.heavy_budget / 2)
        progress(f"raw find latest 51 @ {at}, heavy customer: {raw.summary()}")
        self.table.add(
            f"raw driver find latest 51 @ {at}, heavy customer (n={len(raw.samples_ms)})", raw.summary()
        )
        plan = await self.explain(latest, "executionStats")
        stats = plan.get("executionStats", {})
        self.table.add(
            f"explain() of that find @ {at}",
            f"{plan_stages(plan['queryPlanner']['winningPlan'])}; "
            f"keys examined {stats.get('totalKeysExamined', '?'):,}, "
            f"docs examined {stats.get('totalDocsExamined', '?'):,}",
        )
        # queryPlanner only: executing the page-2 query again would cost as much as the read above.
        plan = await self.explain(next_page, "queryPlanner")
        self.table.add(
            f"explain() of the page-2 find @ {at}", plan_stages(plan["queryPlanner"]["winningPlan"])
        )

    async def explain(self, query: dict[str, Any], verbosity: str) -> dict[str, Any]:
        find = {"find": "timeline", "filter": query, "sort": dict(NEWEST_FIRST), "limit": PAGE_SIZE + 1}
        plan: dict[str, Any] = await self.db.db.command({"explain": find, "verbosity": verbosity})
        return plan


def plan_stages(stage: dict[str, Any]) -> str:
    names = []
    node: dict[str, Any] | None = stage
    while node is not None:
        name = node["stage"]
        if "indexName" in node:
            name += f" {node['indexName']}"
        if "limitAmount" in node:
            name += f" (limit {node['limitAmount']})"
        names.append(name)
        node = node.get("inputStage")
    return " ← ".join(names)


def check_newest_first(events: list[Any]) -> None:
    keys = [(event.ts, event.id) for event in events]
    if keys != sorted(keys, reverse=True) or len(set(keys)) != len(keys):
        raise SystemExit("timeline pages are not newest first without repeats")


async def run_concurrently(total: int, concurrency: int, op: Callable[[int], Awaitable[None]]) -> float:
    """``op(0) .. op(total - 1)`` spread over ``concurrency`` tasks; returns operations per second."""
    indexes = iter(range(total))

    async def worker() -> None:
        for i in indexes:
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def timed_reads(read: Callable[[], Awaitable[Any]], count: int, *, budget_s: float) -> Latencies:
    """Up to ``count`` sequential reads, stopping early (after at least 5) once ``budget_s`` is spent."""
    latencies = Latencies()
    deadline = time.perf_counter() + budget_s
    while len(latencies.samples_ms) < count:
        started = time.perf_counter()
        await read()
        latencies.samples_ms.append((time.perf_counter() - started) * 1000)
        if len(latencies.samples_ms) >= 5 and time.perf_counter() > deadline:
            break
    return latencies


def rss(pid: int) -> str:
    """Resident set of a local process now and at its peak: psutil if installed, else /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        now_kib, peak_kib = int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError):
        now_kib = peak_kib = 0
    try:
        import psutil  # type: ignore[import-not-found, unused-ignore]

        now_kib = psutil.Process(pid).memory_info().rss // 1024
        source = "psutil"
    except ImportError:
        source = "/proc VmRSS"
    peak = f", peak {peak_kib / 1024:,.0f} MiB (VmHWM)" if peak_kib else ""
    return f"{now_kib / 1024:,.0f} MiB ({source}){peak}" if now_kib else "n/a"


async def run(args: argparse.Namespace, url: str, server: EmbeddedServer | None) -> None:
    db_name = f"huiliu_bench_timeline_{os.getpid()}"
    # socketTimeoutMS is 5 x timeout_ms: slow reads at 1 M must be measured, not cut off.
    db = Database.connect(url, db_name, timeout_ms=20_000)
    # Without retries a connection the server dropped while idle (SecantusDB: after 300 s) fails the
    # write; maxIdleTimeMS makes the driver retire it first.
    unretried: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(
        url, retryWrites=False, tz_aware=True, maxIdleTimeMS=60_000
    )
    table = Table()
    load_at_start = os.getloadavg()
    try:
        await db.prepare()
        build = await db.db.command("buildInfo")
        if server is not None:
            where = f"embedded SecantusDB {importlib.metadata.version('secantusdb')}, cache 256M, loopback"
        else:
            where = "external, --mongo-url"
        info = machine(
            f"pymongo: {pymongo.version}",
            f"MongoDB server: buildInfo version {build.get('version')} ({where})",
        )
        omni = Omnichannel.create(db, bus=None)
        bench = TimelineBench(db, omni, args, table, unretried[db_name]["timeline"])
        milestones = sorted({min(10_000, args.events), args.events})
        population = await bench.create_customers(args.customers, args.heavy_events / args.events)

        for milestone in milestones:
            await bench.bulk_load(population, milestone)
            progress(f"{population.total_events:,} events, heavy customer {population.heavy_events:,}")
            await bench.measure_reads(population)
            if milestone == milestones[0]:
                await bench.check_bulk_shape(population)
            # The appends grow the collection: measured after the reads of their milestone, before the next.
            await bench.measure_appends(population, human(milestone), args.appends)

        stored = await db["timeline"].estimated_document_count()
        table.add("events in the collection at the end", f"{stored:,}")
        table.add("RSS of the bench process after the load", rss(os.getpid()))
        if server is not None:
            table.add("RSS of the MongoDB server process after the load", rss(server.process.pid))
        else:
            status = await db.db.command("serverStatus")
            resident = status.get("mem", {}).get("resident")
            table.add("RSS of the MongoDB server (serverStatus mem.resident)", f"{resident} MiB")
            await db.client.drop_database(db_name)
    finally:
        await unretried.close()
        await db.close()
    load = " → ".join(
        "/".join(f"{value:.1f}" for value in loads) for loads in (load_at_start, os.getloadavg())
    )
    info.append(f"load average 1/5/15 min, start → end: {load} (other work on the machine skews figures)")
    print("\n".join(f"# {line}" for line in info))
    print(f"# customers: {args.customers:,}, concurrency {args.concurrency}")
    print()
    print(table.render())
    print()
    print("\n".join(f"- {note}" for note in table.notes))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the collection at the end")
    parser.add_argument("--quick", action="store_true", help="10 k events only: a smoke run")
    parser.add_argument("--mongo-url", help="use this MongoDB instead of starting the embedded one")
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--heavy-events", type=int, help="events of the heavy customer (default 10 %%)")
    parser.add_argument("--concurrency", type=int, default=16, help="tasks of the concurrent appends")
    parser.add_argument("--appends", type=int, default=2_000, help="events per append measurement")
    parser.add_argument("--reads", type=int, default=200, help="reads per latency measurement")
    parser.add_argument("--heavy-budget", type=float, default=45.0, help="seconds for the heavy reads")
    args = parser.parse_args()
    if args.quick:
        args.events = 10_000
        args.appends = min(args.appends, 500)
    if args.heavy_events is None:
        args.heavy_events = args.events // 10
    if not 0 < args.heavy_events < args.events or args.customers < 2:
        parser.error("need 0 < --heavy-events < --events and at least 2 customers")
    return args


def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="huiliu-bench-timeline-"))
    server: EmbeddedServer | None = None
    try:
        if args.mongo_url:
            url = args.mongo_url
        else:
            server = start_mongo(workdir / "mongo", free_port(), workdir / "mongo.log")
            url = server.url
            progress(f"embedded MongoDB on {url} (data in {workdir})")
        asyncio.run(run(args, url, server))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    progress("done")


if __name__ == "__main__":
    main()
