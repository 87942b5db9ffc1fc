"""Journey 1 of DESIGN.md, end to end, with real parts only: call → IVR → speech → ticket + SMS → queue →
the agent's desktop pops the whole history → the web softphone carries both voices → wrap-up → the timeline
tells it in order.

Processes (all on loopback, inside a network namespace that has only ``lo`` — WebRTC media must stay on
127.0.0.1; see test_journey_call.py): embedded MongoDB and redis-server, ``huiliu web``, ``huiliu worker``
(Celery: the SMS goes out through it), ``huiliu telephony`` (Kamailio + a pjsua2 worker running the shipped
IVR, made open around the clock), a pjsua2 caller (tests/telephony/peer.py) and headless chromium on the
agent desktop with a fake microphone.

The customer texted us the day before; then calls, hears the Mandarin greeting, presses 9 (English) and 1
(after-sales), says "I want to return order number 1 2 3 4 5" (espeak-ng), then holds a 440 Hz tone so what
reaches the agent can be measured; the agent's microphone is a 1000 Hz tone. (Spoken Mandarin is not used:
espeak-ng's Mandarin is beyond the packaged whisper base model — "我要退货，订单号 12345" comes back as
"我要追华殿堂奥十二千三百四十五" at confidence 0.43 — so a real Mandarin speaker or a vosk zh model is needed
for that; the English path proves the same chain.) Prints one JSON line with everything the test checks.

    unshare -n -- .venv/bin/python tests/journeys/call_to_agent.py --workdir /tmp/journey1
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from core.embedded import free_port, start_mongo, start_redis  # noqa: E402
from ivr_flows.service import SHIPPED_DIR  # noqa: E402
from tests.asr.speech import speaker  # noqa: E402
from tests.journeys.processes import (  # noqa: E402
    SMS_SECRET,
    environment,
    signed_sms,
    start_processes,
    stop_processes,
)
from tests.softphone.scenario import (  # noqa: E402
    AGENT_HZ,
    AGENT_SPECTRUM,
    CALLER_HZ,
    TONES,
    call_api,
    heard,
    login,
    open_page,
    tone_wav,
    until_ready,
)
from tests.telephony.node import PEER, start_node, stop_node  # noqa: E402

CALLER = "13800138000"
SAID = "I want to return order number 1 2 3 4 5"
MAIN = (SHIPPED_DIR / "main.yaml").read_text(encoding="utf-8")
ALWAYS_OPEN = MAIN.replace(
    '    hours:\n      mon-fri: "08:00-22:00"\n      sat-sun: "09:00-18:00"\n'
    "    holidays: [2026-01-01, 2026-02-17, 2026-02-18, 2026-10-01, 2026-10-02]\n",
    '    hours: {mon-sun: "00:00-24:00"}\n',
)
KEYS = (
    "9@5.0",
    "1@9.0",
)  # seconds after the answer: English, then after-sales, both during the menu (barge-in)
SAY_AT = 19.0  # after the after-sales question has been asked
CALL_SECONDS = 75


def caller_audio(workdir: Path) -> Path:
    """What the caller plays: the sentence, two seconds of silence (end of utterance), then a steady tone."""
    speech = speaker(workdir)(SAID, voice="en-us", speed=140)
    tone_file = tone_wav(workdir / "caller-tone.wav", CALLER_HZ, rate=16_000, seconds=50.0)
    with wave.open(str(tone_file), "rb") as source:
        tone = source.readframes(source.getnframes())
    path = workdir / "caller-says.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(speech + bytes(2 * 16_000 * 2) + tone)
    return path


async def run(workdir: Path) -> dict[str, Any]:
    mongo = start_mongo(workdir / "mongo", free_port(), workdir / "mongo.log")
    redis = start_redis(workdir / "redis", free_port(), workdir / "redis.log")
    node = None
    processes: list[subprocess.Popen[bytes]] = []
    try:
        node = start_node(
            workdir / "telephony",
            mongo,
            redis,
            pool_size=1,
            telephony_router="ivr_flows.line:router",
            ivr_flow_poll_seconds="1",
            sms_webhook_secret=SMS_SECRET,
        )
        web_port = free_port()
        env = environment(mongo.url, redis.url, node.db_name, workdir / "web", web_port)
        processes = start_processes(workdir, env)
        base = f"http://127.0.0.1:{web_port}"
        speech = caller_audio(workdir)
        agent_mic = tone_wav(workdir / "agent-mic.wav", AGENT_HZ)
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
                json={"skills": {"after_sales": 3, "general": 2}},
            )
            await call_api(
                http,
                "POST",
                base + "/api/flows/main/versions",
                admin,
                json={"yaml": ALWAYS_OPEN, "activate": True},
            )
            # yesterday's text message: the customer's history before the call
            raw, headers = signed_sms(
                {"id": "sms-journey-1", "from": CALLER, "to": "10690000", "text": "你好，请问退货要多久？"}
            )
            async with http.post(base + "/api/sms/inbound", data=raw, headers=headers) as reply:
                assert reply.status == 200, await reply.text()
            await asyncio.sleep(2.0)  # the worker loads the new version (bus, else its 1 s poll)

            errors: list[str] = []
            async with async_playwright() as playwright:
                page = await open_page(playwright, base, "/desktop", agent, agent_mic, errors)
                await page.click("#state-available")
                (workdir / "caller").mkdir()
                caller = await asyncio.create_subprocess_exec(
                    sys.executable, str(PEER), "--workdir", str(workdir / "caller"),
                    "--target", f"sip:4008001234@127.0.0.1:{node.sip_port}", "--caller", CALLER,
                    *[arg for key in KEYS for arg in ("--keys", key)],
                    "--say", str(speech), "--say-at", str(SAY_AT),
                    "--seconds", str(CALL_SECONDS),
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                started = time.monotonic()
                # the offer pops with the whole history; read what the agent sees before answering
                await page.wait_for_selector("#offer-accept", timeout=60_000)
                offered_after = time.monotonic() - started
                pop_text = await page.text_content("#offer") or ""
                side_text = await page.text_content("body") or ""
                await page.screenshot(path=str(workdir / "journey-offer.png"))
                await page.click("#offer-accept")
                await page.wait_for_function("window.huiliuSoftphone.state() === 'connected'")
                connected_at = time.monotonic() - started
                samples = []
                for _ in range(8):
                    await asyncio.sleep(0.5)
                    samples.append(await page.evaluate(AGENT_SPECTRUM, list(TONES)))
                talk = (connected_at + 1.0, time.monotonic() - started)
                # the agent hangs up and wraps up with a code
                await page.click("#phone-hangup")
                await page.wait_for_selector("#wrap-up-submit")
                await page.locator("#wrap-up input[type=checkbox]").first.check()
                await page.click("#wrap-up-submit")
                await page.wait_for_function("!document.querySelector('#wrap-up-submit')", timeout=15_000)
                await page.screenshot(path=str(workdir / "journey-wrapped.png"))
                out, err = await asyncio.wait_for(caller.communicate(), CALL_SECONDS + 30)
            lines = [line for line in out.decode().splitlines() if line.startswith("{")]
            caller_report = json.loads(lines[-1]) if lines else {"stderr": err.decode()[-3000:]}
            customers = await call_api(http, "GET", f"{base}/api/customers?q={CALLER}", admin)
            customer = customers["customers"][0]
            timeline = await call_api(
                http, "GET", f"{base}/api/customers/{customer['id']}/timeline?limit=200", admin
            )
            tickets = await call_api(http, "GET", f"{base}/api/tickets?customer_id={customer['id']}", admin)
            sms = await call_api(http, "GET", f"{base}/api/sms/sink?to=%2B86{CALLER}", admin)
        return {
            "offered_after_seconds": round(offered_after, 1),
            "connected_after_seconds": round(connected_at, 1),
            "pop_text": pop_text,
            "page_text": side_text[:20_000],
            "agent_heard": samples,
            "caller": caller_report,
            "caller_heard": heard(workdir / "caller" / "call-heard.wav", talk[0], talk[1]),
            "timeline": [
                {
                    "kind": event["kind"],
                    "channel": event["channel"],
                    "ts": event["ts"],
                    "body": event.get("body", {}),
                }
                for event in reversed(timeline["events"])
            ],
            "tickets": tickets["tickets"],
            "sms": sms,
            "page_errors": errors,
        }
    finally:
        stop_processes(processes)
        if node is not None:
            stop_node(node)
        redis.stop()
        mongo.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)  # a fresh namespace starts with lo down
    print(json.dumps(asyncio.run(run(workdir)), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
