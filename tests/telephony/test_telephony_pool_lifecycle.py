"""The pool's workers never outlive it: a ``huiliu telephony`` killed outright (OOM killer, ``kill -9``, a
supervisor out of patience) takes its pjsua2 workers with it instead of leaving orphans that hold their SIP
and RTP ports and keep writing heartbeats for a pool that is gone."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from core.embedded import EmbeddedServer, free_port, start_mongo, start_redis
from telephony.worker import STOP_GRACE_SECONDS
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


def test_a_worker_exits_even_when_mongodb_and_redis_are_gone(tmp_path: Path) -> None:
    """The databases go, then the pool (the whole machine is going down): the worker's stop path talks to
    MongoDB and Redis, and each call waits for its timeout; it still exits (by force after drain +
    STOP_GRACE_SECONDS, should a call ever hang — once seen under heavy load, not reproduced since)."""
    missing = sip_tools_missing()
    if missing:
        pytest.skip(missing)
    mongo = start_mongo(tmp_path / "mongo", free_port(), tmp_path / "mongo.log")
    redis = start_redis(tmp_path / "redis", free_port(), tmp_path / "redis.log")
    node = start_node(
        tmp_path / "telephony",
        mongo,
        redis,
        pool_size=1,
        telephony_router="ivr_flows.line:router",  # the shipped IVR: its stop path talks to both
        telephony_drain_seconds="1",
    )
    workers: dict[str, int] = {}
    try:
        workers = node.wait_for(lambda: node.worker_pids() or None, within=30, what="a worker")
        mongo.stop()
        redis.stop()
        os.kill(node.process.pid, signal.SIGKILL)  # the worker gets SIGTERM from the kernel
        node.process.wait(10)
        deadline = time.monotonic() + 1 + STOP_GRACE_SECONDS + 15
        while time.monotonic() < deadline and any(alive(pid) for pid in workers.values()):
            time.sleep(0.5)
        left = [name for name, pid in workers.items() if alive(pid)]
        assert not left, f"workers {left} still running with their databases gone"
    finally:
        for pid in workers.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if node.process.poll() is None:
            node.process.kill()
        mongo.stop()  # the databases are this test's own: nothing to drop
        redis.stop()
