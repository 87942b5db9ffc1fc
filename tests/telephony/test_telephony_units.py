"""The small pure pieces of telephony: reading INVITEs, the dialog a sweeper hangs up with, the dispatcher
list, who a caller is, which handler a number reaches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from telephony.api import Call, CallState, Direction, HangupCause
from telephony.calls import PjsuaCall, UnrecordedCall
from telephony.kamailio import Destination, dispatcher_list
from telephony.ledger import call_ref, caller_identity
from telephony.routing import StaticRouter
from telephony.sip import bye_request, display_number, hop, invite_parties, uas_dialog

INVITE = (
    "INVITE sip:4008001234@10.0.0.5:5070 SIP/2.0\r\n"
    "Record-Route: <sip:10.0.0.1:5060;lr;ftag=abc>\r\n"
    "Record-Route: <sip:192.0.2.9;lr>\r\n"
    "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n"
    'f: "Zhang San" <sip:013800138000@trunk.example.com>;tag=abc\r\n'
    "t: <sip:4008001234@trunk.example.com>\r\n"
    "i: 7f3a@trunk\r\n"
    "m: <sip:013800138000@192.0.2.9:5060;transport=udp>\r\n"
    "\r\n"
    "v=0\r\n"
)
T = TypeVar("T")
OK = "SIP/2.0 200 OK\r\nTo: <sip:4008001234@trunk.example.com>;tag=ours1\r\n\r\n"


def test_the_caller_is_read_from_p_asserted_identity_first_then_from() -> None:
    parties = invite_parties(INVITE)
    assert (parties.caller_user, parties.caller_host, parties.called) == (
        "013800138000",
        "trunk.example.com",
        "4008001234",
    )
    asserted = INVITE.replace("i: 7f3a", "P-Asserted-Identity: <tel:+8613911112222>\r\ni: 7f3a")
    assert invite_parties(asserted).caller_user == "+8613911112222"


def test_phone_numbers_are_shown_in_e164_and_extensions_as_dialed() -> None:
    assert display_number("013800138000", "CN") == "+8613800138000"
    assert display_number("1000", "CN") == "1000"
    assert display_number("alice", "CN") == "alice"


def test_the_dialog_of_an_answered_call_gives_a_bye_through_the_front() -> None:
    dialog = uas_dialog(INVITE, OK)
    assert dialog is not None
    assert dialog.target == "sip:013800138000@192.0.2.9:5060;transport=udp"
    assert dialog.routes == ("<sip:10.0.0.1:5060;lr;ftag=abc>", "<sip:192.0.2.9;lr>")
    request, destination = bye_request(dialog, ("10.0.0.5", 4000), "b1", 1_000_000_000)
    text = request.decode()
    assert text.startswith("BYE sip:013800138000@192.0.2.9:5060;transport=udp SIP/2.0\r\n")
    assert "From: <sip:4008001234@trunk.example.com>;tag=ours1\r\n" in text
    assert 'To: "Zhang San" <sip:013800138000@trunk.example.com>;tag=abc\r\n' in text
    assert text.index("Route: <sip:10.0.0.1") < text.index("Route: <sip:192.0.2.9")
    assert destination == ("10.0.0.1", 5060)
    assert hop("<sip:[2001:db8::1]:5080;lr>") == ("2001:db8::1", 5080)
    assert uas_dialog(INVITE, "SIP/2.0 200 OK\r\nTo: <sip:x@y>\r\n\r\n") is None  # no To-tag: no dialog


def test_the_dispatcher_list_carries_each_workers_cap_and_spare_slots_are_disabled() -> None:
    text = dispatcher_list(
        [
            Destination("sip:127.0.0.1:5070", "w0", 4),
            Destination("sip:127.0.0.1:5071", "w1", 4, enabled=False),
        ]
    )
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        "1 sip:127.0.0.1:5070 0 0 duid=w0;maxload=4",
        "1 sip:127.0.0.1:5071 4 0 duid=w1;maxload=4",
    ]


def test_callers_are_identified_by_number_sip_user_or_as_anonymous() -> None:
    phone = caller_identity("13800138000", "x", "c1", "CN")
    assert (phone.kind.value, phone.value) == ("phone", "+8613800138000")
    sip_user = caller_identity("alice", "pbx.example.com", "c1", "CN")
    assert (sip_user.kind.value, sip_user.value) == ("crm_id", "sip:alice@pbx.example.com")
    anonymous = caller_identity("Anonymous", "anonymous.invalid", "c1", "CN")
    assert anonymous.value == "anonymous-call:c1"
    assert call_ref("x" * 300).startswith("sha1-") and call_ref("abc@host") == "abc@host"


def test_numbers_reach_their_handler_and_others_none() -> None:
    async def handler(call: Call) -> None:
        return None

    router = StaticRouter({"1000": handler})
    assert router.route("1000") is handler
    assert router.route("+1000") is handler
    assert router.route("1001") is None


def test_causes_and_states_are_plain_strings_on_the_wire() -> None:
    assert (
        HangupCause("node_lost") is HangupCause.node_lost and str(HangupCause.agent_hangup) == "agent_hangup"
    )
    assert CallState.answered == "answered"


class SlowEngine:
    """The pjsua thread seen from the event loop: each command takes a moment; what ran is kept."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, int]] = []

    async def submit(self, fn: Callable[[SlowEngine], T]) -> T:
        await asyncio.sleep(0.05)
        return fn(self)

    def play(self, handle: int, path: Path, temporary: bool) -> int:
        self.ran.append(("play", handle))
        return 7

    def stop_player(self, handle: int, player: int) -> None:
        self.ran.append(("stop_player", player))


async def test_a_prompt_cancelled_while_it_starts_is_stopped_once_started(tmp_path: Path) -> None:
    # Hold music is cancelled as soon as the queue answers; when that is while the player starts, the
    # player must not play on under the next prompt.
    engine = SlowEngine()
    call = PjsuaCall(
        engine,  # type: ignore[arg-type]
        1,
        call_id="c1",
        caller="+8613800138000",
        called="1000",
        direction=Direction.inbound,
        journal=UnrecordedCall(),
        recordings_dir=tmp_path,
        prompt_dir=tmp_path,
        target_uri=str,
    )
    call._media_ready.set()
    (tmp_path / "hold.wav").write_bytes(b"RIFF")  # the engine here does not read it
    playing = asyncio.ensure_future(call.play(tmp_path / "hold.wav"))
    await asyncio.sleep(0.01)  # the command is on its way to the pjsua thread
    playing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await playing
    assert engine.ran == [("play", 1), ("stop_player", 7)]


def test_the_pool_beats_for_running_workers_with_a_fresh_status_only(tmp_path: Path) -> None:
    """Each worker writes its state to its status file; the pool turns the fresh ones into heartbeats (one
    MongoDB command for all). A worker that stopped writing (hung), exited, or was replaced by a restart
    (another worker id in the file) gets none, so its heartbeat runs out and its calls are swept."""
    import datetime as dt
    import subprocess
    import sys
    import time

    from core.settings import Settings
    from telephony.pool import TelephonyPool
    from telephony.status import write_status

    settings = Settings(
        data_dir=tmp_path,
        telephony_pool_size=4,
        telephony_heartbeat_seconds=2.0,
        telephony_node_timeout_seconds=5.0,
    )
    pool = TelephonyPool(settings, store=None, front=False)  # type: ignore[arg-type]
    pool.run_dir.mkdir(parents=True)
    pool.slots = [pool._new_slot(index) for index in range(4)]
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    started = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)
    try:
        for slot in pool.slots:
            slot.worker_id = f"w{slot.index}-id"
            slot.process = exited if slot.index == 2 else running  # type: ignore[assignment]
            state = {"name": slot.name, "max_calls": 4, "sip_port": slot.sip_port, "active_calls": slot.index}
            state |= {"started_at": started, "last_seen": started}
            written = "another-incarnation" if slot.index == 3 else slot.worker_id
            write_status(slot.ready_file, written, state)
        now = time.time()
        hung = pool.slots[1].ready_file
        stale = json.loads(hung.read_text()) | {"beat_at": now - 6.0}
        hung.write_text(json.dumps(stale))

        [(worker_id, fields, expires_at)] = pool.heartbeats(now)
    finally:
        running.kill()
        running.wait()
    assert worker_id == "w0-id" and fields["active_calls"] == 0 and fields["last_seen"] == started
    beat_at = json.loads(pool.slots[0].ready_file.read_text())["beat_at"]
    # the node timeout plus one beat from when the worker wrote (the file may be a beat old when read)
    assert expires_at.timestamp() == pytest.approx(beat_at + 5.0 + 2.0)


async def test_an_elastic_pool_grows_before_it_is_full_and_shrinks_only_an_idle_extra_worker(
    tmp_path: Path,
) -> None:
    """The decisions behind ``telephony_pool_spare_calls``, from the workers' status files: grow when fewer
    slots than that are free (not again at once after a worker failed to start), never retire a worker of
    the pool's own size, and retire an extra one only after it has been idle long enough while the rest
    keep the spare."""
    from core.settings import Settings
    from telephony.pool import GROW_RETRY_SECONDS, TelephonyPool
    from telephony.status import write_status

    settings = Settings(
        data_dir=tmp_path, telephony_pool_size=1, telephony_pool_spare_calls=2, telephony_pool_idle_seconds=10
    )
    pool = TelephonyPool(settings, store=None, front=False)  # type: ignore[arg-type]
    pool.run_dir.mkdir(parents=True)
    decided: list[str] = []

    async def add_worker() -> None:
        decided.append("grow")

    async def remove_worker(*, when_idle: bool = False) -> None:
        decided.append(f"shrink (when idle: {when_idle})")

    pool.add_worker = add_worker  # type: ignore[method-assign]
    pool.remove_worker = remove_worker  # type: ignore[method-assign]

    def workers(*calls: int) -> None:
        pool.slots = [pool._new_slot(index) for index in range(len(calls))]
        for slot, active in zip(pool.slots, calls, strict=True):
            slot.worker_id, slot.max_calls, slot.enabled = f"{slot.name}-id", 4, True
            state = {"name": slot.name, "max_calls": 4, "sip_port": slot.sip_port, "active_calls": active}
            write_status(slot.ready_file, slot.worker_id, state)

    async def decide(now: float) -> list[str]:
        decided.clear()
        pool.keep_spare(now)
        if pool._resizing is not None:
            await pool._resizing
            pool._resizing = None
        return list(decided)

    workers(2)
    assert await decide(100.0) == []  # two of four free: enough
    workers(3)
    assert await decide(101.0) == ["grow"]
    pool._grow_after = 101.0 + GROW_RETRY_SECONDS  # as after a worker that did not start
    assert await decide(102.0) == []
    assert await decide(101.0 + GROW_RETRY_SECONDS) == ["grow"]

    workers(3, 1)  # the extra worker has a call
    assert await decide(200.0) == [] and await decide(300.0) == []
    workers(1, 0)  # idle now: retired once idle for 10 s
    assert await decide(400.0) == [] and await decide(405.0) == []
    assert await decide(410.0) == ["shrink (when idle: True)"]
    workers(3, 0)  # without it only one slot would be free: it stays
    assert await decide(500.0) == [] and await decide(600.0) == []
    workers(0)  # the pool's own worker is never retired
    assert await decide(700.0) == [] and await decide(800.0) == []


def test_the_elastic_pool_grows_up_to_its_maximum_size(tmp_path: Path) -> None:
    """``telephony_pool_max_size`` bounds the workers (and the SIP ports and RTP slices reserved for them);
    unset, twice the pool size; below the pool size it is refused with the setting's name."""
    from core.settings import Settings
    from telephony.pool import TelephonyPool

    def pool(**overrides: Any) -> TelephonyPool:
        return TelephonyPool(Settings(data_dir=tmp_path, **overrides), store=None, front=False)  # type: ignore[arg-type]

    assert pool(telephony_pool_size=3).capacity_slots == 6
    wide = pool(telephony_pool_size=1, telephony_pool_max_size=8)
    assert wide.capacity_slots == 8
    assert wide.rtp_span == (29999 - 20000 + 1) // 8
    last = wide._new_slot(7)
    assert (last.sip_port, last.rtp_port) == (5077, 20000 + 7 * wide.rtp_span)
    with pytest.raises(
        RuntimeError, match=r"HUILIU_TELEPHONY_POOL_MAX_SIZE \(2\) is below .*POOL_SIZE \(3\)"
    ):
        pool(telephony_pool_size=3, telephony_pool_max_size=2)
    with pytest.raises(
        RuntimeError, match=r"HUILIU_TELEPHONY_SIP_PORT .* falls among the worker ports 5070-5079"
    ):
        pool(telephony_pool_max_size=10, telephony_sip_port=5079)


async def test_the_pool_waits_for_mongodb_and_then_says_why_it_cannot_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool's start runs ``huiliu migrate`` in a child until MongoDB answers: a refused connection is
    retried, then named; a server that accepts and never answers does not hang the pool (the child is
    killed at the deadline)."""
    import asyncio
    import socket

    from telephony.pool import _prepare

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setenv("HUILIU_MONGO_URL", f"mongodb://127.0.0.1:{port}/?directConnection=true")
    monkeypatch.setenv("HUILIU_MONGO_TIMEOUT_MS", "300")
    with pytest.raises(RuntimeError, match=r"^MongoDB is not usable: .*Connect call failed"):
        await _prepare(attempts=2)

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        monkeypatch.setenv("HUILIU_MONGO_URL", f"mongodb://127.0.0.1:{silent.getsockname()[1]}/")
        monkeypatch.setenv("HUILIU_MONGO_TIMEOUT_MS", "60000")
        started = asyncio.get_running_loop().time()
        with pytest.raises(
            RuntimeError, match=r"^MongoDB is not usable: huiliu migrate did not finish within 3 s$"
        ):
            await _prepare(attempts=1, within=3)
        assert asyncio.get_running_loop().time() - started < 10
    finally:
        silent.close()
