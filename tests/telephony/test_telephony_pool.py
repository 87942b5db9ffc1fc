"""The worker pool as an operator meets it: it grows and shrinks without dropping a call, shrugs off an
INVITE flood, and registers to a registrar that demands digest authentication."""

from __future__ import annotations

import hashlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.embedded import EmbeddedServer
from telephony.kamailio import Kamailio
from tests.telephony.node import Node, free_udp_tcp_port, sip_tools_missing, start_node, stop_node

pytestmark = pytest.mark.slow


@pytest.fixture
def small_node(mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path: Path) -> Iterator[Node]:
    missing = sip_tools_missing()
    if missing:
        pytest.skip(missing)
    running = start_node(tmp_path, mongo_server, redis_server, pool_size=1, telephony_drain_seconds="30")
    yield running
    stop_node(running)


def live_workers(node: Node) -> dict[str, int]:
    return node.worker_pids()


def active_calls(node: Node) -> list[dict[str, object]]:
    return list(node.mongo().calls.find({"status": "active", "answered_at": {"$ne": None}}))


def test_the_pool_grows_and_shrinks_without_dropping_a_call(small_node: Node) -> None:
    node = small_node
    assert len(live_workers(node)) == 1
    node.process.send_signal(signal.SIGUSR1)
    node.wait_for(lambda: len(live_workers(node)) == 2, within=30, what="a second worker")
    first, second = sorted(live_workers(node))

    caller = "139" + str(uuid.uuid4().int)[:8]
    calls = node.start_sipp("ivr_dtmf.xml", caller=caller, calls=6, rate=20, pause_ms=5000, digit="4")
    node.wait_for(lambda: len(active_calls(node)) == 6, within=15, what="six answered calls")
    owners = {str(call["worker_id"]).split(":")[1] for call in active_calls(node)}
    assert owners == {first, second}, "the new worker took no calls"

    node.process.send_signal(signal.SIGUSR2)  # the newest worker drains and goes
    time.sleep(1.0)
    during = node.sipp("ivr_dtmf.xml", caller=caller, pause_ms=500, digit="5")
    assert during.successful == 1, "a call arriving while a worker drains was lost"

    result = calls.finish(60)
    assert (result.successful, result.failed) == (6, 0), result.output[-2000:] + result.errors
    node.wait_for(lambda: sorted(live_workers(node)) == [first], within=30, what="the drained worker to go")
    ended = list(node.mongo().calls.find({"caller": "+86" + caller}))
    assert len(ended) == 7 and {call["cause"] for call in ended} == {"normal"}


def test_an_elastic_pool_starts_a_worker_before_it_is_full_and_stops_it_once_idle(
    mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path: Path
) -> None:
    """What ``huiliu run`` does by default: one worker while nobody calls, another as soon as fewer than two
    call slots are free, and back to one when the extra worker has been idle a while; no call is lost."""
    missing = sip_tools_missing()
    if missing:
        pytest.skip(missing)
    node = start_node(
        tmp_path,
        mongo_server,
        redis_server,
        pool_size=1,
        telephony_pool_spare_calls="2",
        telephony_pool_idle_seconds="2",
        telephony_drain_seconds="30",
    )
    try:
        [first] = live_workers(node)
        caller = "139" + str(uuid.uuid4().int)[:8]
        early = node.start_sipp("ivr_dtmf.xml", caller=caller, calls=3, rate=10, pause_ms=8000, digit="4")
        # three calls on a worker of four leave one slot free: the pool starts a second worker
        node.wait_for(lambda: len(live_workers(node)) == 2, within=30, what="a second worker")
        second = next(name for name in live_workers(node) if name != first)
        late = node.start_sipp("ivr_dtmf.xml", caller=caller, calls=3, rate=10, pause_ms=3000, digit="5")
        node.wait_for(
            lambda: any(str(call["worker_id"]).split(":")[1] == second for call in active_calls(node)),
            within=15,
            what="a call on the second worker",
        )

        for run in (early.finish(60), late.finish(60)):
            assert (run.successful, run.failed) == (3, 0), run.output[-2000:] + run.errors
        node.wait_for(lambda: list(live_workers(node)) == [first], within=30, what="the idle worker to stop")
        ended = list(node.mongo().calls.find({"caller": "+86" + caller}))
        assert len(ended) == 6 and {call["cause"] for call in ended} == {"normal"}
    finally:
        stop_node(node)


def test_an_invite_flood_is_refused_quickly_and_leaves_the_node_working(small_node: Node) -> None:
    node = small_node
    pids = live_workers(node)
    flood = node.sipp(
        "caller_waits.xml",
        caller="13700000000",
        calls=400,
        rate=200,
        timeout=40,
        extra=("-recv_timeout", "3000"),
    )
    assert flood.successful <= 4
    assert set(flood.responses) <= {503}, f"unexpected answers to the flood: {set(flood.responses)}"
    assert node.process.poll() is None and live_workers(node) == pids
    # the calls the flood got are ended (by their callers' timeout or the IVR), none stays active
    node.wait_for(
        lambda: not node.mongo().calls.find_one({"status": "active"}), within=40, what="no call left active"
    )
    run = node.sipp("ivr_dtmf.xml", caller="13700000001", pause_ms=500, digit="8")
    assert run.successful == 1, run.output[-2000:]


def test_worker_registers_to_a_registrar_with_digest_auth(
    mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path: Path
) -> None:
    missing = sip_tools_missing()
    if missing:
        pytest.skip(missing)
    secret = "registrar-test-secret"
    registrar_port = free_udp_tcp_port()
    registrar = Kamailio(
        workdir=tmp_path / "registrar",
        listen="127.0.0.1",
        port=registrar_port,
        list_path=Path(__file__).resolve().parents[2] / "telephony" / "kamailio" / "dispatcher.list",
        log_path=tmp_path / "registrar.log",
        children=1,
        defines=("WITH_AUTH",),
        env={**os.environ, "HUILIU_SECRET_KEY": secret},
    )
    registrar.start()
    password = hashlib.sha256(f"{secret}:sip:2001".encode()).hexdigest()[:24]
    node = start_node(
        tmp_path / "node",
        mongo_server,
        redis_server,
        pool_size=1,
        telephony_registrar=f"sip:127.0.0.1:{registrar_port}",
        telephony_sip_username="2001",
        telephony_sip_password=password,
    )
    try:
        contacts = node.wait_for(
            lambda: "AoR: 2001" in (dump := registrar.rpc("ul.dump")) and dump,
            within=15,
            what="a registration",
        )
        # calls for the registered number come to the node's SIP front, which spreads them over the pool
        assert f"sip:2001@127.0.0.1:{node.sip_port}" in contacts
    finally:
        stop_node(node)
        registrar.stop()
