"""The web softphone calling out, end to end in the browser: the agent types a number on the desktop and
clicks Dial (the page's real softphone provider), the customer's phone rings and answers, both hear each
other, the keypad's keys reach the customer as RFC 2833, the agent hangs up and is in wrap-up, and the call
is on the customer's timeline (outbound_scenario.py does the work inside a network namespace that has only
loopback)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.telephony.node import sip_tools_missing

SCENARIO = Path(__file__).resolve().parent / "outbound_scenario.py"
PRESENT_DB = -50.0  # a tone at the browser's analyser well above the noise floor (see test_softphone_media)
ABSENT_DB = -70.0


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> dict:
    missing = sip_tools_missing() or (None if shutil.which("unshare") else "needs unshare (util-linux)")
    assert missing is None, missing
    workdir = tmp_path_factory.mktemp("outbound")
    run = subprocess.run(
        ["unshare", "--net", "--", sys.executable, str(SCENARIO), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0 and lines, f"scenario failed ({run.returncode}):\n{run.stderr[-4000:]}"
    report: dict = json.loads(lines[-1])
    (workdir / "report.json").write_text(json.dumps(report, indent=2))
    artifacts = Path(__file__).resolve().parents[2] / "var" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    if (workdir / "desktop-outbound.png").exists():
        shutil.copy(workdir / "desktop-outbound.png", artifacts / "desktop-outbound.png")
    return report


def test_the_dial_button_works_with_the_page_own_softphone_and_the_keypad_waits_for_a_call(
    journey: dict,
) -> None:
    assert journey["dial_enabled"] is True
    assert journey["keypad_enabled_before_a_call"] is False
    assert journey["page_errors"] == []


def test_the_agent_is_on_the_call_at_once_and_the_softphone_attaches_while_it_rings(journey: dict) -> None:
    assert journey["call_id"]
    assert journey["status_text"].startswith("通话中"), journey["status_text"]
    assert journey["marks"]["softphone_connected"] < 10, journey["marks"]


def test_the_customer_answers_and_both_hear_each_other(journey: dict) -> None:
    # the customer's phone sends 440 Hz, the agent's fake microphone 1000 Hz, both at half scale
    for sample in journey["agent_heard"][1:]:
        heard = dict(zip((440.0, 1000.0, 2000.0), sample["dB"], strict=True))
        assert sample["state"] == "connected", sample
        assert heard[440.0] > PRESENT_DB and heard[1000.0] < ABSENT_DB, heard
    customer = journey["customer"]["in1"]
    assert customer["connected"], customer
    assert journey["customer_heard"]["agent_tone_median"] > 3000, journey["customer_heard"]


def test_the_keypad_keys_reach_the_customer_as_rfc2833(journey: dict) -> None:
    customer = journey["customer"]["in1"]
    assert customer["dtmf"] == "1#5" and customer["dtmf_methods"] == ["rfc2833"], customer


def test_hanging_up_ends_the_call_puts_the_agent_in_wrap_up_and_the_call_is_on_the_timeline(
    journey: dict,
) -> None:
    assert journey["agent_state"] == "话后整理"
    contact = journey["contact"]
    assert contact["queue"] == "outbound" and contact["status"] == "ended", contact
    events = sorted(journey["timeline"]["events"], key=lambda event: event["ts"])
    assert [event["kind"] for event in events] == [
        "call.started",
        "contact.connected",
        "call.answered",
        "call.ended",
    ]
    started, connected, _, ended = events
    assert started["body"]["direction"] == "outbound" and started["body"]["called"] == journey["number"]
    assert connected["actor"]["type"] == "agent"
    assert ended["body"]["cause"] == "agent_hangup" and ended["body"]["talk_seconds"] > 3
    assert {event["conversation_id"] for event in events} == {contact["conversation_id"]}
