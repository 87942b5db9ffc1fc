"""The pool's workers never outlive it: a ``huiliu telephony`` killed outright (OOM killer, ``kill -9``, a
supervisor out of patience) takes its pjsua2 workers with it instead of leaving orphans that hold their SIP
and RTP ports and keep writing heartbeats for a pool that is gone."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from core.embedded import EmbeddedServer
from tests.telephony.node import sip_tools_missing, start_node, stop_node


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_end_when_their_pool_is_killed(
    mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path: Path
) -> None:
    missing = sip_tools_missing()
    if missing:
        pytest.skip(missing)
    node = start_node(
        tmp_path / "telephony", mongo_server, redis_server, telephony_router="telephony.demo:router"
    )
    try:
        workers = node.wait_for(
            lambda: (pids := node.worker_pids()) and len(pids) == 2 and pids, within=30, what="two workers"
        )
        os.kill(node.process.pid, signal.SIGKILL)
        node.process.wait(10)
        deadline = time.monotonic() + 30  # each drains (3 s here) and stops on its own
        while time.monotonic() < deadline and any(alive(pid) for pid in workers.values()):
            time.sleep(0.2)
        left = [name for name, pid in workers.items() if alive(pid)]
        assert not left, f"workers {left} outlived their pool"
    finally:
        for pid in node.worker_pids().values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        stop_node(node)
