"""What every journey driver starts and signs the same way: the environment of the platform's processes,
``huiliu web`` / ``huiliu worker`` as real child processes, and an SMS gateway's signed webhook body.

Used by call_to_agent.py (journey 1) and channels_journeys.py (journeys 2 and 3)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SMS_SECRET = "journey-sms-webhook-secret"


def environment(
    mongo_url: str,
    redis_url: str,
    db_name: str,
    data_dir: Path,
    web_port: int,
    **settings: str,
) -> dict[str, str]:
    """The platform's environment: this machine's, without any ``HUILIU_*`` of the caller, plus ours;
    ``settings`` adds more (``wechat_token="…"`` → ``HUILIU_WECHAT_TOKEN``)."""
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith("HUILIU_")},
        "PYTHONPATH": str(REPO),
        "HUILIU_MONGO_URL": mongo_url,
        "HUILIU_REDIS_URL": redis_url,
        "HUILIU_DB_NAME": db_name,
        "HUILIU_DATA_DIR": str(data_dir),
        "HUILIU_SECRET_KEY": "test-secret-key-not-for-production",
        "HUILIU_WEB_PORT": str(web_port),
        "HUILIU_WEBRTC_HOST_ADDRESSES": "127.0.0.1",
        "HUILIU_SMS_WEBHOOK_SECRET": SMS_SECRET,
        **{f"HUILIU_{name.upper()}": value for name, value in settings.items()},
    }


def start_processes(
    workdir: Path, env: dict[str, str], commands: Iterable[str] = ("web", "worker")
) -> list[subprocess.Popen[bytes]]:
    """``huiliu <command>`` for each command, logging to ``workdir/<command>.log``."""
    processes: list[subprocess.Popen[bytes]] = []
    for command in commands:
        with (workdir / f"{command}.log").open("w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "core.cli", command],
                    cwd=workdir,
                    env=env,
                    stdout=log,
                    stderr=log,
                )
            )
    return processes


def stop_processes(processes: list[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """SIGTERM all, then wait for each (SIGKILL what outlives ``timeout``)."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def signed_sms(body: dict[str, Any], secret: str = SMS_SECRET) -> tuple[bytes, dict[str, str]]:
    """An inbound SMS as the gateway posts it: JSON, ``X-Signature`` = HMAC-SHA256 over
    ``<timestamp>.<raw body>``."""
    raw = json.dumps(body, ensure_ascii=False).encode()
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return raw, {
        "Content-Type": "application/json",
        "X-Signature-Timestamp": str(stamp),
        "X-Signature": f"sha256={mac}",
    }
