"""Telephony benchmark: concurrent IVR calls (prompt + RFC 2833 DTMF) through Kamailio into a pool of
pjsua2 workers, offered by sipp at a fixed arrival rate.

    .venv/bin/python bench/telephony.py                    # 600 calls at 20/s, each ~11 s (≈220 at once)
    .venv/bin/python bench/telephony.py --tap              # the same with the caller's audio read in Python
    .venv/bin/python bench/telephony.py --quick            # smoke run: 60 calls at 10/s, 6 workers

It starts embedded MongoDB and Redis and ``huiliu telephony`` (Kamailio + ``--workers`` pjsua2 worker
processes, each measuring its own call cap) on free loopback ports in a temporary directory, then runs sipp
(``tests/telephony/scenarios/ivr_dtmf.xml``): INVITE (PCMU + telephone-event), the demo line answers and
plays its greeting, sipp echoes the audio it receives back (``-rtp_echo``, so every call has audio both
ways), presses 1 after ``--hold`` seconds as RFC 2833 events, and the IVR writes ``ivr.step`` and hangs up.

Figures: failed calls and every final response that was not expected; peak concurrent calls (sipp's own
count); INVITE→200 OK through the SIP front (sipp response-time trace, per call); DTMF→BYE (the key's
first RTP packet to the IVR's hang-up: detection, the handler and the BYE); CPU (% of one core, over the
steady part of the run) and RSS/PSS per worker process, per 100 concurrent calls, and of Kamailio, the
pool process and the embedded MongoDB. Progress goes to stderr; stdout gets the machine and one table.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the node and sipp helpers are shared with tests/telephony

from core.embedded import EmbeddedServer, free_port, start_mongo, start_redis  # noqa: E402
from tests.telephony.node import Node, start_node, stop_node  # noqa: E402

CONCURRENT_TARGET = 200
ANSWER_P95_TARGET_MS = 50.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


@dataclass
class Usage:
    """CPU seconds and memory of a set of processes between two samples."""

    cpu_start: dict[int, float] = field(default_factory=dict)
    cpu_end: dict[int, float] = field(default_factory=dict)
    rss_kib: dict[int, int] = field(default_factory=dict)
    pss_kib: dict[int, int] = field(default_factory=dict)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
    except OSError:
        return ""


class Sampler:
    """Samples CPU at the start and end of the steady window and memory at the peak, per process group."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.usage = {name: Usage() for name in groups}

    def _each(self) -> list[tuple[str, int]]:
        return [(name, pid) for name, pids in self.groups.items() for pid in pids]

    def start(self) -> None:
        self.started = time.monotonic()
        for name, pid in self._each():
            self.usage[name].cpu_start[pid] = _safe(cpu_seconds, pid, 0.0)

    def peak(self) -> None:
        for name, pid in self._each():
            rss, pss = _safe(memory_kib, pid, (0, 0))
            self.usage[name].rss_kib[pid] = rss
            self.usage[name].pss_kib[pid] = pss

    def end(self) -> float:
        for name, pid in self._each():
            self.usage[name].cpu_end[pid] = _safe(cpu_seconds, pid, 0.0)
        self.seconds = time.monotonic() - self.started
        return self.seconds

    def cpu_percent(self, name: str) -> list[float]:
        usage = self.usage[name]
        return [
            100 * (usage.cpu_end[pid] - usage.cpu_start[pid]) / self.seconds
            for pid in usage.cpu_start
            if pid in usage.cpu_end and usage.cpu_end[pid] and usage.cpu_start[pid]
        ]


def _safe(fn: Callable[[int], T], pid: int, default: T) -> T:
    try:
        return fn(pid)
    except (OSError, ValueError, IndexError):
        return default


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def read_rtt(workdir: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) == 3:
                times.setdefault(parts[2], []).append(float(parts[1]))
    return times


def peak_concurrency(workdir: Path) -> int:
    peak = 0
    for path in workdir.glob("*_.csv"):
        lines = path.read_text().splitlines()
        if not lines:
            continue
        header = lines[0].split(";")
        column = header.index("CurrentCall")
        for line in lines[1:]:
            values = line.split(";")
            if len(values) > column and values[column].isdigit():
                peak = max(peak, int(values[column]))
    return peak


def run(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    root = Path(tempfile.mkdtemp(prefix="huiliu-bench-telephony-"))
    mongo = start_mongo(root / "mongo", free_port(), root / "mongo.log")
    redis = start_redis(root / "redis", free_port(), root / "redis.log")
    node: Node | None = None
    try:
        progress(f"starting {args.workers} telephony workers (this takes a while on 2 cores)…")
        begun = time.monotonic()
        node = _start(root, mongo, redis, args)
        startup = time.monotonic() - begun
        workers = node.worker_pids()
        caps = [doc["max_calls"] for doc in node.mongo().telephony_workers.find({"name": {"$exists": True}})]
        progress(
            f"pool ready in {startup:.0f} s: {len(workers)} workers, capacity {sum(caps[: len(workers)])}"
        )
        pool_pid = node.process.pid
        kamailio = [pid for pid in children_of(pool_pid) if "kamailio" in cmdline(pid)]
        kamailio += [child for pid in kamailio for child in children_of(pid)]
        sampler = Sampler(
            {
                "workers": list(workers.values()),
                "kamailio": kamailio,
                "pool": [pool_pid],
                "mongodb": [mongo.process.pid],
            }
        )
        progress(f"offering {args.calls} calls at {args.rate}/s, each holding {args.hold} s before its key…")
        sipp = node.start_sipp(
            "ivr_dtmf.xml",
            calls=args.calls,
            rate=args.rate,
            pause_ms=int(args.hold * 1000),
            digit="1",
            timeout=args.calls / args.rate + args.hold + 120,
            extra=("-rtp_echo", "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1"),
        )
        ramp = args.hold + 1.0
        window = max(args.calls / args.rate - ramp, 1.0)
        time.sleep(ramp)
        sampler.start()
        time.sleep(window / 2)
        sampler.peak()
        time.sleep(window / 2)
        seconds = sampler.end()
        run_result = sipp.finish(args.calls / args.rate + args.hold + 150)
        progress("waiting for every call's facts to be in MongoDB…")
        written, lag = facts_written(node, run_result.successful)
        rtt = read_rtt(node.workdir)
        peak = peak_concurrency(node.workdir)
        unexpected = sorted(set(run_result.responses))
        answer = rtt.get("answer", [])
        dtmf = rtt.get("dtmf", [])
        worker_cpu = sampler.cpu_percent("workers")
        worker_rss = [kib / 1024 for kib in sampler.usage["workers"].rss_kib.values() if kib]
        worker_pss = [kib / 1024 for kib in sampler.usage["workers"].pss_kib.values() if kib]
        per_100 = 100 * sum(worker_cpu) / max(peak, 1)
        kam_cpu = sum(sampler.cpu_percent("kamailio"))
        kam_pss = sum(sampler.usage["kamailio"].pss_kib.values()) / 1024
        rows = [
            (
                "workers × measured call cap",
                f"{len(workers)} × {min(caps)} = {sum(caps[: len(workers)])}",
                "",
            ),
            ("pool start-up", f"{startup:.0f} s", ""),
            (
                "calls offered / arrival rate",
                f"{args.calls} at {args.rate:g}/s" + (" (PCM tap on every call)" if args.tap else ""),
                "",
            ),
            ("peak concurrent calls", str(peak), f"≥ {CONCURRENT_TARGET}"),
            ("successful / failed calls", f"{run_result.successful} / {run_result.failed}", "0 failed"),
            ("unexpected SIP responses", ", ".join(map(str, unexpected)) or "none", "no 486"),
            (
                "calls ended in MongoDB / timeline events (of 4 per call)",
                f"{written['calls']} / {written['events']} of {4 * run_result.successful}, "
                f"complete {lag:.0f} s after the last call",
                "none lost",
            ),
            (
                "INVITE → 200 OK p50 / p95 / max",
                f"{percentile(answer, 0.5):.0f} / {percentile(answer, 0.95):.0f} / "
                f"{max(answer, default=float('nan')):.0f} ms",
                f"p95 ≤ {ANSWER_P95_TARGET_MS:.0f} ms",
            ),
            (
                "DTMF → BYE p50 / p95",
                f"{percentile(dtmf, 0.5):.0f} / {percentile(dtmf, 0.95):.0f} ms",
                "",
            ),
            (
                f"worker CPU, mean / max (% of a core, {seconds:.0f} s steady window)",
                f"{statistics.mean(worker_cpu):.1f} / {max(worker_cpu):.1f} %",
                "",
            ),
            ("all workers' CPU per 100 concurrent calls", f"{per_100:.0f} % of a core", ""),
            (
                "worker memory, mean RSS / PSS",
                f"{statistics.mean(worker_rss):.0f} / {statistics.mean(worker_pss):.0f} MB",
                "",
            ),
            (
                "all workers' PSS per 100 concurrent calls",
                f"{100 * sum(worker_pss) / max(peak, 1):.0f} MB",
                "",
            ),
            ("Kamailio (all processes) CPU / PSS", f"{kam_cpu:.1f} % / {kam_pss:.0f} MB", ""),
            ("pool process CPU", f"{sum(sampler.cpu_percent('pool')):.1f} %", ""),
            ("embedded MongoDB CPU", f"{sum(sampler.cpu_percent('mongodb')):.1f} %", ""),
            ("load average (1 min) at the end", f"{os.getloadavg()[0]:.1f}", ""),
        ]
        return rows
    finally:
        if node is not None:
            stop_node(node)
        for server in (redis, mongo):
            server.stop()
        if args.keep:
            progress(f"kept {root} (logs under telephony*/var/log, sipp traces beside them)")
        else:
            shutil.rmtree(root, ignore_errors=True)


def facts_written(node: Node, calls: int, within: float = 180.0) -> tuple[dict[str, int], float]:
    """How many calls are ended in ``calls`` and how many call events are on the timeline, once complete
    (or when ``within`` runs out); and how long after the end of the run that was."""
    db = node.mongo()
    begun = time.monotonic()
    kinds = ["call.started", "call.answered", "ivr.step", "call.ended"]
    while True:
        counts = {
            "calls": db.calls.count_documents({"status": "ended"}),
            "events": db.timeline.count_documents({"kind": {"$in": kinds}}),
        }
        if (counts["calls"] >= calls and counts["events"] >= 4 * calls) or time.monotonic() - begun > within:
            return counts, time.monotonic() - begun
        time.sleep(1.0)


def _start(root: Path, mongo: EmbeddedServer, redis: EmbeddedServer, args: argparse.Namespace) -> Node:
    return start_node(
        root,
        mongo,
        redis,
        pool_size=args.workers,
        telephony_router="telephony.demo:tapping_router" if args.tap else "telephony.demo:router",
        telephony_heartbeat_seconds="1",
        telephony_node_timeout_seconds="10",
        telephony_rtp_port_min="20000",
        telephony_rtp_port_max="39999",
        log_level="WARNING",
    )


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    meminfo = Path("/proc/meminfo").read_text().split()
    ram_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores, shared (load average at start {os.getloadavg()[0]:.1f})",
        f"RAM: {ram_gib:.1f} GiB",
        f"OS: {platform.platform()}",
        f"Python: {platform.python_version()}, pjsua2-python {importlib.metadata.version('pjsua2-python')}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=70, help="pjsua2 worker processes (default 70)")
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0, help="new calls per second")
    parser.add_argument("--hold", type=float, default=10.5, help="seconds into the call before the key")
    parser.add_argument("--tap", action="store_true", help="read every caller's audio in Python")
    parser.add_argument("--keep", action="store_true", help="keep the logs and traces of the run")
    parser.add_argument("--quick", action="store_true", help="60 calls at 10/s, ~2 s each, 6 workers")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.calls, args.rate, args.hold = 6, 60, 10.0, 1.0
    header = machine()
    rows = run(args)
    print("\n".join(header))
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    print(f"{'what':<{width}}  {'measured':<{value_width}}  target")
    for what, value, target in rows:
        print(f"{what:<{width}}  {value:<{value_width}}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
