"""The web softphone end to end: a SIP caller's audio reaches the agent's browser and the browser's
microphone reaches the caller, through aiortc in the web process and the call's media tap in the telephony
worker (scenario.py does the work inside a network namespace that has only loopback)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.telephony.node import sip_tools_missing

SCENARIO = Path(__file__).resolve().parent / "scenario.py"


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> dict:
    missing = sip_tools_missing() or (None if shutil.which("unshare") else "needs unshare (util-linux)")
    assert missing is None, missing
    workdir = tmp_path_factory.mktemp("softphone")
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
    for shot in ("desktop-supervised.png", "wallboard-barge.png"):
        if (workdir / shot).exists():
            shutil.copy(workdir / shot, artifacts / shot)
    return report


ABSENT_AMPLITUDE = (
    2000.0  # a tone that reaches the caller measures ~11,000; line noise under load reaches ~900
)
PRESENT_DB = -50.0  # a tone at the analyser (2048-point FFT at 48 kHz) well above the noise floor
ABSENT_DB = -70.0


def levels(samples: list[dict], skip: int = 1) -> list[dict[float, float]]:
    """Per sample: tone (Hz) → dB at the browser, without the first ``skip`` samples (settling)."""
    return [dict(zip((440.0, 1000.0, 2000.0), sample["dB"], strict=True)) for sample in samples[skip:]]


def test_the_agent_accepts_the_offer_and_attaches_the_softphone_to_the_call(journey: dict) -> None:
    assert journey["attached"]["callId"]
    assert journey["marks"]["agent_connected"] < 15
    assert all(sample["state"] == "connected" for sample in journey["agent_alone"])
    assert journey["page_errors"] == []


def test_the_caller_and_the_agent_hear_each_other(journey: dict) -> None:
    # the caller sends 440 Hz, the agent's fake microphone 1000 Hz, both at half scale (RMS 11,585)
    for heard in levels(journey["agent_alone"]):
        assert heard[440.0] > PRESENT_DB and heard[1000.0] < ABSENT_DB and heard[2000.0] < ABSENT_DB, heard
    caller = journey["caller_before_supervisor"]
    assert journey["caller"]["call"]["connected"]
    assert caller["agent_tone_max"] > 3000, caller
    assert caller["caller_tone_median"] < ABSENT_AMPLITUDE, caller  # its own voice does not come back


def test_a_listening_supervisor_hears_both_sides_and_nobody_hears_them(journey: dict) -> None:
    for heard in levels(journey["supervisor_listening"]):
        assert heard[440.0] > PRESENT_DB and heard[1000.0] > PRESENT_DB, heard
    assert journey["caller_before_supervisor"]["supervisor_tone_median"] < ABSENT_AMPLITUDE


def test_a_listening_supervisor_reads_what_the_caller_is_saying(journey: dict) -> None:
    assert "实时转写" in journey["live_transcript"] and "我想问一下退款" in journey["live_transcript"]


def test_a_whisper_reaches_the_agent_but_not_the_caller(journey: dict) -> None:
    for heard in levels(journey["agent_whispered"]):
        assert heard[440.0] > PRESENT_DB and heard[2000.0] > PRESENT_DB, heard
    during = journey["caller_during_whisper"]
    assert during["supervisor_tone_median"] < ABSENT_AMPLITUDE and during["agent_tone_max"] > 3000, during


def test_a_barge_reaches_both_and_every_step_is_audited_and_shown_to_the_agent(journey: dict) -> None:
    for heard in levels(journey["agent_barged"]):
        assert heard[440.0] > PRESENT_DB and heard[2000.0] > PRESENT_DB, heard
    during = journey["caller_during_barge"]
    assert during["supervisor_tone_max"] > 3000 and during["agent_tone_max"] > 3000, during
    # the agent's desktop says who is listening, whispering or barging in
    listen, whisper, barge = journey["supervision_notices"]
    assert "正在监听" in listen and "耳语" in whisper and "已加入通话" in barge, journey[
        "supervision_notices"
    ]
    steps = [(entry["action"], entry["details"]["mode"]) for entry in reversed(journey["audit"])]
    assert steps[:3] == [
        ("supervise_call", "listen"),
        ("supervise_call_mode", "whisper"),
        ("supervise_call_mode", "barge"),
    ]
    assert {entry["actor"]["username"] for entry in journey["audit"]} == {"supervisor"}
