"""A real telephony node for tests and benchmarks: ``huiliu telephony`` (Kamailio + a pool of pjsua2
workers) on free loopback ports against embedded MongoDB and Redis, callers played by sipp (Debian
``sip-tester``) and by a pjsua2 phone in its own process (``peer.py``)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from core.embedded import EmbeddedServer

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
PEER = Path(__file__).resolve().parent / "peer.py"
SIPP_PCAPS = Path("/usr/share/sip-tester")
POOL_SIZE = 2
START_MARK = "=== starting: "  # heads each start's output in telephony.out


def sip_tools_missing() -> str | None:
    missing = [
        tool for tool in ("sipp", "kamailio", "kamcmd", "espeak-ng", "sox") if shutil.which(tool) is None
    ]
    return (
        f"needs {', '.join(missing)} (apt-get install sip-tester kamailio espeak-ng sox)" if missing else None
    )


def free_udp_tcp_port(block: int = 1, *, besides: tuple[int, ...] = ()) -> int:
    """The first of ``block`` consecutive ports free for both UDP and TCP on loopback; below the RTP ranges
    (20000+) and the kernel's ephemeral ports (32768+), so no RTP or client socket takes one meanwhile.
    ``besides``: ports already chosen (not bound yet) that the block must not include."""
    for _ in range(200):
        base = random.randrange(10000, 20000 - block)
        if any(base <= port < base + block for port in besides):
            continue
        if all(_port_free(base + offset) for offset in range(block)):
            return base
    raise RuntimeError("no free port block")


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@dataclass
class SippRun:
    returncode: int
    successful: int
    failed: int
    output: str
    errors: str

    @property
    def responses(self) -> list[int]:
        """Final status codes of the SIP responses sipp did not expect (from its error log)."""
        return [int(code) for code in re.findall(r"SIP/2\.0 (\d{3}) ", self.errors)]


@dataclass
class Node:
    sip_port: int
    worker_ports: list[int]
    data_dir: Path
    db_name: str
    mongo_url: str
    process: subprocess.Popen[str]
    workdir: Path
    output: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # what it was started with (restart_node)
    command: list[str] = field(default_factory=list)
    new_session: bool = False

    @property
    def front(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def mongo(self) -> Any:
        client: MongoClient[dict[str, Any]] = MongoClient(self.mongo_url, tz_aware=True)
        return client[self.db_name]

    def sipp(
        self,
        scenario: str,
        *,
        target: str | None = None,
        service: str = "1000",
        caller: str = "13800138000",
        calls: int = 1,
        rate: float = 10.0,
        pause_ms: int = 0,
        digit: str = "1",
        timeout: float = 60.0,
        extra: tuple[str, ...] = (),
    ) -> SippRun:
        """Run sipp with ``scenario`` against the SIP front (or ``target``) to the end."""
        return self.start_sipp(
            scenario,
            target=target,
            service=service,
            caller=caller,
            calls=calls,
            rate=rate,
            pause_ms=pause_ms,
            digit=digit,
            timeout=timeout,
            extra=extra,
        ).finish(timeout + 30)

    def start_sipp(
        self,
        scenario: str,
        *,
        target: str | None = None,
        service: str = "1000",
        caller: str = "13800138000",
        calls: int = 1,
        rate: float = 10.0,
        pause_ms: int = 0,
        digit: str = "1",
        timeout: float = 60.0,
        extra: tuple[str, ...] = (),
    ) -> Sipp:
        """Start sipp with ``scenario`` against the SIP front (or ``target``) in the background."""
        run_id = uuid.uuid4().hex[:8]
        pcap = SIPP_PCAPS / f"dtmf_2833_{ {'*': 'star', '#': 'pound'}.get(digit, digit) }.pcap"
        text = (SCENARIOS / scenario).read_text().replace("DTMF_PCAP", str(pcap))
        scenario_file = self.workdir / f"{run_id}-{scenario}"
        scenario_file.write_text(text)
        error_file = self.workdir / f"{run_id}-errors.log"
        # sipp's RTP and RTCP for audio and video: four ports from an even one, inside the block found free
        # (rounding down could take the port below the block: once the node's own SIP port)
        media_port = free_udp_tcp_port(5)
        media_port += media_port % 2
        args = [
            "sipp",
            "-sf", str(scenario_file),
            "-s", service,
            "-key", "caller", caller,
            "-i", "127.0.0.1",
            "-p", str(free_udp_tcp_port()),
            "-mi", "127.0.0.1",
            "-mp", str(media_port),
            "-m", str(calls),
            "-l", str(calls),
            "-r", str(rate),
            "-d", str(pause_ms),
            "-timeout", f"{int(timeout)}s",
            "-timeout_error",
            "-recv_timeout", "60000",
            "-trace_err", "-error_file", str(error_file),
            "-nostdin",
            *extra,
            target or self.front,
        ]  # fmt: skip
        process = subprocess.Popen(
            args, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        return Sipp(process, error_file)

    def peer(self, *args: str, seconds: float = 15.0) -> dict[str, Any]:
        """Run the pjsua2 phone (``peer.py``) to completion; its JSON result."""
        workdir = self.workdir / f"peer-{uuid.uuid4().hex[:8]}"
        workdir.mkdir()
        result = subprocess.run(
            [sys.executable, str(PEER), "--workdir", str(workdir), "--seconds", str(seconds), *args],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        assert lines, f"peer failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        data: dict[str, Any] = json.loads(lines[-1])
        return data

    def call_doc(self, call_id: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = self.mongo().calls.find_one({"_id": call_id})
        return doc

    def events(self, call_id: str) -> list[dict[str, Any]]:
        return list(self.mongo().timeline.find({"body.call_id": call_id}).sort([("ts", 1), ("_id", 1)]))

    def wait_for(self, predicate: Any, within: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {within} s waiting for {what}")

    def calls_from(self, caller: str) -> list[dict[str, Any]]:
        return list(self.mongo().calls.find({"caller": caller}).sort("started_at", 1))

    def worker_pids(self) -> dict[str, int]:
        """Live worker name → pid, from the heartbeats."""
        live = self.mongo().telephony_workers.find({"expires_at": {"$gt": _now()}})
        return {doc["name"]: int(doc["pid"]) for doc in live}

    def log(self, name: str) -> str:
        path = self.data_dir / "log" / name
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Sipp:
    """A sipp run going on in the background."""

    process: subprocess.Popen[str]
    error_file: Path

    def finish(self, within: float) -> SippRun:
        try:
            output, _ = self.process.communicate(timeout=within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        counts = {
            name: int(match.group(1))
            if (match := re.search(rf"{name} call\s+\|\s+\d+\s+\|\s+(\d+)", output))
            else -1
            for name in ("Successful", "Failed")
        }
        errors = self.error_file.read_text(errors="replace") if self.error_file.exists() else ""
        return SippRun(self.process.returncode, counts["Successful"], counts["Failed"], output, errors)


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def start_node(
    workdir: Path,
    mongo: EmbeddedServer,
    redis: EmbeddedServer,
    *,
    pool_size: int = POOL_SIZE,
    db_name: str | None = None,
    prefix: tuple[str, ...] = (),
    new_session: bool = False,
    **settings: str,
) -> Node:
    """``huiliu telephony`` on free ports; ``settings`` become ``HUILIU_*`` variables. ``prefix`` runs it
    through another command (``unshare …``); ``new_session`` gives it a process group of its own (its
    workers and Kamailio with it), so a test can kill the whole node at once."""
    sip_port = free_udp_tcp_port()
    worker_base = free_udp_tcp_port(pool_size * 2, besides=(sip_port,))
    rtp_min = random.randrange(20000, 29000, 2)
    db_name = db_name or f"t_{uuid.uuid4().hex[:12]}"
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "var"
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("HUILIU_")},
        "PYTHONPATH": str(REPO),
        "HUILIU_MONGO_URL": mongo.url,
        "HUILIU_REDIS_URL": redis.url,
        "HUILIU_DB_NAME": db_name,
        "HUILIU_DATA_DIR": str(data_dir),
        "HUILIU_SECRET_KEY": "test-secret-key-not-for-production",
        "HUILIU_TELEPHONY_SIP_PORT": str(sip_port),
        "HUILIU_TELEPHONY_WORKER_BASE_PORT": str(worker_base),
        "HUILIU_TELEPHONY_POOL_SIZE": str(pool_size),
        "HUILIU_TELEPHONY_POOL_SPARE_CALLS": "0",  # a fixed pool: tests count its workers
        "HUILIU_TELEPHONY_RTP_PORT_MIN": str(rtp_min),
        "HUILIU_TELEPHONY_RTP_PORT_MAX": str(rtp_min + 999),
        "HUILIU_TELEPHONY_HEARTBEAT_SECONDS": "0.5",
        "HUILIU_TELEPHONY_NODE_TIMEOUT_SECONDS": "2",
        "HUILIU_TELEPHONY_DRAIN_SECONDS": "3",
        "HUILIU_TELEPHONY_ROUTER": "tests.telephony.routers:router",
        **{f"HUILIU_{name.upper()}": value for name, value in settings.items()},
    }
    command = [*prefix, sys.executable, "-m", "core.cli", "telephony"]
    node = Node(
        sip_port,
        [worker_base + index for index in range(pool_size)],
        data_dir,
        db_name,
        mongo.url,
        _launch(workdir, env, command, new_session),
        workdir,
        env=env,
        command=command,
        new_session=new_session,
    )
    _wait_started(node)
    return node


def restart_node(node: Node) -> None:
    """Start ``huiliu telephony`` again as it was first started (same ports, database and data directory),
    after it stopped or was killed; waits until it takes calls."""
    assert node.process.poll() is not None, "the node is still running"
    node.process = _launch(node.workdir, node.env, node.command, node.new_session)
    _wait_started(node)


def _launch(
    workdir: Path, env: dict[str, str], command: list[str], new_session: bool
) -> subprocess.Popen[str]:
    output = workdir / "telephony.out"  # a file, not a pipe nobody reads after start-up
    with output.open("a") as sink:
        sink.write(f"{START_MARK}{' '.join(command)}\n")
        sink.flush()
        return subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=new_session,
        )


def _wait_started(node: Node) -> None:
    output = node.workdir / "telephony.out"
    process = node.process
    deadline = time.monotonic() + 90 + 3 * len(node.worker_ports)
    while time.monotonic() < deadline and process.poll() is None:
        text = output.read_text(errors="replace")
        # only what this start printed (a restart appends to the same file)
        node.output = text[text.rfind(START_MARK) :].splitlines(keepends=True)
        if any(line.startswith("telephony: ") for line in node.output):
            return
        time.sleep(0.2)
    process.kill()
    raise AssertionError("huiliu telephony did not start:\n" + output.read_text(errors="replace"))


def stop_node(node: Node) -> None:
    if node.process.poll() is None:
        node.process.send_signal(signal.SIGTERM)
        try:
            node.process.wait(30)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()
    client: MongoClient[dict[str, Any]] = MongoClient(node.mongo_url)
    client.drop_database(node.db_name)
    client.close()


async def open_main_line(mongo_url: str, db_name: str) -> None:
    """The shipped main flow, as shipped, active — and open around the clock for the next hour (an
    office-hours override, as a supervisor sets one), so a test or a benchmark walks the same menu at any
    hour. Before the node starts: its workers load both when they start."""
    import datetime as dt

    from core.db import Database, utcnow
    from ivr_flows.service import FlowService
    from ivr_flows.store import FlowStore

    db = Database.connect(mongo_url, db_name, 5000)
    try:
        flows = FlowService(FlowStore(db), None)
        await flows.install_shipped("main")
        await flows.set_hours_override("main", "open", utcnow() + dt.timedelta(hours=1), "tests", "test")
    finally:
        await db.close()
