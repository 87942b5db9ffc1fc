"""`huiliu run` as an admin meets it: one command brings the platform up on embedded defaults, data
survives a restart, Ctrl-C leaves no process behind, and neither does a killed supervisor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from core.embedded import free_port, port_in_use

pytestmark = pytest.mark.slow


class Platform:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.web_port, self.mongo_port, self.redis_port = free_port(), free_port(), free_port()
        self.sip_port, self.sip_worker_port = free_port(), free_port()
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def ports(self) -> list[int]:
        return [self.web_port, self.mongo_port, self.redis_port, self.sip_port]

    def start(self) -> str:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HUILIU_")},
            "HUILIU_WEB_PORT": str(self.web_port),
            "HUILIU_EMBEDDED_MONGO_PORT": str(self.mongo_port),
            "HUILIU_EMBEDDED_REDIS_PORT": str(self.redis_port),
            "HUILIU_OUTBOX_RELAY_SECONDS": "1",
            "HUILIU_TELEPHONY_SIP_PORT": str(self.sip_port),
            "HUILIU_TELEPHONY_WORKER_BASE_PORT": str(self.sip_worker_port),
            "HUILIU_TELEPHONY_POOL_SIZE": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "run"],
            cwd=self.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 90
        banner = []
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            banner.append(line)
            if "Ctrl-C" in line:
                return "".join(banner)
        raise AssertionError("huiliu run did not come up:\n" + "".join(banner))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url(path), method=method, data=json.dumps(body).encode() if body is not None else None
        )
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def wait_healthy(self) -> None:
        for _ in range(300):
            try:
                if self.call("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("platform never became healthy")

    def stop(self, sig: int = signal.SIGINT) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(60)


def _processes_under(workdir: Path) -> dict[int, str]:
    """Live processes started for this platform (they run in or point at workdir): pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if state != "Z" and (cwd.startswith(str(workdir)) or str(workdir) in cmdline):
            found[int(entry.name)] = cmdline
    return found


def processes_under(workdir: Path) -> list[str]:
    return list(_processes_under(workdir).values())


def wait_gone(workdir: Path, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = processes_under(workdir)
        if not left:
            return []
        time.sleep(0.2)
    return processes_under(workdir)


def reap(platform: Platform) -> None:
    """After a test: the platform and everything it started are gone (a failed test must not leave
    seventy processes holding ports for the rest of the run)."""
    if platform.process is not None and platform.process.poll() is None:
        platform.process.kill()
    if wait_gone(platform.workdir):
        for pid, cmdline in _processes_under(platform.workdir).items():
            print("left behind, killed:", cmdline)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    running = Platform(tmp_path)
    yield running
    reap(running)


def test_one_command_runs_the_platform_and_ctrl_c_stops_all_of_it(platform: Platform) -> None:
    banner = platform.start()
    assert platform.url("/admin") in banner
    assert f"sip:1000@127.0.0.1:{platform.sip_port}" in banner
    assert "admin / admin-demo" in banner and "agent1 / agent1-demo" in banner
    platform.wait_healthy()

    status, login = platform.call("POST", "/api/auth/login", {"username": "admin", "password": "admin-demo"})
    assert status == 200
    token = login["token"]
    status, resolved = platform.call(
        "POST", "/api/customers/resolve", {"identities": [{"kind": "phone", "value": "13800138000"}]}, token
    )
    assert status == 201
    with urllib.request.urlopen(platform.url("/admin"), timeout=5) as page:
        assert page.status == 200 and b"<html" in page.read().lower()

    # The Celery worker and beat are alive: a parked bus event is relayed within seconds.
    subscriber = redis.Redis(port=platform.redis_port).pubsub()
    subscriber.subscribe("huiliu:test.relayed")
    subscriber.get_message(timeout=1)
    from pymongo import MongoClient

    mongo: MongoClient[dict[str, Any]] = MongoClient(port=platform.mongo_port, directConnection=True)
    mongo["huiliu"]["outbox"].insert_one(
        {"_id": "test.relayed:1", "topic": "test.relayed", "message": '{"id":"1"}', "at": time.time()}
    )
    message = None
    deadline = time.monotonic() + 30
    while message is None and time.monotonic() < deadline:
        message = subscriber.get_message(timeout=1)
    assert message is not None and message["data"] == b'{"id":"1"}'
    mongo.close()
    subscriber.close()

    assert platform.stop(signal.SIGINT) == 0
    assert wait_gone(platform.workdir) == []
    assert not any(port_in_use(port) for port in platform.ports)

    # Secrets never reach the logs: not the password, not the token, not the signing key.
    logs = "".join(
        path.read_text(errors="replace") for path in (platform.workdir / "var" / "log").glob("*.log")
    )
    secret_key = (platform.workdir / "var" / "secret_key").read_text().strip()
    assert "http.request" in logs
    for secret in ("admin-demo", token, secret_key):
        assert secret not in logs

    # Data survives a restart.
    platform.start()
    platform.wait_healthy()
    status, login = platform.call("POST", "/api/auth/login", {"username": "admin", "password": "admin-demo"})
    status, customer = platform.call(
        "GET", f"/api/customers/{resolved['customer']['id']}", None, login["token"]
    )
    assert status == 200 and customer["identities"] == [{"kind": "phone", "value": "+8613800138000"}]
    assert platform.stop(signal.SIGTERM) == 0
    assert wait_gone(platform.workdir) == []


def test_a_killed_supervisor_leaves_no_orphans(platform: Platform) -> None:
    platform.start()
    platform.stop(signal.SIGKILL)
    assert wait_gone(platform.workdir) == []
