"""Telephony benchmark: concurrent calls to the shipped bilingual IVR (``ivr_flows/flows/main.yaml``, what
answers calls by default) through Kamailio into a pool of pjsua2 workers, offered by sipp at a fixed
arrival rate.

    .venv/bin/python bench/telephony.py             # 600 calls at 20/s, ~11.5 s each, 70 workers
    .venv/bin/python bench/telephony.py --tap       # the same with every caller's audio read in Python
    .venv/bin/python bench/telephony.py --quick     # smoke run: 40 calls at 2/s, 8 workers
    .venv/bin/python bench/telephony.py --demo-line # the one-key demo line (telephony.demo) instead

It starts embedded MongoDB and Redis and ``huiliu telephony`` (Kamailio + ``--workers`` pjsua2 worker
processes, each measuring its own call cap) on free loopback ports in a temporary directory, then runs sipp
(``tests/telephony/scenarios/ivr_main.xml``): INVITE (PCMU + telephone-event); the Mandarin greeting; 9
(RFC 2833) during the Mandarin menu → the English menu; 0 → queue ``general``, where no agent is staffed →
voicemail prompt, beep, recording; the caller hangs up 2 s into the message. sipp echoes the audio it
receives (``-rtp_echo``), so every call has audio both ways. The path must be office hours in Asia/Shanghai
(08:00-22:00 weekdays, 09:00-18:00 weekends); the table says how many calls followed it.

Figures: failed calls and every final response that was not expected; 486s that Kamailio absorbed by
failing over to another worker; peak concurrent calls (sipp's count); INVITE→200 OK through the SIP front
(sipp response-time trace, per call); DTMF → next prompt, from packets on the wire (a raw socket on ``lo``,
kernel timestamps): the key's first RFC 2833 packet to the first RTP packet of the prompt that follows, found
by the loudness envelope of its first 500 ms (so neither the prompt that was playing nor a pause between
words passes for it); the calls whose timeline holds the whole path and how long the queue step took (its
MongoDB work); a ``find_one`` on MongoDB timed every 0.2 s during the run; CPU (% of one core, over the
steady part of the run and with the pool idle before it) and RSS/PSS per worker process, per 100
concurrent calls, and of Kamailio, the pool process, the embedded MongoDB and sipp; the whole machine's
busy CPU beside ours (the machine may be shared). ``--db-nice -10`` runs the embedded MongoDB ahead of the
workers, to tell a database short of CPU from a database at its limit; ``--heartbeat 6`` spaces the
workers' heartbeats (what they cost an idle pool). The shipped line keeps office hours: the run opens it
with an office-hours override, so it walks the same menu at any hour. Progress goes to stderr; stdout gets
the machine and one table.

基准测试：sipp 以固定速率呼入官方双语 IVR（普通话问候、按 9 选英文、按 0 转人工、无人值班转留言），
测量并发数、失败数、INVITE→200 OK、按键到下一段提示音的时延、每个 worker 及每 100 路通话的 CPU 和内存。
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.metadata
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import wave
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench._machine import machine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the node and sipp helpers are shared with tests/telephony

from core.embedded import free_port, start_mongo, start_redis  # noqa: E402
from core.settings import Settings  # noqa: E402
from tests.telephony.node import Node, open_main_line, start_node, stop_node  # noqa: E402

CONCURRENT_TARGET = 200
ANSWER_P95_TARGET_MS = 50.0
DEFAULT_HEARTBEAT = Settings.model_fields["telephony_heartbeat_seconds"].default
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MAIN_FLOW = REPO / "ivr_flows" / "flows" / "main.yaml"
T = TypeVar("T")

# The path ivr_main.xml takes through main.yaml: (node, result) of each ivr.step in order. A caller who
# hangs up while the voicemail records still gets a "recorded" step (the recording is kept).
MAIN_PATH = (
    ("office_hours", "open"),
    ("greeting", "played"),
    ("main_menu", "chose 9"),
    ("english", "set"),
    ("main_menu", "chose 0"),
    ("agent_queue", "unavailable"),
    ("voicemail", "recorded"),
)
# Which prompt each key of ivr_main.xml leads to: (node, language) of the next prompt
NEXT_PROMPT = {"9": ("main_menu", "en"), "0": ("voicemail", "en")}


@dataclass(frozen=True)
class Line:
    """What the benchmark calls: the router, the sipp scenario, the call's length and its expected facts."""

    router: str
    tapping_router: str
    scenario: str
    seconds: float  # how long one call lasts
    timeline_kinds: tuple[str, ...]
    events_per_call: int


MAIN_LINE = Line(
    router="ivr_flows.line:router",
    tapping_router="bench.telephony_tap:router",
    scenario="ivr_main.xml",
    seconds=11.5,
    timeline_kinds=(
        "call.started",
        "call.answered",
        "ivr.step",
        "call.queued",
        "call.recorded",
        "call.ended",
    ),
    events_per_call=2 + len(MAIN_PATH) + 3,
)
DEMO_LINE = Line(
    router="telephony.demo:router",
    tapping_router="telephony.demo:tapping_router",
    scenario="ivr_dtmf.xml",
    seconds=0.0,  # --hold
    timeline_kinds=("call.started", "call.answered", "ivr.step", "call.ended"),
    events_per_call=4,
)


# ------------------------------------------------------------------------------- processes: CPU, memory


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
    """Samples CPU at the start and end of a window and memory once, per process group."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.usage = {name: Usage() for name in groups}
        self.seconds = 0.0

    def _each(self) -> list[tuple[str, int]]:
        return [(name, pid) for name, pids in self.groups.items() for pid in pids]

    def start(self) -> None:
        self.started = time.monotonic()
        self.machine_start = machine_cpu()
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
        self.machine_end = machine_cpu()
        return self.seconds

    def machine_busy_percent(self) -> float:
        """All cores' busy time over the window, in % of one core (200 % = both cores saturated)."""
        busy = self.machine_end[0] - self.machine_start[0]
        return 100 * busy / self.seconds

    def total_percent(self) -> float:
        return sum(sum(self.cpu_percent(name)) for name in self.groups)

    def cpu_percent(self, name: str) -> list[float]:
        usage = self.usage[name]
        return [
            100 * (usage.cpu_end[pid] - usage.cpu_start[pid]) / self.seconds
            for pid in usage.cpu_start
            if pid in usage.cpu_end and usage.cpu_end[pid] and usage.cpu_start[pid]
        ]


def machine_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot, all cores (``/proc/stat``)."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    busy = sum(values[:8]) - idle
    return busy / CLOCK_TICKS, idle / CLOCK_TICKS


class MongoProbe:
    """Times one indexed ``find_one`` on the platform's MongoDB every 0.2 s, as a call step would see it."""

    def __init__(self, node: Node) -> None:
        self.db = node.mongo()
        self.ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mongo-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            begun = time.perf_counter()
            try:
                self.db.calls.find_one({"_id": "no-such-call"})
            except Exception:
                continue
            self.ms.append(1000 * (time.perf_counter() - begun))

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join(5)
        return self.ms


def db_work(node: Node) -> Counter[str]:
    """Commands the embedded MongoDB has served, by collection and kind (its ``top``), e.g.
    ``timeline insert``; read before and after the run, the difference is what the calls cost it."""
    totals = node.mongo().client.admin.command("top")["totals"]
    work: Counter[str] = Counter()
    for namespace, sections in totals.items():
        if not isinstance(sections, dict) or not namespace.startswith(node.mongo().name + "."):
            continue
        collection = namespace.split(".", 1)[1]
        for kind in ("queries", "getmore", "insert", "update", "remove", "commands"):
            count = sections.get(kind, {}).get("count", 0)
            if count:
                work[f"{collection} {kind}"] = count
    return work


def _shape(value: Any) -> Any:
    """A filter or update with its values blanked: ``{"_id": "…", "status": "…"}``."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [_shape(value[0])]
    return "…"


def profiled_commands(node: Node) -> list[tuple[str, int, float]]:
    """What the embedded MongoDB's profiler recorded (``--profile``), by collection, command and the shape
    of its filter, most frequent first, with the milliseconds the server spent on them in all."""
    shapes: Counter[str] = Counter()
    millis: Counter[str] = Counter()
    for entry in node.mongo()["system.profile"].find({}, {"command": 1, "ns": 1, "millis": 1}):
        command = dict(entry.get("command") or {})
        name = next(iter(command), "?")
        collection = entry.get("ns", "?").split(".", 1)[-1]
        what = command.get("filter", command.get("query", command.get("q")))
        if name == "update":
            what = [_shape(update.get("q")) for update in command.get("updates", [])[:1]]
        elif name == "insert":
            what = f"{len(command.get('documents', []))} document(s)"
        shape = f"{collection} {name} {_shape(what) if isinstance(what, dict | list) else what or ''}"
        shapes[shape] += 1
        millis[shape] += float(entry.get("millis") or 0)
    return [(shape, count, millis[shape]) for shape, count in shapes.most_common()]


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


# ------------------------------------------------------------------------------- RTP on the wire


def _ulaw_magnitudes() -> bytes:
    """G.711 µ-law byte → its 16-bit magnitude / 64 (clipped to 255), for ``bytes.translate``."""
    table = bytearray(256)
    for byte in range(256):
        inverted = ~byte & 0xFF
        exponent, mantissa = (inverted >> 4) & 7, inverted & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        table[byte] = min(255, magnitude >> 6)
    return bytes(table)


ULAW_MAGNITUDE = _ulaw_magnitudes()

_SO_ATTACH_FILTER = 26
_SO_TIMESTAMPNS = 35
_SO_RCVBUFFORCE = 33
_PACKET_OUTGOING = 4


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _rtp_filter(media_port: int) -> list[tuple[int, int, int, int]]:
    """Classic BPF on ``lo``: IPv4 UDP, not the outgoing copy, either to sipp's media port (the IVR's
    audio) or from it with RTP payload type 101 (the caller's RFC 2833 keys; sipp's echo is dropped)."""
    accept, drop = 16, 17
    program = [
        (0x28, 0, 0, 12),  # ldh [12]: ethertype
        (0x15, 0, drop, 0x0800),
        (0x20, 0, 0, 0xFFFFF004),  # ld pkttype (SKF_AD_OFF + SKF_AD_PKTTYPE)
        (0x15, drop, 0, _PACKET_OUTGOING),
        (0x30, 0, 0, 23),  # ldb [23]: IP protocol
        (0x15, 0, drop, 17),
        (0x28, 0, 0, 20),  # ldh [20]: fragment offset
        (0x45, drop, 0, 0x1FFF),
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf): IP header length
        (0x48, 0, 0, 16),  # ldh [x+16]: UDP destination port
        (0x15, accept, 0, media_port),
        (0x48, 0, 0, 14),  # ldh [x+14]: UDP source port
        (0x15, 0, drop, media_port),
        (0x50, 0, 0, 23),  # ldb [x+23]: RTP marker + payload type
        (0x54, 0, 0, 0x7F),
        (0x15, accept, drop, 101),
        (0x06, 0, 0, 0xFFFF),
        (0x06, 0, 0, 0),
    ]
    # jumps are relative to the next instruction
    return [
        (code, jt - index - 1 if jt else 0, jf - index - 1 if jf else 0, k)
        for index, (code, jt, jf, k) in enumerate(program)
    ]


@dataclass
class KeyPress:
    """One RFC 2833 key on one call leg and the IVR's audio for ``AFTER_KEY_NS`` after it: (kernel time,
    loudness) of every packet."""

    ns: int
    digit: str
    audio: list[tuple[int, int]] = field(default_factory=list)


AFTER_KEY_NS = 6_000_000_000
MATCH_FRAMES = 25  # 500 ms of a prompt's opening is its fingerprint
MATCH_CORRELATION = 0.9


class RtpWatch:
    """Watches sipp's media port on ``lo`` (needs CAP_NET_RAW): per IVR media port (one per call leg), the
    kernel time of each RFC 2833 key's first packet and the loudness of every IVR audio packet in the six
    seconds after it. Only those windows are kept, so a full run stays small."""

    def __init__(self, media_port: int) -> None:
        self.media_port = media_port
        self.keys: dict[int, list[KeyPress]] = defaultdict(list)
        self.packets = 0
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        instructions = _rtp_filter(media_port)
        array = (_SockFilter * len(instructions))(*[_SockFilter(*ins) for ins in instructions])
        self._program = _SockFprog(len(instructions), array)
        self._sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, bytes(self._program))
        self._sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 64 << 20)
        self._sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.5)
        self._thread = threading.Thread(target=self._run, name="rtp-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        media_port, table, keys = self.media_port, ULAW_MAGNITUDE, self.keys
        ancillary = socket.CMSG_SPACE(16)
        while not self._stop.is_set():
            try:
                data, ancdata, _flags, _address = self._sock.recvmsg(2048, ancillary)
            except TimeoutError:
                continue
            except OSError:
                return
            ns = time.time_ns()
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                    seconds, nanoseconds = struct.unpack("qq", value[:16])
                    ns = seconds * 1_000_000_000 + nanoseconds
            udp = 14 + (data[14] & 0x0F) * 4
            rtp = udp + 8
            if len(data) < rtp + 13:
                continue
            self.packets += 1
            source, destination = struct.unpack_from("!HH", data, udp)
            if destination == media_port:  # the IVR's audio
                presses = keys.get(source)
                if presses and ns - presses[-1].ns < AFTER_KEY_NS:
                    presses[-1].audio.append((ns, sum(data[rtp + 12 :].translate(table))))
            elif data[rtp + 1] & 0x80:  # a key's first event packet carries the marker bit
                keys[destination].append(KeyPress(ns, "0123456789*#ABCD"[data[rtp + 12] & 0x0F]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def next_prompt_ms(self, digit: str, fingerprint: list[float]) -> tuple[list[float], int]:
        """For every ``digit`` pressed: ms from the key's first packet to the first packet of the prompt
        whose opening loudness is ``fingerprint`` (Pearson r ≥ 0.9 over 500 ms: the prompt that was playing
        and pauses between words do not match); and how many keys had no such prompt within six seconds."""
        found: list[float] = []
        missing = 0
        for presses in self.keys.values():
            for press in presses:
                if press.digit != digit:
                    continue
                start = _first_match([loud for _, loud in press.audio], fingerprint)
                if start is None:
                    missing += 1
                else:
                    found.append((press.audio[start][0] - press.ns) / 1e6)
        return found, missing


def _first_match(loudness: list[int], fingerprint: list[float]) -> int | None:
    width = len(fingerprint)
    for start in range(len(loudness) - width + 1):
        if _correlation(loudness[start : start + width], fingerprint) >= MATCH_CORRELATION:
            return start
    return None


def _correlation(a: list[int], b: list[float]) -> float:
    if statistics.pstdev(a) == 0 or statistics.pstdev(b) == 0:
        return 0.0
    return statistics.correlation(a, b)


def fingerprint(path: Path) -> list[float]:
    """Mean magnitude of each 20 ms frame of the first ``MATCH_FRAMES`` frames of a 16-bit mono WAV (its
    own lead-in included: the match finds where the prompt starts, not where its speech does)."""
    with wave.open(str(path), "rb") as wav:
        frame = wav.getframerate() // 50
        samples = struct.unpack(f"<{frame * MATCH_FRAMES}h", wav.readframes(frame * MATCH_FRAMES))
    return [
        statistics.fmean(abs(sample) for sample in samples[index : index + frame])
        for index in range(0, len(samples), frame)
    ]


def prompt_fingerprints(node: Node) -> dict[tuple[str, str], list[float]]:
    """The opening of each prompt a key leads to, rendered as the workers did (the same cache)."""
    from ivr_flows.tts import PromptRenderer
    from ivr_flows.validation import parse_flow

    flow = parse_flow(MAIN_FLOW.read_text(), str(MAIN_FLOW))
    renderer = PromptRenderer(node.data_dir / "prompt-cache", node.data_dir / "prompts")

    async def render(node_id: str, language: str) -> Path:
        prompt = getattr(flow.nodes[node_id], "prompt", None)
        assert prompt, node_id
        return await renderer.render(prompt, language)

    return {key: fingerprint(asyncio.run(render(*key))) for key in set(NEXT_PROMPT.values())}


# ------------------------------------------------------------------------------- sipp traces


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


def dispatched(kamailio_pid: int) -> tuple[int, int]:
    """(active workers, their summed ``maxload``) in Kamailio's dispatcher set, asked over its control
    socket (``kamcmd dispatcher.list``)."""
    socket_arg = re.search(r'CTL_SOCKET="([^"]+)"', cmdline(kamailio_pid))
    if socket_arg is None:
        return 0, 0
    listing = subprocess.run(
        ["kamcmd", "-s", socket_arg.group(1), "dispatcher.list"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout
    active = capacity = 0
    for destination in listing.split("DEST:")[1:]:
        flags = re.search(r"FLAGS:\s*(\S+)", destination)
        load = re.search(r"MAXLOAD:\s*(\d+)", destination)
        if flags and flags.group(1).startswith("A"):
            active += 1
            capacity += int(load.group(1)) if load else 0
    return active, capacity


def leftovers(root: Path) -> list[int]:
    """Processes still running from this run's directory (workers are started with paths under it)."""
    mine = str(root)
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and int(entry.name) != os.getpid()
        and mine in cmdline(int(entry.name))
        and "mongod" not in cmdline(int(entry.name))
        and "redis" not in cmdline(int(entry.name))
    ]


def failovers(node: Node) -> dict[str, int]:
    """Worker replies Kamailio failed over from (kamailio.cfg logs each), by status code."""
    counts: dict[str, int] = defaultdict(int)
    for code in re.findall(r"telephony worker failed \((\d+)\)", node.log("kamailio.log")):
        counts[code] += 1
    return dict(counts)


# ------------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    line: Line = args.line
    root = Path(tempfile.mkdtemp(prefix="huiliu-bench-telephony-"))
    mongo = start_mongo(root / "mongo", free_port(), root / "mongo.log")
    redis = start_redis(root / "redis", free_port(), root / "redis.log")
    node: Node | None = None
    watch: RtpWatch | None = None
    try:
        progress(f"starting {args.workers} telephony workers (this takes a while on 2 cores)…")
        begun = time.monotonic()
        db_name = f"bench_{uuid.uuid4().hex[:8]}"
        if line is MAIN_LINE:  # the line keeps office hours (Asia/Shanghai): open it whatever the hour
            asyncio.run(open_main_line(mongo.url, db_name))
        node = start_node(
            root,
            mongo,
            redis,
            db_name=db_name,
            pool_size=args.workers,
            telephony_router=line.tapping_router if args.tap else line.router,
            # the platform's heartbeat (the test node's is faster), and a lenient timeout: a late heartbeat
            # under this load must not end live calls as node_lost
            telephony_heartbeat_seconds=str(args.heartbeat),
            telephony_node_timeout_seconds=str(max(10.0, args.heartbeat * 2.5)),
            telephony_rtp_port_min="20000",
            telephony_rtp_port_max="39999",
            log_level="WARNING",
        )
        ready = next(line for line in node.output if line.startswith("telephony: ")).strip()
        progress(f"pool up in {time.monotonic() - begun:.0f} s: {ready}")
        pool_pid = node.process.pid
        kamailio = [pid for pid in children_of(pool_pid) if "kamailio" in cmdline(pid)]
        # workers too late for the pool's start-up budget join once ready: wait for all of them
        active, capacity = dispatched(kamailio[0])
        deadline = time.monotonic() + 180
        while active < args.workers and time.monotonic() < deadline:
            time.sleep(1.0)
            active, capacity = dispatched(kamailio[0])
        startup = time.monotonic() - begun
        workers = node.worker_pids()
        caps = [doc["max_calls"] for doc in node.mongo().telephony_workers.find({"name": {"$exists": True}})]
        progress(f"{active} workers taking calls after {startup:.0f} s, capacity {capacity}")
        kamailio += [child for pid in kamailio for child in children_of(pid)]
        groups = {
            "workers": list(workers.values()),
            "kamailio": kamailio,
            "pool": [pool_pid],
            "mongodb": [mongo.process.pid],
            "bench": [os.getpid()],
        }
        if args.db_nice is not None:  # diagnosis: does the database starve for CPU among the workers?
            # Linux's nice is per thread: every thread the server has now (its connection threads are made
            # by one of them and inherit it), not only the main one
            for task in Path(f"/proc/{mongo.process.pid}/task").iterdir():
                with contextlib.suppress(ProcessLookupError):
                    os.setpriority(os.PRIO_PROCESS, int(task.name), args.db_nice)
        time.sleep(args.settle)  # the last workers' start-up (imports, prompt rendering) settles
        idle = Sampler(groups)
        idle.start()
        time.sleep(args.idle)
        idle.end()
        idle.peak()
        duration = line.seconds or args.hold + 0.5
        progress(f"offering {args.calls} calls at {args.rate:g}/s, each ~{duration:.1f} s…")
        sipp = node.start_sipp(
            line.scenario,
            calls=args.calls,
            rate=args.rate,
            pause_ms=int(args.hold * 1000),
            digit="1",
            timeout=args.calls / args.rate + duration + 120,
            extra=("-rtp_echo", "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1"),
        )
        sipp_args = [str(arg) for arg in sipp.process.args]  # type: ignore[union-attr]
        media_port = int(sipp_args[sipp_args.index("-mp") + 1])
        watch = RtpWatch(media_port)
        probe = MongoProbe(node)
        work_before = db_work(node)
        if args.profile:
            node.mongo().command("profile", 2)
        busy = Sampler({**groups, "sipp": [sipp.process.pid]})
        ramp = duration + 1.0
        window = max(args.calls / args.rate - ramp, 1.0)
        time.sleep(ramp)
        busy.start()
        time.sleep(window / 2)
        busy.peak()
        time.sleep(window / 2)
        seconds = busy.end()
        mongo_ms = probe.stop()
        run_result = sipp.finish(args.calls / args.rate + duration + 150)
        watch.stop()
        progress("waiting for every call's facts to be in MongoDB…")
        facts, lag = facts_written(node, line, run_result.successful)
        work = db_work(node) - work_before
        if args.profile:
            node.mongo().command("profile", 0)
            for what, count, spent in profiled_commands(node):
                per_call = count / max(run_result.successful, 1)
                progress(f"{per_call:6.2f} per call  {spent / max(count, 1):7.2f} ms each  {what}")
        work[f"{node.mongo().calls.name} queries"] -= len(mongo_ms)  # the probe's own
        rtt = read_rtt(node.workdir)
        peak = peak_concurrency(node.workdir)
        unexpected = sorted(set(run_result.responses))
        answer = rtt.get("answer", [])
        worker_cpu = busy.cpu_percent("workers")
        worker_rss = [kib / 1024 for kib in busy.usage["workers"].rss_kib.values() if kib]
        worker_pss = [kib / 1024 for kib in busy.usage["workers"].pss_kib.values() if kib]
        idle_pss = [kib / 1024 for kib in idle.usage["workers"].pss_kib.values() if kib]
        per_100 = 100 * sum(worker_cpu) / max(peak, 1)
        per_100_net = 100 * (sum(worker_cpu) - sum(idle.cpu_percent("workers"))) / max(peak, 1)
        kam_cpu = sum(busy.cpu_percent("kamailio"))
        kam_pss = sum(busy.usage["kamailio"].pss_kib.values()) / 1024
        rows = [
            (
                "workers up × measured call cap / Kamailio dispatches to",
                f"{len(workers)} × {min(caps)} / {active} workers, {capacity} calls",
                "",
            ),
            ("pool start-up (every worker taking calls)", f"{startup:.0f} s ({ready})", ""),
            (
                "line / calls offered / arrival rate",
                f"{'main.yaml' if line is MAIN_LINE else 'demo line'}: {args.calls} at {args.rate:g}/s"
                + (" (PCM tap on every call)" if args.tap else "")
                + (f" (embedded MongoDB at nice {args.db_nice})" if args.db_nice is not None else "")
                + (f" (heartbeat every {args.heartbeat:g} s)" if args.heartbeat != DEFAULT_HEARTBEAT else ""),
                "",
            ),
            ("peak concurrent calls", str(peak), f"≥ {CONCURRENT_TARGET}"),
            ("successful / failed calls", f"{run_result.successful} / {run_result.failed}", "0 failed"),
            ("unexpected SIP responses", ", ".join(map(str, unexpected)) or "none", "no 486"),
            (
                "worker replies Kamailio failed over from",
                ", ".join(f"{count} × {code}" for code, count in sorted(failovers(node).items())) or "none",
                "",
            ),
            (
                f"calls ended in MongoDB / timeline events (of {line.events_per_call} per call)",
                f"{facts['calls']} / {facts['events']} of {line.events_per_call * run_result.successful}, "
                + (
                    f"complete {lag:.0f} s after the last call"
                    if facts["events"] >= line.events_per_call * run_result.successful
                    else f"last written {lag:.0f} s after the last call; not there: {facts['missing']}"
                ),
                "none lost",
            ),
            (
                "MongoDB find_one by _id during the run p50 / p95 / max",
                f"{percentile(mongo_ms, 0.5):.0f} / {percentile(mongo_ms, 0.95):.0f} / "
                f"{max(mongo_ms, default=float('nan')):.0f} ms",
                "",
            ),
            (
                "MongoDB commands per successful call (by collection and kind, ≥ 0.1)",
                f"{sum(work.values()) / max(run_result.successful, 1):.1f}: "
                + ", ".join(
                    f"{what} {count / max(run_result.successful, 1):.1f}"
                    for what, count in work.most_common()
                    if count >= 0.1 * run_result.successful
                ),
                "",
            ),
            (
                "INVITE → 200 OK p50 / p95 / max",
                f"{percentile(answer, 0.5):.0f} / {percentile(answer, 0.95):.0f} / "
                f"{max(answer, default=float('nan')):.0f} ms",
                f"p95 ≤ {ANSWER_P95_TARGET_MS:.0f} ms",
            ),
        ]
        if line is MAIN_LINE:
            rows.append(
                (
                    "calls whose timeline holds the whole path",
                    f"{facts['path']} of {run_result.successful}"
                    + (f" (others: {facts['other_paths']})" if facts["other_paths"] else ""),
                    "all",
                )
            )
            queue_ms, hung_up = facts_queue_ms(node)
            rows.append(
                (
                    "queue step (enqueue, no agent, withdraw) p50 / p95 / max",
                    f"{percentile(queue_ms, 0.5):.0f} / {percentile(queue_ms, 0.95):.0f} / "
                    f"{max(queue_ms, default=float('nan')):.0f} ms ({len(queue_ms)} calls; "
                    f"{hung_up} callers hung up before it ended)",
                    "",
                )
            )
            rows += key_rows(watch, prompt_fingerprints(node))
        else:
            dtmf = rtt.get("dtmf", [])
            rows.append(
                (
                    "DTMF → BYE p50 / p95",
                    f"{percentile(dtmf, 0.5):.0f} / {percentile(dtmf, 0.95):.0f} ms",
                    "",
                )
            )
        rows += [
            (
                f"worker CPU, mean / max (% of a core, {seconds:.0f} s steady window)",
                f"{statistics.mean(worker_cpu):.1f} / {max(worker_cpu):.1f} %",
                "",
            ),
            (
                "all workers' CPU per 100 concurrent calls (net of the idle pool)",
                f"{per_100:.0f} % of a core ({per_100_net:.0f} %)",
                "",
            ),
            (
                f"all workers' CPU with no call ({idle.seconds:.0f} s, {args.settle:.0f} s after start-up)",
                f"{sum(idle.cpu_percent('workers')):.1f} % of a core",
                "",
            ),
            (
                "worker memory, mean RSS / PSS (idle PSS)",
                f"{statistics.mean(worker_rss):.0f} / {statistics.mean(worker_pss):.0f} MB "
                f"({statistics.mean(idle_pss):.0f} MB)",
                "",
            ),
            ("all workers' PSS", f"{sum(worker_pss):.0f} MB", ""),
            (
                "all workers' PSS per 100 concurrent calls",
                f"{100 * sum(worker_pss) / max(peak, 1):.0f} MB",
                "",
            ),
            ("Kamailio (all processes) CPU / PSS", f"{kam_cpu:.1f} % / {kam_pss:.0f} MB", ""),
            ("pool process CPU", f"{sum(busy.cpu_percent('pool')):.1f} %", ""),
            ("embedded MongoDB CPU", f"{sum(busy.cpu_percent('mongodb')):.1f} %", ""),
            ("sipp CPU", f"{sum(busy.cpu_percent('sipp')):.1f} %", ""),
            (
                "this benchmark (sipp excluded, RTP watch included) CPU",
                f"{sum(busy.cpu_percent('bench')):.1f} % ({watch.packets} packets watched)",
                "",
            ),
            (
                "machine CPU busy: all of this run / everything (of 200 %)",
                f"{busy.total_percent():.0f} % / {busy.machine_busy_percent():.0f} %",
                "",
            ),
            ("load average (1 min) at the end", f"{os.getloadavg()[0]:.1f}", ""),
        ]
        return rows
    finally:
        if watch is not None:
            watch.stop()
        if node is not None:
            stop_node(node)
            orphans = leftovers(root)
            if orphans:  # workers that outlived their pool (see the report): not ours to leave running
                progress(f"{len(orphans)} processes of this run outlived the node's stop; killing them")
                for pid in orphans:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
        for server in (redis, mongo):
            server.stop()
        if args.keep:
            progress(f"kept {root} (logs under var/log, sipp traces beside them)")
        else:
            shutil.rmtree(root, ignore_errors=True)


def key_rows(watch: RtpWatch, fingerprints: dict[tuple[str, str], list[float]]) -> list[tuple[str, str, str]]:
    rows = []
    for digit, (node_id, language) in sorted(NEXT_PROMPT.items()):
        found, missing = watch.next_prompt_ms(digit, fingerprints[(node_id, language)])
        rows.append(
            (
                f"key {digit} → first packet of the {node_id} ({language}) prompt p50 / p95 / max",
                f"{percentile(found, 0.5):.0f} / {percentile(found, 0.95):.0f} / "
                f"{max(found, default=float('nan')):.0f} ms ({len(found)} keys; {missing} without it in 6 s)",
                "",
            )
        )
    return rows


def facts_written(node: Node, line: Line, calls: int, within: float = 180.0) -> tuple[dict[str, Any], float]:
    """How many calls are ended in ``calls``, how many call events are on the timeline and (main line) how
    many calls went the whole of ``MAIN_PATH``, once complete (or when ``within`` runs out); and how long
    after the end of the run that was."""
    db = node.mongo()
    begun = changed = time.monotonic()
    last: dict[str, int] = {}
    while True:
        counts = {
            "calls": db.calls.count_documents({"status": "ended"}),
            "events": db.timeline.count_documents({"kind": {"$in": list(line.timeline_kinds)}}),
        }
        if counts != last:
            last, changed = counts, time.monotonic()
        complete = counts["calls"] >= calls and counts["events"] >= line.events_per_call * calls
        # a call that left the path early has fewer facts: nothing new for 15 s is the end too
        settled = counts["calls"] >= calls and time.monotonic() - changed > 15
        if complete or settled or time.monotonic() - begun > within:
            break
        time.sleep(1.0)
    lag = changed - begun
    kinds: dict[str, int] = defaultdict(int)
    for event in db.timeline.find({"kind": {"$in": list(line.timeline_kinds)}}, {"kind": 1}):
        kinds[event["kind"]] += 1
    per_call = {kind: 1 for kind in line.timeline_kinds}
    per_call["ivr.step"] = line.events_per_call - len(line.timeline_kinds) + 1
    missing = {kind: calls * per_call[kind] - kinds[kind] for kind in line.timeline_kinds}
    counts_missing = ", ".join(f"{kind} × {count}" for kind, count in missing.items() if count > 0)
    if line is MAIN_LINE:
        steps: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
        for event in db.timeline.find(
            {"kind": "ivr.step"}, {"body.call_id": 1, "body.step": 1, "body.node": 1, "body.result": 1}
        ):
            body: dict[str, Any] = event["body"]
            steps[body["call_id"]].append((body["step"], body["node"], body["result"]))
        paths = Counter(tuple((n, r) for _, n, r in sorted(taken)) for taken in steps.values())
        counts["path"] = paths.pop(MAIN_PATH, 0)
        counts["other_paths"] = "; ".join(
            f"{count} × " + " → ".join(f"{n} {r}" for n, r in path[2:])  # after office_hours, greeting
            for path, count in paths.most_common(3)
        )
    return {**counts, "missing": counts_missing or "none"}, lag


def facts_queue_ms(node: Node) -> tuple[list[float], int]:
    """Per call that got through the queue step (no agent staffed: ``unavailable``), ms from the key that
    chose the queue (``main_menu`` step) to the ``agent_queue`` step: the queue node's MongoDB work
    (customer, conversation, contact, staffing, withdrawal); and how many callers hung up before it ended."""
    chose: dict[str, Any] = {}
    queued: dict[str, Any] = {}
    left = 0
    for event in node.mongo().timeline.find(
        {"kind": "ivr.step", "body.node": {"$in": ["main_menu", "agent_queue"]}},
        {"ts": 1, "body.call_id": 1, "body.node": 1, "body.result": 1},
    ):
        body = event["body"]
        if body["node"] == "agent_queue":
            if body["result"] == "unavailable":
                queued[body["call_id"]] = event["ts"]
            else:
                left += 1
        elif body["result"] == "chose 0":
            chose[body["call_id"]] = event["ts"]
    durations = [(queued[call] - chose[call]).total_seconds() * 1000 for call in queued.keys() & chose.keys()]
    return durations, left


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=70, help="pjsua2 worker processes (default 70)")
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--rate", type=float, default=20.0, help="new calls per second")
    parser.add_argument("--tap", action="store_true", help="read every caller's audio in Python")
    parser.add_argument("--keep", action="store_true", help="keep the logs and traces of the run")
    parser.add_argument("--quick", action="store_true", help="40 calls at 2/s, 8 workers")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds the idle pool is sampled")
    parser.add_argument(
        "--settle", type=float, default=15.0, help="seconds between the pool's start and the idle sample"
    )
    parser.add_argument(
        "--db-nice",
        type=int,
        help="run the embedded MongoDB at this nice value (diagnosis; -10 gives it CPU before the workers)",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=DEFAULT_HEARTBEAT,
        help="seconds between a worker's heartbeats (default: the platform's; diagnosis of the idle pool)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record every MongoDB command of the run and list them per call, by shape (to stderr)",
    )
    parser.add_argument(
        "--demo-line", action="store_true", help="call the one-key demo line (telephony.demo) instead"
    )
    parser.add_argument(
        "--hold", type=float, default=10.5, help="demo line: seconds into the call before its key"
    )
    args = parser.parse_args()
    args.line = DEMO_LINE if args.demo_line else MAIN_LINE
    if args.quick:
        args.workers, args.calls, args.rate, args.hold = 8, 40, 2.0, 1.0
    if os.geteuid() != 0 and args.line is MAIN_LINE:
        parser.error("the RTP watch opens a raw socket on lo: run as root (or with CAP_NET_RAW)")
    header = machine(f"pjsua2-python {importlib.metadata.version('pjsua2-python')}")
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
