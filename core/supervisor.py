"""``huiliu run``: start the platform on one machine and keep it running until Ctrl-C.

Embedded MongoDB and Redis start only when their ``HUILIU_*_URL`` is unset; then the web process and a Celery
worker that runs beat as one of its threads (``huiliu worker --beat``: a separate beat process would import
the whole platform again, ~80 MB, to send a few tasks by name), then the SIP front and its pjsua2 workers. A
child that crashes is restarted with back-off; Ctrl-C (or SIGTERM) stops everything in reverse order, and
children die with this process even if it is killed (see ``core.embedded``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from core.demo import DEMO_USERS
from core.embedded import EmbeddedServer, spawn, start_mongo, start_redis, wait_for_port
from core.settings import Settings


@dataclass
class Child:
    name: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.log_dir = settings.data_dir / "log"
        self.servers: list[EmbeddedServer] = []
        self.children: list[Child] = []
        self.env = dict(os.environ)
        self.stopping = False

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.settings.secret()  # generated once here, so every child reads the same key
        if self.settings.mongo_url is None:
            server = start_mongo(
                self.data_dir / "mongo", self.settings.embedded_mongo_port, self.log_dir / "mongodb.log"
            )
            self.servers.append(server)
            self.env["HUILIU_MONGO_URL"] = server.url
        if self.settings.redis_url is None:
            server = start_redis(
                self.data_dir / "redis", self.settings.embedded_redis_port, self.log_dir / "redis.log"
            )
            self.servers.append(server)
            self.env["HUILIU_REDIS_URL"] = server.url
        python = sys.executable
        self.children = [
            Child("web", [python, "-m", "core.cli", "web"]),
            Child("worker", [python, "-m", "core.cli", "worker", "--beat"]),
        ]
        if self.settings.email_enabled:  # the SMTP listener (omnichannel/channels/mail_process.py)
            self.children.append(Child("email", [python, "-m", "core.cli", "email"]))
        if self.settings.telephony_enabled:  # Kamailio and the pjsua2 worker pool (telephony.pool)
            self.children.append(Child("telephony", [python, "-m", "core.cli", "telephony"]))
        for child in self.children:
            self._spawn(child)
        web = self.children[0]
        assert web.process is not None
        wait_for_port(self.settings.web_port, web.process, "the web process", timeout=60)
        if self.settings.telephony_enabled:
            telephony = self.children[-1]
            assert telephony.process is not None
            wait_for_port(self.settings.telephony_sip_port, telephony.process, "the SIP front", timeout=120)

    def _spawn(self, child: Child) -> None:
        child.process = spawn(child.args, env=self.env, log_path=self.log_dir / f"{child.name}.log")

    def banner(self) -> str:
        base = self.settings.public_url or f"http://{self.settings.web_host}:{self.settings.web_port}"
        lines = [
            "",
            "汇流 Huiliu is running / 已启动",
            f"  Admin & desktop   {base}/admin",
            f"  API docs          {base}/api/docs",
            f"  Health            {base}/healthz",
            f"  MongoDB           {self.env.get('HUILIU_MONGO_URL')}",
            f"  Redis             {self.env.get('HUILIU_REDIS_URL')}",
            f"  Logs              {self.log_dir}/",
        ]
        if self.settings.telephony_enabled:
            sip = f"{self.settings.telephony_sip_host}:{self.settings.telephony_sip_port}"
            lines.append(f"  Call (SIP) 拨打    sip:{self.settings.telephony_demo_number}@{sip}")
        if self.settings.demo:
            lines.append("  Demo logins 演示账号:")
            lines += [f"    {user.role:<11} {user.username} / {user.password}" for user in DEMO_USERS]
        lines.append("Press Ctrl-C to stop / 按 Ctrl-C 停止")
        return "\n".join(lines)

    def watch(self) -> None:
        """Restart crashed children (at most 5 times a minute each) until asked to stop."""
        while not self.stopping:
            for child in self.children:
                if child.process is None or child.process.poll() is None:
                    continue
                now = time.monotonic()
                child.restarts = [at for at in child.restarts if now - at < 60]
                if len(child.restarts) >= 5:
                    print(
                        f"{child.name} keeps crashing; see {self.log_dir / child.name}.log", file=sys.stderr
                    )
                    self.stopping = True
                    break
                print(f"{child.name} exited with {child.process.returncode}; restarting", file=sys.stderr)
                child.restarts.append(now)
                self._spawn(child)
            time.sleep(0.5)

    def stop(self) -> None:
        self.stopping = True
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(15)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        for server in reversed(self.servers):
            server.stop()


def run(settings: Settings) -> int:
    supervisor = Supervisor(settings)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        supervisor.start()
        print(supervisor.banner(), flush=True)
        supervisor.watch()
    except RuntimeError as exc:
        print(f"huiliu run: {exc}", file=sys.stderr)
        return 1
    finally:
        supervisor.stop()
        print("Stopped / 已停止", flush=True)
    return 0
