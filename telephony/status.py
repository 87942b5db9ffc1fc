"""A telephony worker's status file: how a worker tells its pool that it is up and how it is doing.

The worker (``telephony.worker``) rewrites it whole at start and every heartbeat (written aside and renamed:
the pool never reads half of one) and removes it when it stops. The pool (``telephony.pool``) reads it to
learn that the worker takes calls and its call cap, to write all its workers' heartbeats in one MongoDB
command, and to size an elastic pool. JSON: ``worker_id``, ``max_calls``, ``sip_port``, ``state`` (the
heartbeat's fields, datetimes as ISO 8601, named in ``times``) and ``beat_at`` (Unix time of the write).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.files import write_whole


@dataclass(frozen=True)
class WorkerStatus:
    worker_id: str
    max_calls: int
    sip_port: int
    state: dict[str, Any]  # the heartbeat's fields, datetimes restored
    beat_at: float  # when the worker wrote it (Unix time)

    @property
    def active_calls(self) -> int:
        return int(self.state.get("active_calls") or 0)


def write_status(path: Path, worker_id: str, state: dict[str, Any]) -> None:
    """``state``: the worker's heartbeat fields (``telephony.worker.Worker.state``), with its call cap
    (``max_calls``) and SIP port."""
    times = sorted(name for name, value in state.items() if isinstance(value, dt.datetime))
    status = {
        "worker_id": worker_id,
        "max_calls": state["max_calls"],
        "sip_port": state["sip_port"],
        "state": {name: value.isoformat() if name in times else value for name, value in state.items()},
        "times": times,
        "beat_at": time.time(),
    }
    write_whole(path, json.dumps(status).encode())


def read_status(path: Path) -> WorkerStatus | None:
    """The status in ``path``; None until the worker first wrote it (or once it removed it)."""
    try:
        status: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    times = set(status.get("times", ()))
    return WorkerStatus(
        worker_id=str(status["worker_id"]),
        max_calls=int(status["max_calls"] or 0),
        sip_port=int(status["sip_port"] or 0),
        state={
            name: dt.datetime.fromisoformat(value) if name in times and value else value
            for name, value in status.get("state", {}).items()
        },
        beat_at=float(status.get("beat_at") or 0.0),
    )
