"""Journey: an agent calls a customer out from the desktop softphone, they hear each other, the agent keys
digits and hangs up.

Real parts only: embedded MongoDB and redis-server, ``huiliu web`` (aiortc in it), ``huiliu telephony``
(Kamailio + a pjsua2 worker), the customer's phone — a pjsua2 phone (tests/telephony/peer.py) registered at
the SIP front as a mobile number, ringing 2 s before it answers, sending a 440 Hz tone — and headless
chromium on /desktop with the page's own softphone (``/static/softphone-provider.js``), whose fake microphone
sends a 1000 Hz tone.

WebRTC media must stay on loopback: run it inside a network namespace that has only ``lo``, as
scenario.py. Prints one JSON line with what each side heard and saw.

    unshare -n -- .venv/bin/python tests/softphone/outbound_scenario.py --workdir /tmp/outbound
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import async_playwright

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from core.embedded import free_port, start_mongo, start_redis  # noqa: E402
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

ANSWER_AFTER = 2.0  # the customer's phone rings this long


async def run(workdir: Path) -> dict[str, Any]:
    mongo = start_mongo(workdir / "mongo", free_port(), workdir / "mongo.log")
    redis = start_redis(workdir / "redis", free_port(), workdir / "redis.log")
    node = None
    web = None
    phone = None
    try:
        node = start_node(workdir / "telephony", mongo, redis, pool_size=1)
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
        number = "139" + str(uuid.uuid4().int)[:8]
        phone_dir = workdir / "customer"
        phone_dir.mkdir()
        phone = await asyncio.create_subprocess_exec(
            sys.executable, str(PEER), "--workdir", str(phone_dir), "--register", node.front,
            "--caller", "+86" + number, "--answer-after", str(ANSWER_AFTER), "--tone-hz", str(int(CALLER_HZ)),
            "--until-hangup", "--seconds", "60",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert phone.stdout is not None
        while (line := await asyncio.wait_for(phone.stdout.readline(), 20)) and line.strip() != b"listening":
            pass
        base = f"http://127.0.0.1:{web_port}"
        async with aiohttp.ClientSession() as http:
            await until_ready(http, base)
            agent = await login(http, base, "agent1", "agent1-demo")
            errors: list[str] = []
            marks: dict[str, float] = {}
            async with async_playwright() as playwright:
                page = await open_page(
                    playwright, base, "/desktop", agent, tone_wav(workdir / "agent-mic.wav", AGENT_HZ), errors
                )
                await page.click("#state-available")
                await page.wait_for_function("document.querySelector('#phone-dial') !== null")
                dial_enabled = await page.is_enabled("#phone-dial")
                keypad_before = await page.is_enabled("#softphone .keypad button")
                await page.fill("#dial-number", f"{number[:3]} {number[3:7]} {number[7:]}")
                started = time.monotonic()
                await page.click("#phone-dial")
                await page.wait_for_function("window.huiliuSoftphone.state() === 'connected'")
                marks["softphone_connected"] = time.monotonic() - started
                call_id = await page.evaluate("window.huiliuSoftphone.callId()")
                status_text = await page.text_content("#phone-status")
                await asyncio.sleep(ANSWER_AFTER + 1.5)  # the customer answers; their voice comes through
                spectrum = []
                for _ in range(6):
                    await asyncio.sleep(0.5)
                    spectrum.append(await page.evaluate(AGENT_SPECTRUM, list(TONES)))
                keypad = page.get_by_role("group", name="拨号键盘")
                for key in ("1", "#", "5"):
                    await keypad.get_by_role("button", name=key, exact=True).click()
                await asyncio.sleep(1.5)  # the keys go out one at a time (the server paces them)
                await page.screenshot(path=str(workdir / "desktop-outbound.png"))
                await page.click("#phone-hangup")
                marks["hung_up"] = time.monotonic() - started
                await page.wait_for_function("window.huiliuSoftphone.callId() === null")
                agent_state = await page.text_content("#agent-state")
            out, err = await asyncio.wait_for(phone.communicate(), 30)
            lines = [line for line in out.decode().splitlines() if line.startswith("{")]
            customer = json.loads(lines[-1]) if lines else {"stderr": err.decode()[-2000:]}
            mine = await call_api(http, "GET", base + "/api/desktop/me/contacts", agent)
            contact = next((c for c in mine if c["external_ref"] == call_id), None)
            timeline = (
                await call_api(http, "GET", f"{base}/api/customers/{contact['customer_id']}/timeline", agent)
                if contact
                else None
            )
        return {
            "number": "+86" + number,
            "call_id": call_id,
            "dial_enabled": dial_enabled,
            "keypad_enabled_before_a_call": keypad_before,
            "status_text": status_text,
            "marks": marks,
            "agent_heard": spectrum,
            "customer": customer,
            "customer_heard": heard(phone_dir / "in1-heard.wav", 0.5, 4.0),
            "contact": contact,
            "timeline": timeline,
            "agent_state": agent_state,
            "page_errors": errors,
        }
    finally:
        if phone is not None and phone.returncode is None:
            phone.kill()
            await phone.wait()
        if web is not None:
            web.terminate()
            web.wait(20)
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
    print(json.dumps(asyncio.run(run(workdir)), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
