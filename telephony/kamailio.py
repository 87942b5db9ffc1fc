"""Kamailio (Debian package) as the SIP front of one telephony node: its command line, the dispatcher
list of this node's workers, and its control socket (``kamcmd``)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.embedded import spawn

KAMAILIO_CFG = Path(__file__).resolve().parent / "kamailio" / "kamailio.cfg"
# AF_UNIX paths are limited to 107 bytes
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class Destination:
    uri: str
    duid: str
    max_load: int
    enabled: bool = True


def phone_password(secret: str, user: str) -> str:
    """The SIP password of phone user ``user`` under ``WITH_AUTH`` (kamailio.cfg computes the same)."""
    return hashlib.sha256(f"{secret}:sip:{user}".encode()).hexdigest()[:24]


def dispatcher_list(destinations: Iterable[Destination]) -> str:
    """Set 1 for ``kamailio.cfg``. Disabled entries are spare slots: a worker added later is switched on
    with ``dispatcher.set_state`` instead of a reload, because a reload forgets every worker's call load."""
    lines = ["# written by `huiliu telephony`: this node's pjsua2 workers (duid, measured call cap)"]
    for destination in destinations:
        flags = 0 if destination.enabled else 4
        lines.append(f"1 {destination.uri} {flags} 0 duid={destination.duid};maxload={destination.max_load}")
    return "\n".join(lines) + "\n"


class Kamailio:
    def __init__(
        self,
        *,
        workdir: Path,
        listen: str,
        port: int,
        list_path: Path,
        log_path: Path,
        children: int = 4,
        config: Path = KAMAILIO_CFG,
        defines: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir.resolve()
        self.listen = listen
        self.port = port
        self.list_path = list_path.resolve()
        self.log_path = log_path
        self.children = children
        self.config = config
        self.defines = defines
        self.env = env
        socket_path = self.workdir / "kamailio.ctl"
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha1(str(socket_path).encode(), usedforsecurity=False).hexdigest()[:12]
            socket_path = Path(f"/tmp/huiliu-kamailio-{digest}.ctl")
        self.ctl = f"unix:{socket_path}"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        defines = [
            f"LISTEN_ADDR={self.listen}",
            f"SIP_PORT={self.port}",
            f'DISPATCHER_LIST="{self.list_path}"',
            f'CTL_SOCKET="{self.ctl}"',
            f"CHILDREN={self.children}",
            *self.defines,
        ]
        args = [binary, "-DD", "-E", "-m", "64", "-M", "8", "-w", str(self.workdir), "-f", str(self.config)]
        for define in defines:
            args += ["-A", define]
        return args

    def start(self, within: float = 20.0) -> None:
        if shutil.which("kamailio") is None:
            raise RuntimeError("kamailio is not installed; `make run` installs it (apt-get install kamailio)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = spawn(self.command(), env=self.env, log_path=self.log_path, cwd=self.workdir)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"kamailio exited with code {self.process.returncode}; see {self.log_path}"
                )
            if self._rpc_ok("core.uptime"):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kamailio did not start within {within:.0f} s; see {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rpc(self, *command: str) -> str:
        binary = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
        result = subprocess.run(
            [binary, "-s", self.ctl, *command], capture_output=True, text=True, timeout=10, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"kamcmd {' '.join(command)}: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def _rpc_ok(self, *command: str) -> bool:
        try:
            self.rpc(*command)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def set_worker_state(self, uri: str, state: str) -> None:
        """``a`` active, ``d`` disabled (no new calls, not probed), ``ip`` inactive and probed."""
        self.rpc("dispatcher.set_state", state, "1", uri)

    def stop(self, within: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
