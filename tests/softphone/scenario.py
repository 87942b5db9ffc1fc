"""Journey: a SIP caller reaches an agent who answers on the web softphone, and both hear each other.

Real parts only: embedded MongoDB and redis-server, ``huiliu web`` (aiortc in it), ``huiliu telephony``
(Kamailio + a pjsua2 worker running the IVR), a pjsua2 caller (tests/telephony/peer.py) sending a 440 Hz
tone, and headless chromium whose fake microphone sends a 1000 Hz tone through ``/static/softphone.js``.

WebRTC media must stay on loopback, so this runs inside a network namespace that has only ``lo``
(``unshare -n``; see test_softphone_media.py) and the web process offers 127.0.0.1 host candidates
(``HUILIU_WEBRTC_HOST_ADDRESSES``). Prints one JSON line with what each side heard.

    unshare -n -- .venv/bin/python tests/softphone/scenario.py --workdir /tmp/softphone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import async_playwright

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from core.bus import EventBus, connect_redis  # noqa: E402
from core.embedded import free_port, start_mongo, start_redis  # noqa: E402
from ivr_flows import FakeCall  # noqa: E402
from ivr_flows.transcript import CallTranscript  # noqa: E402
from ivr_flows.understanding import Transcribed  # noqa: E402
from tests.telephony.node import PEER, start_node, stop_node  # noqa: E402

CALLER_HZ = 440.0
AGENT_HZ = 1000.0
SUPERVISOR_HZ = 2000.0
TONES = (CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ)
CALL_SECONDS = 22
LINE = "7000"
FLOW = """
description: softphone journey
language: zh
start: to_agent
nodes:
  to_agent:
    type: queue
    queue: general
    skills: [general]
    max_wait: 60
    overflow: bye
  bye:
    type: hangup
"""

BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]

AGENT_SPECTRUM = (
    "(tones) => ({dB: window.huiliuSoftphone.spectrum(tones), state: window.huiliuSoftphone.state()})"
)
SUPERVISOR_SPECTRUM = """
(tones) => ({dB: window.huiliuSupervise.phone.spectrum(tones),
             state: window.huiliuSupervise.phone.pc && window.huiliuSupervise.phone.pc.connectionState})
"""


def tone_wav(path: Path, hz: float, rate: int = 48000, seconds: float = 2.0) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = (
            int(0.5 * 32767 * math.sin(2 * math.pi * hz * n / rate)) for n in range(int(rate * seconds))
        )
        out.writeframes(b"".join(struct.pack("<h", value) for value in frames))
    return path


def goertzel(samples: list[int], rate: int, hz: float) -> float:
    """Amplitude (RMS-like) of one frequency in ``samples``."""
    k = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for value in samples:
        s1, s2 = value + k * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - k * s1 * s2
    return math.sqrt(max(power, 0.0)) / len(samples) * math.sqrt(2) if samples else 0.0


def heard(path: Path, start: float, end: float) -> dict[str, float]:
    """What the caller heard between ``start`` and ``end`` seconds into its call: RMS, and the amplitude (as
    RMS) of each test tone — over the whole span, and the loudest and the median of its half-second pieces
    (a tone that got through shows in its loudest piece; one that did not stays low in the median even if
    a burst of line noise passes by)."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        data = wav.readframes(wav.getnframes())
    values = list(struct.unpack(f"<{len(data) // 2}h", data))[int(rate * start) : int(rate * end)]
    rms = math.sqrt(sum(v * v for v in values) / len(values)) if values else 0.0
    pieces = [values[at : at + rate // 2] for at in range(0, len(values) - rate // 2 + 1, rate // 2)] or [
        values
    ]
    report = {"rms": round(rms, 1), "seconds": round(len(values) / rate, 2)}
    for name, hz in (
        ("caller_tone", CALLER_HZ),
        ("agent_tone", AGENT_HZ),
        ("supervisor_tone", SUPERVISOR_HZ),
    ):
        levels = sorted(goertzel(piece, rate, hz) for piece in pieces)
        report[name] = round(goertzel(values, rate, hz), 1)
        report[f"{name}_max"] = round(levels[-1], 1)
        report[f"{name}_median"] = round(levels[len(levels) // 2], 1)
    return report


async def open_page(
    playwright: Any, base: str, path: str, token: str, microphone: Path, errors: list[str]
) -> Any:
    """A chromium of its own (the fake microphone is per browser process) on ``path``, signed in."""
    browser = await playwright.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=[*BROWSER_ARGS, f"--use-file-for-fake-audio-capture={microphone}"],
    )
    context = await browser.new_context(
        base_url=base, locale="zh-CN", viewport={"width": 1366, "height": 768}
    )
    context.set_default_timeout(20_000)
    await context.add_init_script(f"sessionStorage.setItem('huiliu.token', {json.dumps(token)})")
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(path)
    return page


async def run(workdir: Path) -> dict[str, Any]:
    mongo = start_mongo(workdir / "mongo", free_port(), workdir / "mongo.log")
    redis = start_redis(workdir / "redis", free_port(), workdir / "redis.log")
    node = None
    web = None
    try:
        node = start_node(
            workdir / "telephony",
            mongo,
            redis,
            pool_size=1,
            telephony_router="ivr_flows.line:router",
            ivr_lines=f"{LINE}=softphone,*=main",
            ivr_flow_poll_seconds="1",
        )
        web_port = free_port()
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith("HUILIU_")},
            "PYTHONPATH": str(REPO),
            "HUILIU_MONGO_URL": mongo.url,
            "HUILIU_REDIS_URL": redis.url,
            "HUILIU_DB_NAME": node.db_name,
            "HUILIU_DATA_DIR": str(workdir / "web"),
            "HUILIU_SECRET_KEY": "test-secret-key-not-for-production",
            "HUILIU_WEB_PORT": str(web_port),
            "HUILIU_WEBRTC_HOST_ADDRESSES": "127.0.0.1",
        }
        with (workdir / "web.log").open("w") as log:
            web = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything awaits it
                [sys.executable, "-m", "core.cli", "web"], cwd=workdir, env=env, stdout=log, stderr=log
            )
        base = f"http://127.0.0.1:{web_port}"
        async with aiohttp.ClientSession() as http:
            await until_ready(http, base)
            admin = await login(http, base, "admin", "admin-demo")
            agent = await login(http, base, "agent1", "agent1-demo")
            me = await call_api(http, "GET", base + "/api/desktop/me", agent)
            await call_api(
                http,
                "PUT",
                f"{base}/api/desktop/agents/{me['user_id']}/skills",
                admin,
                json={"skills": {"general": 3}},
            )
            await call_api(
                http,
                "POST",
                base + "/api/flows/softphone/versions",
                admin,
                json={"yaml": FLOW, "activate": True},
            )
            await asyncio.sleep(2.0)  # the worker picks the new flow up (bus, else its 1 s poll)

            supervisor = await login(http, base, "supervisor", "supervisor-demo")
            agent_mic = tone_wav(workdir / "agent-mic.wav", AGENT_HZ)
            supervisor_mic = tone_wav(workdir / "supervisor-mic.wav", SUPERVISOR_HZ)
            errors: list[str] = []
            async with async_playwright() as playwright:
                agent_page = await open_page(playwright, base, "/desktop", agent, agent_mic, errors)
                supervisor_page = await open_page(
                    playwright, base, "/wallboard", supervisor, supervisor_mic, errors
                )
                await agent_page.click("#state-available")
                caller_dir = workdir / "caller"
                caller_dir.mkdir()
                caller = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(PEER),
                    "--workdir",
                    str(caller_dir),
                    "--target",
                    f"sip:{LINE}@127.0.0.1:{node.sip_port}",
                    "--caller",
                    "13800138000",
                    "--tone-hz",
                    str(int(CALLER_HZ)),
                    "--seconds",
                    str(CALL_SECONDS),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                started = time.monotonic()
                # the offer pops on the desktop; the agent answers it; the page attaches the softphone
                await agent_page.click("#offer-accept")
                await agent_page.wait_for_function("window.huiliuSoftphone.state() === 'connected'")
                attached = {"callId": await agent_page.evaluate("window.huiliuSoftphone.callId()")}
                marks: dict[str, float] = {"agent_connected": time.monotonic() - started}

                async def sample(page: Any, script: str, seconds: float) -> list[dict[str, Any]]:
                    taken = []
                    for _ in range(int(seconds / 0.5)):
                        await asyncio.sleep(0.5)
                        taken.append(await page.evaluate(script, list(TONES)))
                    return taken

                def control(mode: str) -> str:
                    return f"#supervise button[data-call='{attached['callId']}'][data-mode='{mode}']"

                agent_alone = await sample(agent_page, AGENT_SPECTRUM, 3.0)
                # the supervisor picks the call on the wallboard's live-call list
                await supervisor_page.click(control("listen"))
                await supervisor_page.wait_for_function(
                    "window.huiliuSupervise.mode === 'listen' && window.huiliuSupervise.phone.connected"
                )
                marks["listen"] = time.monotonic() - started
                supervisor_listening = await sample(supervisor_page, SUPERVISOR_SPECTRUM, 2.0)
                # what the caller is saying reaches the listening supervisor's live transcript
                # (published as the IVR's transcriber does when it follows a whole call)
                redis_client = connect_redis(redis.url)
                said = CallTranscript(FakeCall(call_id=attached["callId"]), EventBus(redis_client))
                await said(Transcribed(final=False, body={"text": "我想问一下退款"}))
                await supervisor_page.wait_for_selector("#live-transcript .partial", timeout=5000)
                live_transcript = await supervisor_page.text_content("#live-transcript")
                await redis_client.aclose()
                notices = [await agent_page.text_content("#supervision-notice")]
                await supervisor_page.click(control("whisper"))
                await supervisor_page.wait_for_function("window.huiliuSupervise.mode === 'whisper'")
                marks["whisper"] = time.monotonic() - started
                agent_whispered = await sample(agent_page, AGENT_SPECTRUM, 3.0)
                notices.append(await agent_page.text_content("#supervision-notice"))
                await supervisor_page.click(control("barge"))
                await supervisor_page.wait_for_function("window.huiliuSupervise.mode === 'barge'")
                marks["barge"] = time.monotonic() - started
                agent_barged = await sample(agent_page, AGENT_SPECTRUM, 3.0)
                notices.append(await agent_page.text_content("#supervision-notice"))
                await agent_page.screenshot(path=str(workdir / "desktop-supervised.png"))
                await supervisor_page.screenshot(path=str(workdir / "wallboard-barge.png"))
                await supervisor_page.get_by_role("button", name="离开").click()
                marks["supervisor_left"] = time.monotonic() - started
                out, err = await asyncio.wait_for(caller.communicate(), 60)  # the caller hangs up
            lines = [line for line in out.decode().splitlines() if line.startswith("{")]
            caller_report = json.loads(lines[-1]) if lines else {"stderr": err.decode()[-2000:]}
            audit = await call_api(http, "GET", f"{base}/api/audit?target=call:{attached['callId']}", admin)
        recording = caller_dir / "call-heard.wav"
        # the caller's recording starts when its call connects, just after the peer started
        return {
            "attached": attached,
            "marks": marks,
            "agent_alone": agent_alone,
            "supervisor_listening": supervisor_listening,
            "agent_whispered": agent_whispered,
            "agent_barged": agent_barged,
            "supervision_notices": notices,
            "live_transcript": live_transcript,
            "caller": caller_report,
            "caller_before_supervisor": heard(recording, 0.5, marks["listen"] - 0.3),
            "caller_during_whisper": heard(recording, marks["whisper"] + 0.7, marks["barge"] - 0.3),
            "caller_during_barge": heard(recording, marks["barge"] + 0.7, marks["supervisor_left"] - 0.3),
            "audit": audit,
            "page_errors": errors,
        }
    finally:
        if web is not None:
            web.terminate()
            web.wait(20)
        if node is not None:
            stop_node(node)
        redis.stop()
        mongo.stop()


async def until_ready(http: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with http.get(base + "/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError("the web process did not become ready")


async def login(http: aiohttp.ClientSession, base: str, username: str, password: str) -> str:
    body = await call_api(
        http, "POST", base + "/api/auth/login", None, json={"username": username, "password": password}
    )
    return str(body["token"])


async def call_api(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None, **kwargs: Any
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers, **kwargs) as response:
        body = await response.json(content_type=None)
        if response.status >= 400:
            raise RuntimeError(f"{method} {url} → {response.status}: {body}")
        return body


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)  # a fresh namespace starts with lo down
    print(json.dumps(asyncio.run(run(workdir))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
