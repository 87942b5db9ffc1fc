"""Idle memory of the whole platform: ``huiliu run`` on embedded defaults, no ASR models, nobody calling.

    .venv/bin/python -m bench.memory                 # first start, then a restart; 20 s idle before each
    .venv/bin/python -m bench.memory --once --idle 5 # a quicker look
    .venv/bin/python -m bench.memory --kb-search     # after one knowledge-base question (as a chat asks)
    .venv/bin/python -m bench.memory --imports       # also: what each Python process's imports cost

It starts ``huiliu run`` (``core/supervisor.py``, as ``make run`` does, demo users on) in a temporary
``HUILIU_DATA_DIR`` with every port it listens on (web, embedded MongoDB and Redis, the SIP front, the
pjsua2 workers, their RTP range) moved to free or unusual ports, so it collides with nothing else on the
machine, and an empty ASR model directory. It waits until ``/healthz`` answers 200 and the SIP front answers
an OPTIONS, lets the platform sit idle for ``--idle`` seconds, then walks the supervisor's process tree and
reads, per process:

* RSS (``VmRSS``): what ``top`` shows; pages shared between processes count once per process;
* PSS (``/proc/PID/smaps_rollup``): shared pages split between the processes sharing them, so the PSS of
  all processes adds up to what the platform really occupies;
* USS (``Private_Clean + Private_Dirty``): what stopping that one process would give back.

Compare runs by RSS: a library's pages are shared with every other process that maps the same file, other
Python processes of the same ``.venv`` on the machine included, so PSS and USS move with what else runs.

It measures twice: on the first start (empty data directory: the IVR's prompts are rendered, by a child
process of the telephony worker; the NLU model and jieba's compact dictionary are made by children of the
web process unless ``~/.cache/huiliu/nlu`` has them) and after a restart on the same directory (prompts
cached), which is what ``make run`` users see from the second time on. The telephony pool is elastic: idle,
it runs ``HUILIU_TELEPHONY_POOL_SIZE`` workers (``--pool``). The target is DESIGN.md's "platform idle memory
without ASR models ≤ 400 MB RSS"; the summed RSS counts shared pages several times (Kamailio's children
share most of theirs), so the PSS total is printed beside it. With ``--imports``, each kind of Python
process's imports are replayed in a fresh interpreter: the RSS before and after, and what each third-party
package adds when imported first (so a package's figure includes what it pulls in that was not loaded yet).
Progress goes to stderr; stdout gets the machine and the tables. The platform is stopped with SIGINT
(Ctrl-C) after each measurement.
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
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench._machine import machine, process_tree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.embedded import free_port  # noqa: E402
from core.settings import Settings  # noqa: E402

TARGET_MB = 400
DEFAULT_POOL = int(Settings.model_fields["telephony_pool_size"].default)
STARTED = time.perf_counter()
KINDS = (
    (r"core\.mongod", "embedded mongodb"),
    (r"redis-server", "redis"),
    (r"kamailio", "kamailio"),
    (r"telephony\.worker", "pjsua2 worker"),
    (r"core\.cli telephony", "telephony pool"),
    (r"core\.cli beat", "celery beat"),
    (r"core\.cli worker", "celery worker"),
    (r"core\.cli email", "email"),
    (r"core\.cli web", "web"),
    (r"core\.cli run", "supervisor"),
)
# What each kind of Python process imports (its module and what it imports when it starts), for --imports.
WORKER = "import telephony.worker, ivr_flows.line, agent_desktop, asr, omnichannel.channels, tickets"
ENTRIES = {
    "web": "import core.app",
    "web, NLU warm-up": "import core.app; from asr.nlu import default_analyzer; default_analyzer()",
    "celery worker (+ beat)": "import core.worker, core.tasks, tickets.tasks, omnichannel.channels.tasks",
    "telephony pool": "import core.cli, telephony.cli, telephony.pool",
    "pjsua2 worker": WORKER,
    # a value with hanzi nobody read ahead (a name, a date in words): digits and letters are read from the
    # readings prepare's child made, but this loads pypinyin
    "pjsua2 worker, after a Mandarin prompt with unread hanzi": WORKER
    + "; from ivr_flows.tts import to_pinyin; to_pinyin('您好')",
    "embedded mongodb": "import core.mongod, secantus.server",
    "supervisor": "import core.cli, core.supervisor; core.cli.build_parser(['run'])",
}


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return (
            "| "
            + " | ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


# -- the platform


@dataclass
class Platform:
    workdir: Path
    web_port: int
    sip_port: int
    process: subprocess.Popen[bytes]


def start_platform(workdir: Path, pool: int | None, extra_env: dict[str, str]) -> Platform:
    web_port, sip_port = free_port(), free_port()
    # Below Linux's ephemeral range (32768+, where free_port() and outgoing sockets land) and away from
    # the default RTP range (20000-29999) and SIP ports (5060, 5070+) other work on the machine may use.
    rtp_min = 10000 + (os.getpid() % 4) * 2000
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUILIU_")},
        "HUILIU_DATA_DIR": str(workdir / "var"),
        "HUILIU_WEB_PORT": str(web_port),
        "HUILIU_EMBEDDED_MONGO_PORT": str(free_port()),
        "HUILIU_EMBEDDED_REDIS_PORT": str(free_port()),
        "HUILIU_TELEPHONY_SIP_PORT": str(sip_port),
        "HUILIU_TELEPHONY_WORKER_BASE_PORT": str(free_worker_base(2 * (pool or DEFAULT_POOL))),
        "HUILIU_TELEPHONY_RTP_PORT_MIN": str(rtp_min),
        "HUILIU_TELEPHONY_RTP_PORT_MAX": str(rtp_min + 1999),
        "HUILIU_DEMO": "true",
        # no ASR models: the target is "without ASR models", and a developer's var/asr-models is not ours
        "HUILIU_ASR_MODEL_DIR": str(workdir / "asr-models"),
        **({"HUILIU_TELEPHONY_POOL_SIZE": str(pool)} if pool else {}),
        **extra_env,
    }
    with (workdir / "run.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "run"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Platform(workdir, web_port, sip_port, process)


def free_worker_base(span: int) -> int:
    """A base port in 18000-19999 with ``span`` free UDP ports from it (the workers' SIP ports: twice the
    pool size)."""
    for _ in range(50):
        base = 18000 + (uuid.uuid4().int % (2000 - span))
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + span):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free range of UDP ports for the telephony workers")


def healthy(port: int) -> bool:
    with contextlib.suppress(OSError):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return bool(reply.status == 200)
    return False


def sip_answers(port: int) -> bool:
    """An OPTIONS to the SIP front gets any SIP reply."""
    branch = "z9hG4bK" + uuid.uuid4().hex[:12]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(1.0)
        local = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:bench@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "User-Agent: huiliu-bench-memory\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), ("127.0.0.1", port))
        with contextlib.suppress(OSError):
            data = sock.recv(4096)
            return data.startswith(b"SIP/2.0 ")
    return False


def ask_knowledge_base(port: int) -> int:
    """One knowledge-base search as the demo admin (what the bot does for every chat message); the number
    of hits."""
    base = f"http://127.0.0.1:{port}"
    login = urllib.request.Request(
        base + "/api/auth/login",
        data=json.dumps({"username": "admin", "password": "admin-demo"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=30) as reply:
        token = json.loads(reply.read())["token"]
    search = urllib.request.Request(
        base + "/api/kb/search?" + urllib.parse.urlencode({"q": "退货需要什么条件？"}),
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(search, timeout=60) as reply:
        return len(json.loads(reply.read()))


def wait_until_up(platform: Platform, telephony: bool, within: float) -> float:
    deadline = time.monotonic() + within
    began = time.monotonic()
    web_up = sip_up = False
    while time.monotonic() < deadline:
        if platform.process.poll() is not None:
            raise RuntimeError(f"huiliu run exited with {platform.process.returncode}; see run.log")
        web_up = web_up or healthy(platform.web_port)
        sip_up = sip_up or not telephony or sip_answers(platform.sip_port)
        if web_up and sip_up:
            return time.monotonic() - began
        time.sleep(0.5)
    raise RuntimeError(f"not up after {within:.0f} s (healthz {web_up}, SIP {sip_up}); see run.log")


def stop_platform(platform: Platform) -> None:
    if platform.process.poll() is None:
        platform.process.send_signal(signal.SIGINT)
        try:
            platform.process.wait(90)
        except subprocess.TimeoutExpired:
            platform.process.kill()
            platform.process.wait()


# -- reading memory


def tree(root: int) -> dict[int, str]:
    """pid → kind of every live process under ``root`` (included)."""
    return {pid: kind(command) for pid, command in process_tree(root).items()}


def kind(command: str) -> str:
    for pattern, name in KINDS:
        if re.search(pattern, command):
            return name
    return command.split(" ")[0].rsplit("/", 1)[-1] or "?"


def usage_kib(pid: int) -> tuple[int, int, int]:
    """(RSS, PSS, USS) of ``pid`` in KiB."""
    fields: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, _, rest = line.partition(":")
            value = rest.split()
            if value:
                fields[name] = int(value[0])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return fields.get("Rss", 0), fields.get("Pss", 0), uss


def measure(root: int) -> list[tuple[str, int, int, int, int]]:
    """(kind, count, RSS, PSS, USS) per kind of process, in KiB, largest PSS first."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for pid, name in tree(root).items():
        rss, pss, uss = usage_kib(pid)
        row = totals[name]
        row[0] += 1
        row[1] += rss
        row[2] += pss
        row[3] += uss
    rows = [(name, count, rss, pss, uss) for name, (count, rss, pss, uss) in totals.items()]
    return sorted(rows, key=lambda row: -row[3])


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


def memory_table(rows: list[tuple[str, int, int, int, int]]) -> str:
    body = [(name, str(count), mib(rss), mib(pss), mib(uss)) for name, count, rss, pss, uss in rows]
    rss = sum(row[2] for row in rows)
    pss = sum(row[3] for row in rows)
    uss = sum(row[4] for row in rows)
    body.append(("total", str(sum(row[1] for row in rows)), mib(rss), mib(pss), mib(uss)))
    target_mib = TARGET_MB * 1_000_000 / 2**20
    body.append(
        (
            f"target ≤ {TARGET_MB} MB RSS (= {target_mib:.0f} MiB)",
            "",
            "met" if rss / 1024 <= target_mib else f"{rss / 1024 / target_mib:.1f}×",
            "met" if pss / 1024 <= target_mib else f"{pss / 1024 / target_mib:.1f}×",
            "",
        )
    )
    return table(("process", "count", "RSS MiB", "PSS MiB", "USS MiB"), body)


# -- what imports cost

_RSS = "def rss():\n    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])\n"
# the third-party packages ``entry`` imports, in the order they first appear
_PACKAGES = (
    _RSS
    + """import sys
bare = rss()
exec(sys.argv[1])
print(bare, rss(), *dict.fromkeys(name.split('.')[0] for name in sys.modules if name[0] != '_'))
"""
)
# the RSS each of those packages adds when imported first, then what ``entry`` adds on top
_STEPS = (
    _RSS
    + """import sys
for package in sys.argv[2:]:
    before = rss()
    try:
        __import__(package)
    except ImportError:  # a name an extension module put in sys.modules (SWIG's runtime data)
        continue
    print(package, rss() - before)
before = rss()
exec(sys.argv[1])
print('(own code, stdlib, data)', rss() - before)
"""
)
OWN = {"core", "telephony", "ivr_flows", "asr", "omnichannel", "agent_desktop", "tickets", "bench"}


def _python(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUILIU_")}
    env["HUILIU_REDIS_URL"] = "redis://127.0.0.1:1/0"  # core.worker builds its Celery app on import
    reply = subprocess.run(
        [sys.executable, "-c", *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if reply.returncode != 0:
        raise RuntimeError((reply.stderr.strip().splitlines() or ["failed"])[-1])
    return reply.stdout


def import_costs(entry: str) -> tuple[int, int, list[tuple[str, int]]]:
    """RSS (KiB) of a bare interpreter and after ``entry`` (in a fresh one), and the RSS each package adds
    imported first (a package's figure includes what it pulls in that was not loaded yet), largest first."""
    bare, after, *modules = _python(_PACKAGES, entry).split()
    already = set(sys.stdlib_module_names)
    packages = [name for name in modules if name not in already and name not in OWN]
    costs: list[tuple[str, int]] = []
    for line in _python(_STEPS, entry, *packages).splitlines():
        name, _, kib = line.rpartition(" ")
        costs.append((name, int(kib)))
    costs.sort(key=lambda item: -item[1])
    return int(bare), int(after), costs


async def _imports_report() -> str:
    rows: list[tuple[str, ...]] = []
    for name, entry in ENTRIES.items():
        progress(f"imports of {name}: {entry}")
        try:
            bare, after, costs = await asyncio.to_thread(import_costs, entry)
        except RuntimeError as exc:
            rows.append((name, "?", "?", str(exc)[:80]))
            continue
        top = ", ".join(f"{package} {kib / 1024:.0f}" for package, kib in costs[:7] if kib >= 1024)
        rows.append((name, mib(bare), mib(after), top))
    return table(("process (its imports)", "bare RSS", "after", "biggest parts, MiB (imported first)"), rows)


def measure_once(workdir: Path, args: argparse.Namespace, label: str) -> str:
    telephony = not args.no_telephony
    extra = {} if telephony else {"HUILIU_TELEPHONY_ENABLED": "false"}
    progress(f"{label}: starting huiliu run in {workdir}")
    platform_ = start_platform(workdir, args.pool, extra)
    try:
        took = wait_until_up(platform_, telephony, within=300)
        progress(f"healthy and SIP answering after {took:.1f} s")
        if args.kb_search:
            progress(f"knowledge-base search: {ask_knowledge_base(platform_.web_port)} hits")
        progress(f"idle {args.idle:.0f} s")
        time.sleep(args.idle)
        rows = measure(platform_.process.pid)
    except RuntimeError:
        with contextlib.suppress(OSError):
            sys.stderr.write((workdir / "run.log").read_text()[-3000:])
        raise
    finally:
        progress("stopping (SIGINT)")
        stop_platform(platform_)
    label += ", after one knowledge-base search" if args.kb_search else ""
    return (
        f"\nhuiliu run, {label}, idle {args.idle:.0f} s after healthy (up in {took:.1f} s):\n"
        + memory_table(rows)
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=float, default=20.0, help="seconds idle before measuring")
    parser.add_argument("--pool", type=int, help="pjsua2 workers (default: the setting's default)")
    parser.add_argument("--no-telephony", action="store_true", help="HUILIU_TELEPHONY_ENABLED=false")
    parser.add_argument(
        "--kb-search", action="store_true", help="ask the knowledge base one question before the idle wait"
    )
    parser.add_argument("--once", action="store_true", help="only the first start, not the restart")
    parser.add_argument("--imports", action="store_true", help="also measure each process's imports")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    args = parser.parse_args()
    print("\n".join(machine()))
    workdir = Path(tempfile.mkdtemp(prefix="huiliu-memory-"))
    try:
        print(measure_once(workdir, args, "first start (empty data directory, prompts rendered)"))
        if not args.once:
            print(measure_once(workdir, args, "restart on the same data directory (prompts cached)"))
    except RuntimeError as exc:
        progress(str(exc))
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.imports:
        print("\nImports in a fresh interpreter (RSS; a package's figure includes what it pulls in first):")
        print(asyncio.run(_imports_report()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
