"""The embedded MongoDB (SecantusDB) under many clients: what a telephony pool of many worker processes does
to it. ``--clients`` processes (70, like the benchmark pool) each send commands of the per-call mix
(timeline inserts of 1-3 events with the timeline's indexes, ``find_one`` by ``_id`` and by an indexed
field, findAndModify by ``_id``) at an aggregate ``--rate`` per second, open loop (on schedule, whether
or not the last answer came), for ``--seconds``. Printed: commands answered per second, latency p50 / p95
/ max, the server's CPU. ``--concurrency`` is the server's dispatch gate (``core.mongod``; 0: none).

    .venv/bin/python bench/embedded_db.py --rate 400                  # the gate as shipped (2)
    .venv/bin/python bench/embedded_db.py --rate 400 --concurrency 0  # no gate

基准测试：模拟 70 个话务进程同时访问内置 MongoDB，测量吞吐、时延和服务器 CPU。
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._machine import machine
from core.embedded import free_port, start_mongo


def client(url: str, rate: float, seconds: float, seed: int, out: Any) -> None:
    from bson import ObjectId
    from pymongo import MongoClient, ReturnDocument

    db = MongoClient(url, maxPoolSize=4)["bench"]
    rng = random.Random(seed)
    latencies: list[float] = []
    lock = threading.Lock()
    ids: list[ObjectId] = []

    def one() -> None:
        roll = rng.random()
        begun = time.perf_counter()
        if roll < 0.4:
            docs = [
                {
                    "customer_id": ObjectId(),
                    "conversation_id": ObjectId(),
                    "ts": dt.datetime.now(dt.UTC),
                    "kind": "ivr.step",
                    "idempotency_key": f"{seed}:{rng.random()}",
                    "body": {"node": "main_menu", "result": "chose 9"},
                }
                for _ in range(rng.randint(1, 3))
            ]
            db.timeline.insert_many(docs, ordered=False)
        elif roll < 0.55:
            db.calls.find_one({"_id": rng.choice(ids) if ids else "none"})
        elif roll < 0.7:
            db.timeline.find_one({"idempotency_key": f"{seed}:missing"})
        else:
            oid = rng.choice(ids) if ids else ObjectId()
            db.calls.find_one_and_update(
                {"_id": oid, "status": "active"},
                {"$set": {"seen": time.time()}},
                return_document=ReturnDocument.AFTER,
            )
        with lock:
            latencies.append(1000 * (time.perf_counter() - begun))

    for _ in range(20):
        ids.append(db.calls.insert_one({"status": "active", "worker": seed}).inserted_id)
    threads: list[threading.Thread] = []
    start = time.monotonic() + 1.0
    n = 0
    while True:
        at = start + n / rate
        if at > start + seconds:
            break
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=one, daemon=True)
        thread.start()
        threads.append(thread)
        n += 1
    for thread in threads:
        thread.join(60)
    out.put(latencies)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=70)
    parser.add_argument("--rate", type=float, default=400.0, help="commands per second, all clients together")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="the server's gate (default: as shipped)"
    )
    args = parser.parse_args()
    if args.concurrency is not None:
        os.environ["HUILIU_MONGOD_CONCURRENCY"] = str(args.concurrency)
    root = Path(tempfile.mkdtemp(prefix="huiliu-bench-db-"))
    mongo = start_mongo(root / "mongo", free_port(), root / "mongo.log")
    try:
        from pymongo import ASCENDING, DESCENDING, IndexModel, MongoClient

        MongoClient(mongo.url)["bench"].timeline.create_indexes(
            [
                IndexModel([("idempotency_key", ASCENDING)], unique=True),
                IndexModel([("customer_id", ASCENDING), ("ts", DESCENDING), ("_id", DESCENDING)]),
                IndexModel([("conversation_id", ASCENDING), ("ts", DESCENDING), ("_id", DESCENDING)]),
                IndexModel([("ts", ASCENDING)]),
            ]
        )
        results: Any = multiprocessing.Queue()
        processes = [
            multiprocessing.Process(
                target=client, args=(mongo.url, args.rate / args.clients, args.seconds, seed, results)
            )
            for seed in range(args.clients)
        ]
        for process in processes:
            process.start()
        time.sleep(2.0)  # clients connected and seeded
        cpu_before, wall_before = cpu_seconds(mongo.process.pid), time.monotonic()
        latencies: list[float] = []
        for _ in processes:
            latencies += results.get(timeout=args.seconds + 120)
        cpu = cpu_seconds(mongo.process.pid) - cpu_before
        wall = time.monotonic() - wall_before
        for process in processes:
            process.join(10)
    finally:
        mongo.stop()
    latencies.sort()

    def pct(fraction: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] if latencies else float("nan")
        )

    gate = os.environ.get("HUILIU_MONGOD_CONCURRENCY", "as shipped")
    for line in machine():
        print(line)
    print(f"clients {args.clients}, offered {args.rate:g} commands/s for {args.seconds:g} s, gate {gate}")
    print(f"answered {len(latencies)} ({len(latencies) / args.seconds:.0f}/s offered window)")
    worst = latencies[-1] if latencies else float("nan")
    print(f"latency p50 / p95 / max: {pct(0.5):.1f} / {pct(0.95):.1f} / {worst:.0f} ms")
    print(f"server CPU: {100 * cpu / wall:.0f} % of a core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
