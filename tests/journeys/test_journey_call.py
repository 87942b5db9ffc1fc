"""Journey 1 — call → ticket → agent — end to end against real processes (call_to_agent.py runs it inside a
network namespace with only loopback, so WebRTC media stays on 127.0.0.1). Each test checks what the
person involved would check."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.telephony.node import sip_tools_missing

pytestmark = pytest.mark.slow

SCENARIO = Path(__file__).resolve().parent / "call_to_agent.py"
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts"
PRESENT_DB = -50.0


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    missing = sip_tools_missing() or (None if shutil.which("unshare") else "needs unshare (util-linux)")
    assert missing is None, missing
    workdir = tmp_path_factory.mktemp("journey1")
    run = subprocess.run(
        ["unshare", "--net", "--", sys.executable, str(SCENARIO), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=420,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0 and lines, f"journey failed ({run.returncode}):\n{run.stderr[-4000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    (workdir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for shot in ("journey-offer.png", "journey-wrapped.png"):
        if (workdir / shot).exists():
            shutil.copy(workdir / shot, ARTIFACTS / shot)
    return report


def kinds(report: dict[str, Any]) -> list[str]:
    return [event["kind"] for event in report["timeline"]]


def test_what_the_caller_said_became_a_return_ticket_with_the_order_number(journey: dict[str, Any]) -> None:
    [ticket] = [ticket for ticket in journey["tickets"] if ticket["intent"] == "return_request"]
    assert ticket["entities"].get("order_number") == "12345", ticket
    assert ticket["channel"] == "voice"
    finals = [event for event in journey["timeline"] if event["kind"] == "transcript.final"]
    assert any("return order number" in event["body"]["text"].lower() for event in finals), finals


def test_the_caller_got_an_sms_with_the_ticket_number(journey: dict[str, Any]) -> None:
    [ticket] = [ticket for ticket in journey["tickets"] if ticket["intent"] == "return_request"]
    texts = [entry["text"] for entry in journey["sms"]]
    assert any(ticket["number"] in text for text in texts), (ticket["number"], texts)


def test_the_agents_pop_showed_the_whole_history_ticket_ivr_path_and_transcript(
    journey: dict[str, Any],
) -> None:
    [ticket] = [ticket for ticket in journey["tickets"] if ticket["intent"] == "return_request"]
    page = journey["page_text"]
    assert ticket["number"] in page  # the open ticket
    assert "请问退货要多久" in page  # yesterday's SMS: history from another channel
    assert "after_sales" in page and "main_menu" in page  # the IVR path
    assert "return order number" in page.lower()  # the transcript / utterance
    assert journey["offered_after_seconds"] < 60


def test_agent_and_caller_hear_each_other_on_the_web_softphone(journey: dict[str, Any]) -> None:
    heard = [
        dict(zip((440.0, 1000.0, 2000.0), sample["dB"], strict=True)) for sample in journey["agent_heard"][1:]
    ]
    assert all(sample[440.0] > PRESENT_DB for sample in heard), heard
    caller = journey["caller_heard"]
    assert caller["agent_tone_max"] > 3000, caller


def test_the_timeline_tells_the_journey_in_order(journey: dict[str, Any]) -> None:
    order = kinds(journey)
    expected = ["message.in", "call.started", "ivr.step", "transcript.final", "ticket.created", "call.queued"]
    positions = [order.index(kind) for kind in expected]
    assert positions == sorted(positions), order
    assert "call.ended" in order and order.index("call.ended") > order.index("call.queued"), order
    assert any(kind.startswith("contact.wrap") or kind == "wrap_up" for kind in order), order
    assert journey["page_errors"] == []
