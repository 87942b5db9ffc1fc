"""Starting the embedded servers (SecantusDB for MongoDB, Debian's redis-server) as child processes.

Used by ``huiliu run`` and by the test fixtures, so both start them the same way. Children get
``PR_SET_PDEATHSIG``: if the parent dies, even by SIGKILL, the kernel stops them (no orphans).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: best effort
        pass


def spawn(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL
    return subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=output,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening on {port}")
        if port_in_use(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


@dataclass
class EmbeddedServer:
    name: str
    url: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_mongo(data_dir: Path, port: int, log_path: Path | None = None) -> EmbeddedServer:
    """SecantusDB (MongoDB wire protocol on WiredTiger); data persists in ``data_dir``."""
    if port_in_use(port):
        raise RuntimeError(f"port {port} is in use; stop what uses it or set HUILIU_EMBEDDED_MONGO_PORT")
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "core.mongod", "--port", str(port), "--storage-path", str(data_dir)]
    process = spawn(args, log_path=log_path, cwd=data_dir)
    wait_for_port(port, process, "the embedded MongoDB server (secantusdb)")
    # retryWrites=false: SecantusDB's retryable-write bookkeeping scans its last 10,000 replies on every
    # write (~5x slower once full); our writes are idempotent by key, so the driver's retry is not needed.
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"
    return EmbeddedServer("mongodb", url, port, process)


def start_redis(data_dir: Path, port: int, log_path: Path | None = None) -> EmbeddedServer:
    """Debian's redis-server bound to loopback, append-only file in ``data_dir``."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        raise RuntimeError(
            "redis-server is not installed; `make run` installs it (apt-get install redis-server)"
        )
    if port_in_use(port):
        raise RuntimeError(f"port {port} is in use; stop what uses it or set HUILIU_EMBEDDED_REDIS_PORT")
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir.resolve()),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]
    process = spawn(args, log_path=log_path)
    wait_for_port(port, process, "redis-server")
    return EmbeddedServer("redis", f"redis://127.0.0.1:{port}/0", port, process)
