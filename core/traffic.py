"""``huiliu demo traffic``: real calls and chats against a running platform, so a newcomer sees offers pop,
tickets appear and the wallboard move.

It does what customers do, through the same doors they use: SIP calls through the SIP front (a pjsua2
caller per call, ``telephony.caller``, pressing keys and saying Mandarin made by espeak-ng), a web-chat
visitor on the widget's socket, and — when their secrets are configured — an SMS webhook signed like the
gateway's. It needs the demo tenant (``HUILIU_DEMO=true``, the default) for its admin login, and gives the
demo agents skills for the shipped queues when they have none. The line answers as in office hours
whatever the hour (an office-hours override for the demo's length, ended after it; one a supervisor set
is left alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import socketio

from core.settings import Settings

DEMO_NUMBER = "1000"
DEMO_OVERRIDE_REASON = "huiliu demo traffic"
DEMO_SKILLS = {
    "agent1": {"after_sales": 3, "general": 2, "complaints": 2, "lang_zh": 3, "webchat": 1, "wechat": 1},
    "agent2": {"general": 3, "after_sales": 1, "complaints": 1, "lang_en": 3, "lang_zh": 1, "webchat": 1},
}


@dataclass(frozen=True)
class DemoCall:
    caller: str
    keys: tuple[tuple[str, float], ...] = ()
    say: tuple[tuple[str, float], ...] = ()  # (Mandarin text, seconds after the answer)
    what: str = ""


CALLS = (
    DemoCall(
        "13800138001",
        (("1", 6.0),),
        (("我要退货，订单号 12345", 13.0),),
        "after-sales by voice: a return ticket",
    ),
    DemoCall("13800138002", (("0", 6.0),), (), "asks for an agent (key 0)"),
    DemoCall("13800138003", (("3", 6.0),), (), "a complaint (key 3): an urgent ticket"),
)
CHATS = (
    ("你好，退货需要什么条件？", "转人工"),
    ("How long does delivery take?", "I want to talk to a human"),
)


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


class DemoError(Exception):
    pass


async def traffic(
    settings: Settings, *, base: str | None, sip: str | None, calls: int, chats: int, seconds: float
) -> int:
    base = (base or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")
    sip = sip or f"{settings.telephony_sip_host}:{settings.telephony_sip_port}"
    report = Report()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            admin = await _login(http, base, "admin", "admin-demo")
        except DemoError as exc:
            print(f"demo traffic: {exc}", file=sys.stderr)
            return 2
        await _give_skills(http, base, admin, report)
        flow = _flow_of(settings, DEMO_NUMBER)
        opened = calls > 0 and flow is not None and await _open_line(http, base, admin, flow, seconds, report)
        started = time.monotonic()
        try:
            jobs = [
                asyncio.ensure_future(_call(settings, sip, call, seconds, report)) for call in CALLS[:calls]
            ]
            jobs += [asyncio.ensure_future(_chat(base, texts, report)) for texts in CHATS[:chats]]
            report.say(
                f"demo traffic: {len(jobs)} customers on their way; open {base}/desktop "
                f"(agent1 / agent1-demo) and {base}/wallboard (supervisor / supervisor-demo)"
            )
            await asyncio.gather(*jobs, return_exceptions=False)
        finally:
            if opened and flow is not None:
                with contextlib.suppress(DemoError):  # already ended by a supervisor: nothing to undo
                    await _api(http, "DELETE", f"{base}/api/flows/{flow}/hours-override", admin)
                report.say(f"  the {flow} line follows its office hours again")
        await _summary(http, base, admin, report, time.monotonic() - started)
    return 0


def _flow_of(settings: Settings, number: str) -> str | None:
    from ivr_flows.line import parse_lines

    lines = parse_lines(settings.ivr_lines)
    return lines.get(number) or lines.get("*")


async def _open_line(
    http: aiohttp.ClientSession, base: str, admin: str, flow: str, seconds: float, report: Report
) -> bool:
    """Open ``flow``'s line whatever the hour for the demo's calls; False when a supervisor's override is
    in force (theirs stands) or the flow cannot be overridden."""
    url = f"{base}/api/flows/{flow}/hours-override"
    async with http.get(url, headers={"Authorization": f"Bearer {admin}"}) as reply:
        current = await reply.json(content_type=None)
        if reply.status == 200 and current.get("reason") != DEMO_OVERRIDE_REASON:
            report.say(
                f"  the {flow} line is {current['state']} until {current['until']} ({current['reason']}, "
                f"set by {current['set_by']}): the demo calls meet that"
            )
            return False
        if reply.status not in (200, 404):
            report.say(f"  cannot check the {flow} line's office hours: {reply.status} {current}")
            return False
    minutes = math.ceil((seconds + 60) / 60)
    body = {"state": "open", "minutes": minutes, "reason": DEMO_OVERRIDE_REASON}
    await _api(http, "PUT", url, admin, json=body)
    report.say(f"  the {flow} line answers as in office hours for the next {minutes} min (an override)")
    return True


async def _login(http: aiohttp.ClientSession, base: str, username: str, password: str) -> str:
    try:
        async with http.post(
            f"{base}/api/auth/login", json={"username": username, "password": password}
        ) as reply:
            body = await reply.json(content_type=None)
    except aiohttp.ClientError as exc:
        raise DemoError(f"cannot reach the platform at {base} ({exc}); start it with `make run`") from None
    if reply.status != 200:
        raise DemoError(
            f"cannot log in as the demo {username} ({body.get('code')}); it needs HUILIU_DEMO=true"
        )
    return str(body["token"])


async def _api(http: aiohttp.ClientSession, method: str, url: str, token: str, **kwargs: Any) -> Any:
    async with http.request(method, url, headers={"Authorization": f"Bearer {token}"}, **kwargs) as reply:
        body = await reply.json(content_type=None)
        if reply.status >= 400:
            raise DemoError(f"{method} {url}: {reply.status} {body}")
        return body


async def _give_skills(http: aiohttp.ClientSession, base: str, admin: str, report: Report) -> None:
    for username, skills in DEMO_SKILLS.items():
        token = await _login(http, base, username, f"{username}-demo")
        agent = await _api(http, "GET", f"{base}/api/desktop/me", token)
        if not agent.get("skills"):
            await _api(
                http,
                "PUT",
                f"{base}/api/desktop/agents/{agent['user_id']}/skills",
                admin,
                json={"skills": skills},
            )
            report.say(f"  {username} now has skills {skills}")


async def _call(settings: Settings, sip: str, call: DemoCall, seconds: float, report: Report) -> None:
    from ivr_flows.tts import PromptRenderer

    renderer = PromptRenderer(settings.data_dir / "demo-traffic")
    args = [sys.executable, "-m", "telephony.caller", "--target", f"sip:1000@{sip}", "--caller", call.caller]
    for digits, at in call.keys:
        args += ["--keys", f"{digits}@{at:g}"]
    for text, at in call.say:
        args += ["--say", f"{await renderer.speak(text, 'zh')}@{at:g}"]
    args += ["--seconds", f"{seconds:g}"]
    report.say(f"  call from {call.caller}: {call.what}")
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if not lines:
        report.say(f"  call from {call.caller} failed: {err.decode().strip()[-300:]}")
        return
    result = json.loads(lines[-1])
    answered = "answered" if result["answered"] else f"not answered ({result['status']})"
    report.say(f"  call from {call.caller}: {answered}, did {', '.join(result['done']) or 'nothing'}")


class WebChatVisitor:
    """A web-chat visitor the way the widget is one: a token from ``POST /api/webchat/visitors``, then
    Socket.IO ``/visitor`` on ``/chat/socket.io``; ``say`` returns the next answer (bot or agent) or None."""

    def __init__(self, base: str, language: str) -> None:
        self.base = base
        self.language = language
        self.client = socketio.AsyncClient(reconnection=False)
        self.answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.client.on("message", self._message, namespace="/visitor")

    async def _message(self, data: dict[str, Any]) -> None:
        if data.get("direction") == "out":
            self.answers.put_nowait(data)

    async def __aenter__(self) -> WebChatVisitor:
        async with aiohttp.ClientSession() as http, http.post(f"{self.base}/api/webchat/visitors") as reply:
            body = await reply.json(content_type=None)
            if reply.status != 201:
                raise DemoError(f"no visitor token: {reply.status} {body}")
        await self.client.connect(
            self.base,
            namespaces=["/visitor"],
            socketio_path="chat/socket.io",
            auth={"token": body["token"], "language": self.language},
            transports=["websocket"],
            wait_timeout=10,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    async def say(self, text: str, within: float = 15.0) -> dict[str, Any] | None:
        message = {"client_id": uuid.uuid4().hex, "text": text}
        await self.client.call("message", message, namespace="/visitor", timeout=10)
        try:
            async with asyncio.timeout(within):
                return await self.answers.get()
        except TimeoutError:
            return None


async def _chat(base: str, texts: tuple[str, str], report: Report) -> None:
    language = "en" if texts[0].isascii() else "zh"
    async with WebChatVisitor(base, language) as visitor:
        for text in texts:
            report.say(f"  web chat ({language}) visitor: {text}")
            answer = await visitor.say(text)
            if answer is None:
                report.say(f"  web chat ({language}): no answer within 15 s")
            else:
                report.say(f"  web chat ({language}) answer: {str(answer.get('text', ''))[:80]}")
            await asyncio.sleep(1.0)


async def _summary(http: aiohttp.ClientSession, base: str, admin: str, report: Report, took: float) -> None:
    tickets = await _api(http, "GET", f"{base}/api/tickets?limit=10", admin)
    items = tickets.get("tickets", tickets) if isinstance(tickets, dict) else tickets
    board = await _api(http, "GET", f"{base}/api/desktop/wallboard", admin)
    report.say(f"demo traffic: done in {took:.0f} s")
    for ticket in items[:10]:
        what = ticket.get("intent") or ticket.get("category")
        report.say(f"  ticket {ticket.get('number')}: {what} [{ticket.get('status')}]")
    for queue in board.get("queues", []):
        report.say(f"  queue {queue.get('queue') or queue.get('id')}: {queue.get('waiting', 0)} waiting")


def run(settings: Settings, base: str | None, sip: str | None, calls: int, chats: int, seconds: float) -> int:
    return asyncio.run(traffic(settings, base=base, sip=sip, calls=calls, chats=chats, seconds=seconds))


def add_parser(commands: Any) -> None:
    demo = commands.add_parser("demo", help="the demo tenant").add_subparsers(
        dest="demo_command", required=True
    )
    traffic_parser = demo.add_parser(
        "traffic", help="place real calls and chats against the running platform"
    )
    traffic_parser.add_argument("--base", help="web URL (default: from the settings)")
    traffic_parser.add_argument("--sip", help="SIP front host:port (default: from the settings)")
    traffic_parser.add_argument("--calls", type=int, default=len(CALLS), choices=range(len(CALLS) + 1))
    traffic_parser.add_argument("--chats", type=int, default=len(CHATS), choices=range(len(CHATS) + 1))
    traffic_parser.add_argument("--seconds", type=float, default=60.0, help="how long each caller stays on")


def main(settings: Settings, args: Any) -> int:
    return run(settings, args.base, args.sip, args.calls, args.chats, args.seconds)
