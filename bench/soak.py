"""The mixed soak: the whole platform (``huiliu run``: embedded MongoDB and Redis, web, Celery worker and
beat, Kamailio and a pool of pjsua2 workers) under calls, chats, tickets and agents at once, for a bounded
time, watching for failures, latency and memory growth.

    .venv/bin/python bench/soak.py                 # 10 minutes
    .venv/bin/python bench/soak.py --minutes 2     # a short run

Load, all over loopback through the same doors customers and agents use:

* calls: sipp (``bench/soak_call.xml``) at ``--call-rate`` calls/s into an IVR flow that asks for a key,
  gets ``3`` as RFC 2833 and files a complaint ticket (an SLA timer each) before hanging up; every call from
  its own number, so every call is its own customer and ticket;
* chats: a web-chat visitor every ``--chat-interval`` s asks the bot a knowledge-base question; every fourth
  asks for a person and is handed to an agent;
* agents: two desktops (Socket.IO) accept every offer, end the contact after 2 s and wrap it up;
* tickets: an agent opens a ticket by hand every ``--ticket-interval`` s (REST).

Reported: failures per step (target 0); p50/p95 latency per step (ticket create, bot answer, routing
decision → offer on the agent's socket, call setup from sipp); RSS of every platform process after the
warm-up and at the end (growth = leak suspicion); CPU seconds per call of the telephony processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import socketio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._machine import process_tree  # noqa: E402
from core.embedded import free_port  # noqa: E402
from core.traffic import WebChatVisitor  # noqa: E402

SCENARIO = Path(__file__).resolve().parent / "soak_call.xml"
DTMF_3 = Path("/usr/share/sip-tester/dtmf_2833_3.pcap")
FLOW = """
description: soak line
language: zh
start: menu
nodes:
  menu:
    type: menu
    prompt: {say: {zh: "投诉请按3。", en: "For complaints press 3."}}
    choices: {3: file}
    timeout: 5
    retries: 1
    on_failure: bye
  file:
    type: ticket
    intent: complaint
    summary: "soak call"
    priority: high
    into: ticket_number
    next: bye
    on_error: bye
  bye:
    type: hangup
"""
QUESTIONS = ("退货需要什么条件？", "How long does delivery take?", "发票怎么开？", "Can I exchange an item?")


@dataclass
class Steps:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def ok(self, step: str, seconds: float) -> None:
        self.latencies[step].append(seconds * 1000)

    def fail(self, step: str, why: str) -> None:
        self.failures[step].append(why[:200])


@dataclass
class Platform:
    workdir: Path
    web_port: int
    sip_port: int
    process: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"


def start_platform(workdir: Path, pool: int) -> Platform:
    web_port, sip_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUILIU_")},
        "HUILIU_DATA_DIR": str(workdir / "var"),
        "HUILIU_WEB_PORT": str(web_port),
        "HUILIU_EMBEDDED_MONGO_PORT": str(free_port()),
        "HUILIU_EMBEDDED_REDIS_PORT": str(free_port()),
        "HUILIU_TELEPHONY_SIP_PORT": str(sip_port),
        "HUILIU_TELEPHONY_WORKER_BASE_PORT": str(free_port()),
        "HUILIU_TELEPHONY_POOL_SIZE": str(pool),
        "HUILIU_IVR_LINES": "7000=soak,*=main",
        "HUILIU_IVR_FLOW_POLL_SECONDS": "2",
        "HUILIU_SECRET_KEY": "soak-secret-not-for-production",
        "HUILIU_LOG_LEVEL": "WARNING",
    }
    with (workdir / "run.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "run"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return Platform(workdir, web_port, sip_port, process)


def processes(platform: Platform) -> dict[int, str]:
    """pid → short name of every live process of the platform (its tree)."""
    return {pid: _name(command) for pid, command in process_tree(platform.process.pid).items()}


def _name(cmdline: str) -> str:
    for pattern, name in (
        (r"core\.mongod", "mongodb"),
        (r"redis-server", "redis"),
        (r"kamailio", "kamailio"),
        (r"telephony\.worker|telephony-w|--name w\d", "telephony worker"),
        (r"core\.cli telephony|huiliu telephony", "telephony pool"),
        (r"celery.*beat|core\.cli beat", "celery beat"),
        (r"celery|core\.cli worker", "celery worker"),
        (r"core\.cli web", "web"),
        (r"core\.cli run", "supervisor"),
    ):
        if re.search(pattern, cmdline):
            return name
    return cmdline.split(" ")[0].rsplit("/", 1)[-1] or "?"


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def memory(platform: Platform) -> dict[str, int]:
    """RSS in MiB by process kind (summed over workers)."""
    totals: dict[str, int] = defaultdict(int)
    for pid, name in processes(platform).items():
        totals[name] += rss_kib(pid)
    return {name: kib // 1024 for name, kib in sorted(totals.items())}


async def until_healthy(http: aiohttp.ClientSession, base: str, within: float = 180) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(base + "/healthz") as reply:
                if reply.status == 200:
                    return
        await asyncio.sleep(0.5)
    raise RuntimeError("the platform did not become healthy; see run.log")


async def api(http: aiohttp.ClientSession, method: str, url: str, token: str | None = None, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers, **kw) as reply:
        body = await reply.json(content_type=None)
        if reply.status >= 400:
            raise RuntimeError(f"{method} {url} → {reply.status}: {body}")
        return body


async def login(http: aiohttp.ClientSession, base: str, user: str) -> str:
    body = await api(
        http, "POST", base + "/api/auth/login", json={"username": user, "password": f"{user}-demo"}
    )
    return str(body["token"])


async def agent_desk(
    base: str, http: aiohttp.ClientSession, token: str, steps: Steps, stop: asyncio.Event
) -> None:
    client = socketio.AsyncClient(reconnection=True)
    pending: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_offer(pop: dict[str, Any]) -> None:
        steps.ok("offer on the agent's socket", time.time() - float(pop["decided_at"]))
        pending.put_nowait(pop)

    client.on("offer", on_offer, namespace="/agent")
    await client.connect(base, namespaces=["/agent"], auth={"token": token}, transports=["websocket"])
    await client.call("state", {"state": "available"}, namespace="/agent", timeout=10)
    try:
        while not stop.is_set():
            try:
                pop = await asyncio.wait_for(pending.get(), 1.0)
            except TimeoutError:
                continue
            contact = pop["contact"]["id"]
            accepted = await client.call("accept", {"contact_id": contact}, namespace="/agent", timeout=10)
            if "ok" not in accepted:
                steps.fail("agent accepts", str(accepted))
                continue
            await asyncio.sleep(2.0)
            try:
                await api(http, "POST", f"{base}/api/desktop/contacts/{contact}/end", token)
                await api(
                    http,
                    "POST",
                    f"{base}/api/desktop/contacts/{contact}/wrap-up",
                    token,
                    json={"codes": ["resolved"]},
                )
            except RuntimeError as exc:
                steps.fail("agent ends and wraps up", str(exc))
            with contextlib.suppress(Exception):
                await client.call("state", {"state": "available"}, namespace="/agent", timeout=10)
    finally:
        await client.disconnect()


async def chats(
    base: str, http: aiohttp.ClientSession, interval: float, steps: Steps, stop: asyncio.Event
) -> None:
    count = 0
    running: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        count += 1
        task = asyncio.ensure_future(one_chat(base, count, steps))
        running.add(task)
        task.add_done_callback(running.discard)
        await asyncio.sleep(interval)
    await asyncio.gather(*running, return_exceptions=True)


async def one_chat(base: str, count: int, steps: Steps) -> None:
    question = QUESTIONS[count % len(QUESTIONS)]
    try:
        async with WebChatVisitor(base, "en" if question.isascii() else "zh") as visitor:
            for text in [question] + (["转人工"] if count % 4 == 0 else []):
                sent = time.monotonic()
                if await visitor.say(text) is None:
                    steps.fail("bot answers a chat", f"no answer to {text!r} within 15 s")
                else:
                    steps.ok("bot answers a chat", time.monotonic() - sent)
    except Exception as exc:
        steps.fail("chat", repr(exc))


async def tickets(
    base: str, http: aiohttp.ClientSession, token: str, interval: float, steps: Steps, stop: asyncio.Event
) -> None:
    count = 0
    while not stop.is_set():
        count += 1
        started = time.monotonic()
        try:
            customer = await api(
                http,
                "POST",
                base + "/api/customers/resolve",
                token,
                json={
                    "identities": [
                        {"kind": "email", "value": f"soak{count}-{uuid.uuid4().hex[:6]}@example.com"}
                    ]
                },
            )
            await api(
                http,
                "POST",
                base + "/api/tickets",
                token,
                json={
                    "customer_id": customer["customer"]["id"],
                    "category": "complaint",
                    "subject": f"soak {count}",
                },
            )
            steps.ok("customer + ticket by hand", time.monotonic() - started)
        except RuntimeError as exc:
            steps.fail("customer + ticket by hand", str(exc))
        await asyncio.sleep(interval)


def run_sipp(
    platform: Platform, workdir: Path, rate: float, seconds: float, hold_ms: int
) -> subprocess.Popen[str]:
    calls = max(1, int(rate * seconds))
    callers = workdir / "callers.csv"
    callers.write_text("SEQUENTIAL\n" + "".join(f"1391{n:07d}\n" for n in range(calls)))
    scenario = workdir / "soak_call.xml"
    scenario.write_text(SCENARIO.read_text().replace("DTMF_PCAP", str(DTMF_3)))
    args = [
        "sipp", "-sf", str(scenario), "-inf", str(callers), "-s", "7000",
        "-i", "127.0.0.1", "-p", str(free_port()),
        "-mi", "127.0.0.1", "-mp", str(30000 + (os.getpid() % 1000) * 4),
        "-r", f"{rate:g}", "-m", str(calls), "-d", str(hold_ms), "-recv_timeout", "30000",
        "-trace_stat", "-stf", str(workdir / "sipp-stats.csv"),
        "-trace_err", "-error_file", str(workdir / "sipp-errors.log"),
        "-nostdin", f"127.0.0.1:{platform.sip_port}",
    ]  # fmt: skip
    return subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def sipp_totals(workdir: Path) -> dict[str, int]:
    lines = (workdir / "sipp-stats.csv").read_text().splitlines()
    header, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(header, last, strict=False))
    return {
        "calls": int(row.get("TotalCallCreated", 0) or 0),
        "successful": int(row.get("SuccessfulCall(C)", 0) or 0),
        "failed": int(row.get("FailedCall(C)", 0) or 0),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    platform = start_platform(workdir, args.pool)
    steps = Steps()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await until_healthy(http, platform.base)
            admin = await login(http, platform.base, "admin")
            agents = {name: await login(http, platform.base, name) for name in ("agent1", "agent2")}
            await api(
                http,
                "POST",
                platform.base + "/api/flows/soak/versions",
                admin,
                json={"yaml": FLOW, "activate": True},
            )
            queues = {
                queue["id"]: queue
                for queue in await api(http, "GET", platform.base + "/api/desktop/queues", admin)
            }
            skills = {skill: 3 for queue in queues.values() for skill in queue.get("skills", {})} or {
                "general": 3
            }
            for token in agents.values():
                me = await api(http, "GET", platform.base + "/api/desktop/me", token)
                await api(
                    http,
                    "PUT",
                    f"{platform.base}/api/desktop/agents/{me['user_id']}/skills",
                    admin,
                    json={"skills": skills, "max_chats": 5},
                )
            await asyncio.sleep(3)  # the flow reaches the workers; the first prompts render
            print("soak: warming up (30 s)", file=sys.stderr, flush=True)
            await asyncio.sleep(30)
            before = memory(platform)
            telephony = [
                pid
                for pid, name in processes(platform).items()
                if name.startswith("telephony") or name == "kamailio"
            ]
            cpu_before = sum(cpu_seconds(pid) for pid in telephony)
            stop = asyncio.Event()
            seconds = args.minutes * 60
            sipp = run_sipp(platform, workdir, args.call_rate, seconds, args.hold_ms)
            print(f"soak: {args.minutes:g} min of load", file=sys.stderr, flush=True)
            load = [
                asyncio.ensure_future(agent_desk(platform.base, http, token, steps, stop))
                for token in agents.values()
            ]
            load.append(asyncio.ensure_future(chats(platform.base, http, args.chat_interval, steps, stop)))
            load.append(
                asyncio.ensure_future(
                    tickets(platform.base, http, agents["agent1"], args.ticket_interval, steps, stop)
                )
            )
            samples = []
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                await asyncio.sleep(min(30.0, seconds / 4))
                samples.append((round(time.monotonic() - started), sum(memory(platform).values())))
                print(
                    f"soak: {samples[-1][0]} s, platform RSS {samples[-1][1]} MiB",
                    file=sys.stderr,
                    flush=True,
                )
            stop.set()
            await asyncio.gather(*load, return_exceptions=True)
            await asyncio.to_thread(sipp.wait, 120)
            cpu_after = sum(cpu_seconds(pid) for pid in telephony)
            after = memory(platform)
            totals = sipp_totals(workdir)
            ticket_page = await api(
                http, "GET", platform.base + "/api/tickets?limit=1&intent=complaint", admin
            )
        return {
            "minutes": args.minutes,
            "calls": totals,
            "steps": {
                step: {
                    "count": len(steps.latencies.get(step, [])),
                    "failures": len(steps.failures.get(step, [])),
                    "p50_ms": round(percentile(steps.latencies.get(step, []), 0.5), 1),
                    "p95_ms": round(percentile(steps.latencies.get(step, []), 0.95), 1),
                }
                for step in sorted(set(steps.latencies) | set(steps.failures))
            },
            "failure_examples": {step: reasons[:3] for step, reasons in steps.failures.items()},
            "rss_mib_after_warmup": before,
            "rss_mib_at_end": after,
            "rss_samples": samples,
            "telephony_cpu_seconds_per_call": round((cpu_after - cpu_before) / max(1, totals["calls"]), 3),
            "complaint_tickets_seen": bool(ticket_page.get("tickets")),
        }
    finally:
        platform.process.send_signal(signal.SIGINT)
        try:
            platform.process.wait(60)
        except subprocess.TimeoutExpired:
            platform.process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--call-rate", type=float, default=2.0, help="new calls per second")
    parser.add_argument(
        "--hold-ms", type=int, default=3000, help="how long a caller listens before pressing 3"
    )
    parser.add_argument("--pool", type=int, default=4, help="pjsua2 telephony workers")
    parser.add_argument("--chat-interval", type=float, default=2.0)
    parser.add_argument("--ticket-interval", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        print("bench/soak.py needs sipp (apt-get install sip-tester)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="huiliu-soak-"))
    try:
        report = asyncio.run(soak(args, workdir))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    calls = report["calls"]
    failures = calls["failed"] + sum(step["failures"] for step in report["steps"].values())
    print(f"\nsoak: {failures} failures; {calls['successful']}/{calls['calls']} calls; see the figures above")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
