"""A voicemail on a full disk, with real parts: ``huiliu telephony`` runs the IVR in a mount namespace of its
own (``unshare -m``) whose recordings directory is a 512 KiB tmpfs, and a pjsua2 caller (``peer.py``)
leaves a message while the test fills that filesystem (through ``/proc/<pid>/root``).

What the caller relies on: the call goes on — the next prompt is heard, a key still moves through the
menu, their hang-up ends the call — and nothing crashes. What an admin relies on: the loss is visible (a
``call.recording_failed`` event on the customer's timeline, the recording's metadata with ``status:
failed`` and the error in ``GET /api/recordings``, one precise error line in the worker's log). And once
there is space again, the next message is recorded whole.
"""

from __future__ import annotations

import asyncio
import errno
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from core.app import build_app
from core.db import Database
from core.embedded import EmbeddedServer
from core.settings import load_settings
from ivr_flows import create_flow_service
from tests.conftest import ApiClient, wait_until_ready
from tests.telephony.node import PEER, Node, sip_tools_missing, start_node, stop_node

pytestmark = pytest.mark.slow

TMPFS_BYTES = 512 * 1024
MESSAGE_SECONDS = 2  # the flow's max_seconds
# seconds after the answer: the message prompt, tone and 2 s recording end by ~5 s, the menu then waits 10 s
PRESS_ONE_AT = 9.0
HANG_UP_AT = 14.0
FLOW = f"""\
description: Leave a message, then a menu (the recording-fault tests)
language: en
start: leave_message
nodes:
  leave_message:
    type: voicemail
    prompt: {{say: "Please leave a message after the tone."}}
    max_seconds: {MESSAGE_SECONDS}
    next: after_message
  after_message:
    type: menu
    prompt: {{say: "Thank you. Press 1 to hear this again."}}
    choices: {{1: pressed_one}}
    timeout: 10
    retries: 3
    on_failure: goodbye
  pressed_one:
    type: play
    prompt: {{say: "You pressed one."}}
    next: after_message
  goodbye:
    type: hangup
    prompt: {{say: "Goodbye."}}
"""


class RecordingsDisk:
    """The node's recordings tmpfs, seen from outside its mount namespace."""

    def __init__(self, node: Node, inside: Path) -> None:
        self.path = Path(f"/proc/{node.process.pid}/root") / inside.relative_to("/")
        assert shutil.disk_usage(self.path).total == TMPFS_BYTES, "the recordings tmpfs is not mounted"
        self.filler = self.path / "filler.bin"

    def free(self) -> int:
        return shutil.disk_usage(self.path).free

    def fill(self, leave: int) -> None:
        """Fill the filesystem up, then give back ``leave`` bytes."""
        self.filler.unlink(missing_ok=True)
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, bytes(64 * 1024))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)
        if leave:
            os.truncate(self.filler, self.filler.stat().st_size - leave)
        assert abs(self.free() - leave) < 4096, (self.free(), leave)

    def make_room(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def message_line(
    mongo_server: EmbeddedServer, redis_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Node, RecordingsDisk]]:
    missing = sip_tools_missing() or (None if shutil.which("unshare") else "needs unshare (util-linux)")
    if missing:
        pytest.skip(missing)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs in a mount namespace needs root")
    workdir = tmp_path_factory.mktemp("recording-faults")
    recordings = workdir / "recordings"
    recordings.mkdir()
    db_name = f"t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_install_flow(mongo_server.url, db_name))
    mount = f'mount -t tmpfs -o size={TMPFS_BYTES} huiliu-recordings "{recordings}" && exec "$0" "$@"'
    node = start_node(
        workdir / "node",
        mongo_server,
        redis_server,
        pool_size=1,
        db_name=db_name,
        prefix=("unshare", "--mount", "--propagation", "private", "sh", "-c", mount),
        telephony_router="ivr_flows.line:router",
        ivr_lines="*=message_line",
        telephony_recordings_dir=str(recordings),
    )
    try:
        yield node, RecordingsDisk(node, recordings)
    finally:
        stop_node(node)


async def _install_flow(mongo_url: str, db_name: str) -> None:
    db = Database.connect(mongo_url, db_name, 5000)
    try:
        await create_flow_service(db, None).upload("message_line", FLOW, "test", activate=True)
    finally:
        await db.close()


def leave_message(node: Node, caller: str, workdir: Path) -> dict[str, Any]:
    """A caller who talks (a 440 Hz tone) through the message, presses 1 in the menu, then hangs up; the
    call's document, its timeline and the WAV of what the caller heard."""
    workdir.mkdir()
    args = ["--workdir", str(workdir), "--target", f"sip:1000@{node.front}", "--caller", caller]
    args += ["--tone-hz", "440", "--keys", f"1@{PRESS_ONE_AT}", "--hangup-at", str(HANG_UP_AT)]
    result = subprocess.run(
        [sys.executable, str(PEER), *args, "--seconds", str(HANG_UP_AT + 10)],
        capture_output=True,
        text=True,
        timeout=HANG_UP_AT + 60,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"peer failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    heard = json.loads(lines[-1])["call"]
    assert heard["connected"], heard
    calls = node.calls_from("+86" + caller)
    assert len(calls) == 1, calls
    call_id = calls[0]["_id"]
    try:
        events = node.wait_for(
            lambda: (found := node.events(call_id)) and finished(found) and found,
            within=20,
            what="call.ended and the flow's last step on the timeline",
        )
    except AssertionError as exc:
        so_far = [(event["kind"], event["body"]) for event in node.events(call_id)]
        raise AssertionError(f"{exc}; the caller: {heard}; the timeline: {so_far}") from None
    return {"call": node.call_doc(call_id), "events": events, "heard": workdir / "call-heard.wav"}


def finished(events: list[dict[str, Any]]) -> bool:
    """The call ended, and the flow noticed (its last step, written just after the end)."""
    kinds = [event["kind"] for event in events]
    return "call.ended" in kinds and any(event["body"].get("result") == "hung_up" for event in events)


def rms_between(path: Path, start: float, end: float) -> float:
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        wav.setpos(min(int(start * rate), wav.getnframes()))
        data = wav.readframes(int((end - start) * rate))
    count = len(data) // 2
    if not count:
        return 0.0
    values = struct.unpack(f"<{count}h", data[: count * 2])
    return math.sqrt(sum(v * v for v in values) / count)


def steps(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(node, result) of each IVR step, in order."""
    return [
        (event["body"]["node"], event["body"]["result"]) for event in events if event["kind"] == "ivr.step"
    ]


def assert_the_call_went_on(outcome: dict[str, Any]) -> None:
    """After the message: the menu prompt was heard, the key 1 was taken, the caller's hang-up ended it."""
    events = outcome["events"]
    kinds = [event["kind"] for event in events]
    assert kinds[:2] == ["call.started", "call.answered"], kinds
    assert kinds.count("call.started") == 1 and kinds.count("call.ended") == 1, kinds
    walked = steps(events)
    assert walked[0] == ("leave_message", "recorded"), walked
    assert ("after_message", "chose 1") in walked, (
        f"the key pressed after the message was not taken: {walked}"
    )
    assert walked[walked.index(("after_message", "chose 1")) + 1][0] == "pressed_one", walked
    ended = next(event["body"] for event in events if event["kind"] == "call.ended")
    assert ended["cause"] == "caller_hangup", ended
    assert ended["talk_seconds"] >= HANG_UP_AT - 0.5, ended
    # prompts after the message (the menu, "you pressed one") reached the caller's ear
    after_message = rms_between(outcome["heard"], MESSAGE_SECONDS + 4.0, HANG_UP_AT)
    assert after_message > 300, f"the caller heard nothing after the message (RMS {after_message:.0f})"


def message_step(events: list[dict[str, Any]]) -> dict[str, Any]:
    found = [
        e["body"] for e in events if e["kind"] == "ivr.step" and e["body"].get("node") == "leave_message"
    ]
    assert len(found) == 1, found
    return found[0]


def test_a_message_left_on_a_full_disk_is_flagged_and_the_call_goes_on(
    message_line: tuple[Node, RecordingsDisk], tmp_path: Path
) -> None:
    node, disk = message_line
    workers = node.worker_pids()
    disk.fill(leave=0)
    caller = "139" + str(uuid.uuid4().int)[:8]
    outcome = leave_message(node, caller, tmp_path / "caller")

    assert_the_call_went_on(outcome)
    assert node.process.poll() is None and node.worker_pids() == workers, "a process died of the full disk"
    call_id = outcome["call"]["_id"]
    failed = [event for event in outcome["events"] if event["kind"] == "call.recording_failed"]
    assert len(failed) == 1 and not any(e["kind"] == "call.recorded" for e in outcome["events"])
    body = failed[0]["body"]
    assert body["error"] == "disk_full" and body["duration_seconds"] == 0.0, body
    assert body["recorded_seconds"] >= MESSAGE_SECONDS - 0.5, body
    assert "no space left" in body["detail"] and "0 bytes free" in body["detail"], body
    assert message_step(outcome["events"])["input"]["error"] == "disk_full"
    recording = node.mongo().recordings.find_one({"call_id": call_id})
    assert recording["status"] == "failed" and recording["error"] == "disk_full", recording
    log_lines = [line for line in node.log("telephony-w0.log").splitlines() if call_id in line]
    assert any("call.recording_failed" in line and "disk_full" in line for line in log_lines), log_lines

    # what an admin reads: the failed recordings, with their error
    listed = asyncio.run(admin_reads_recordings(node, "?status=failed"))
    mine = [item for item in listed if item["call_id"] == call_id]
    assert len(mine) == 1 and mine[0]["error"] == "disk_full", listed
    assert mine[0]["error_detail"] == body["detail"]


def test_a_disk_filling_up_during_a_message_keeps_what_fitted_and_flags_the_loss(
    message_line: tuple[Node, RecordingsDisk], tmp_path: Path
) -> None:
    node, disk = message_line
    disk.fill(leave=16 * 1024)  # half a second of 16 kHz audio
    caller = "139" + str(uuid.uuid4().int)[:8]
    outcome = leave_message(node, caller, tmp_path / "caller")

    assert_the_call_went_on(outcome)
    recording = node.mongo().recordings.find_one({"call_id": outcome["call"]["_id"]})
    assert recording["status"] == "failed" and recording["error"] == "disk_full", recording
    # what fitted is kept, a readable WAV (pjmedia wrote its header over the short file)
    assert 0.2 <= recording["duration_seconds"] <= 0.6, recording
    with wave.open(str(disk.path / Path(recording["path"]).relative_to(disk_root(node))), "rb") as wav:
        assert wav.getframerate() == 16000 and wav.getnframes() >= 0.2 * 16000


def test_once_there_is_space_again_the_next_message_is_recorded_whole(
    message_line: tuple[Node, RecordingsDisk], tmp_path: Path
) -> None:
    node, disk = message_line
    disk.fill(leave=0)
    disk.make_room()
    caller = "139" + str(uuid.uuid4().int)[:8]
    outcome = leave_message(node, caller, tmp_path / "caller")

    assert_the_call_went_on(outcome)
    recorded = [event for event in outcome["events"] if event["kind"] == "call.recorded"]
    assert len(recorded) == 1 and "error" not in recorded[0]["body"], outcome["events"]
    recording = node.mongo().recordings.find_one({"call_id": outcome["call"]["_id"]})
    assert recording["status"] == "complete" and recording["error"] is None, recording
    assert abs(recording["duration_seconds"] - MESSAGE_SECONDS) <= 0.3, recording
    # the caller's voice (the tone) is in it
    path = disk.path / Path(recording["path"]).relative_to(disk_root(node))
    assert rms_between(path, 0.2, MESSAGE_SECONDS - 0.2) > 1000


def disk_root(node: Node) -> Path:
    return Path(node.env["HUILIU_TELEPHONY_RECORDINGS_DIR"])


async def admin_reads_recordings(node: Node, query: str) -> list[dict[str, Any]]:
    """``GET /api/recordings`` as the admin, from a web app on the node's database."""
    settings = load_settings(
        environ={},
        mongo_url=node.mongo_url,
        redis_url=node.env["HUILIU_REDIS_URL"],
        db_name=node.db_name,
        data_dir=node.workdir / "web",
        secret_key="test-secret-key-not-for-production",
    )
    server = TestServer(build_app(settings), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        await wait_until_ready(base)
        async with aiohttp.ClientSession() as session:
            admin = await ApiClient(session, base).as_user("admin", "admin-demo")
            status, listed, _ = await admin.request("GET", "/api/recordings" + query)
            assert status == 200, listed
            agent = await ApiClient(session, base).as_user("agent1", "agent1-demo")
            status, _, _ = await agent.request("GET", "/api/recordings")
            assert status == 403, "an agent must not list recordings"
        result: list[dict[str, Any]] = listed
        return result
    finally:
        await server.close()
