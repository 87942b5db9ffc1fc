"""Journeys 4, 5 and 6 of DESIGN.md, end to end, with real parts only: embedded MongoDB and redis-server,
``huiliu web``, ``huiliu worker`` and ``huiliu beat`` as separate processes (as ``huiliu run`` and
docker-compose start them), customers who write through the signed SMS webhook or the web-chat socket, staff
who log in and work over REST and Socket.IO, and headless chromium on the pages people look at.

* ``sla`` (Journey 4): a customer's angry SMS becomes an urgent complaint; nobody answers it; the assignee is
  reminded before the deadline, then the department lead and the supervisor are texted; a collaboration
  request to quality that nobody answers texts quality's lead. The ``huiliu worker`` holding the SLA check
  is killed with SIGKILL while everyone waits and another one started. Short SLAs come through the product's
  own configuration path: ``<HUILIU_DATA_DIR>/tickets.yaml`` names a ``schemas_dir`` holding the operator's
  copy of ``tickets/schemas`` whose ``sla.yaml`` says ``first_response: 25s`` for urgent tickets and
  ``answer_within: 15s`` for collaboration requests (durations accept seconds).
* ``supervisor`` (Journey 5): web-chat visitors are answered by the bot, handed off, answered by an agent or
  leave while waiting, and a SIP caller (pjsua2, through ``huiliu telephony``) is on the line; a supervisor
  watches ``/supervisor`` over Socket.IO and the ``/wallboard`` page in chromium. The wait threshold is set
  through the wallboard's own config (``PATCH /api/desktop/wallboard/config``, what the page's settings
  use). Listening in on the call is proven by tests/softphone; here the call only has to be listed.
* ``workflow`` (Journey 6): "换货 + 已付款 + 库存不足" by SMS starts the exchange workflow; after-sales
  confirms paid and out of stock, which starts warehouse, logistics and finance in parallel, each on its own
  SLA; each department's user completes their step over REST; the customer follows the link from their SMS
  in chromium and sees every hop; completion reaches them by SMS. The customer gets seven texts within a
  minute here, so the per-number SMS limit (``HUILIU_SMS_RATE_PER_MINUTE``, default 6) is raised to 30.

Prints one JSON line with what the test checks.

    .venv/bin/python tests/journeys/ticket_journeys.py sla --workdir /tmp/journey4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import socketio
import yaml
from celery import Celery
from playwright.async_api import async_playwright

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from core.embedded import EmbeddedServer, free_port, spawn, start_mongo, start_redis  # noqa: E402
from tests.journeys.processes import environment, signed_sms  # noqa: E402
from tests.softphone.scenario import BROWSER_ARGS, call_api, login, open_page, tone_wav, until_ready  # noqa: E402
from tests.telephony.node import PEER, Node, start_node, stop_node  # noqa: E402

SCHEMAS = REPO / "tickets" / "schemas"
URGENT_FIRST_RESPONSE = "25s"
COLLABORATION_ANSWER_WITHIN = "15s"
MAX_WAIT_SECONDS = 4.0
CHECK_TASK = "tickets.tasks.check_sla_timer"


# ------------------------------------------------------------------------------------------ processes


class Stack:
    """MongoDB, Redis and the Huiliu processes of one journey; each process logs to ``<role>.log``, and one
    role can be killed and started again (``processes.start_processes`` starts a fixed set)."""

    def __init__(self, workdir: Path, roles: tuple[str, ...]) -> None:
        self.workdir = workdir
        self.roles = roles
        self.mongo: EmbeddedServer | None = None
        self.redis: EmbeddedServer | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.node: Node | None = None
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.web_port = free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.env: dict[str, str] = {}

    def start(self, *, telephony: dict[str, str] | None = None, **settings: str) -> None:
        """Start everything (what started is stopped again if something fails); ``telephony`` (its
        ``HUILIU_*`` settings) adds a ``huiliu telephony`` node."""
        try:
            self.mongo = start_mongo(self.workdir / "mongo", free_port(), self.workdir / "mongo.log")
            self.redis = start_redis(self.workdir / "redis", free_port(), self.workdir / "redis.log")
            db_name = f"j_{uuid.uuid4().hex[:10]}"
            self.env = environment(
                self.mongo.url, self.redis.url, db_name, self.data_dir, self.web_port, **settings
            )
            for role in self.roles:
                self.run(role)
            if telephony is not None:
                self.node = start_node(
                    self.workdir / "telephony",
                    self.mongo,
                    self.redis,
                    pool_size=1,
                    db_name=db_name,
                    **telephony,
                )
        except BaseException:
            self.stop()
            raise

    def run(self, role: str) -> subprocess.Popen[bytes]:
        process = spawn(
            [sys.executable, "-m", "core.cli", role],
            env=self.env,
            log_path=self.workdir / f"{role}.log",
            cwd=self.workdir,
        )
        self.processes[role] = process
        return process

    def kill(self, role: str) -> None:
        process = self.processes[role]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.node is not None:
            stop_node(self.node)
        if self.redis is not None:
            self.redis.stop()
        if self.mongo is not None:
            self.mongo.stop()

    @property
    def redis_url(self) -> str:
        assert self.redis is not None
        return self.redis.url


async def worker_ready(stack: Stack, within: float = 60.0) -> float:
    """Seconds until a Celery worker answers a ping (it consumes tasks from then on)."""
    producer = Celery("journey-probe", broker=stack.redis_url)
    started = time.monotonic()
    try:
        while time.monotonic() - started < within:
            replies = await asyncio.to_thread(producer.control.ping, timeout=0.5)
            if replies:
                return time.monotonic() - started
        raise RuntimeError(f"no Celery worker answered within {within:.0f} s")
    finally:
        producer.close()


async def until(check: Callable[[], Awaitable[Any]], within: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(every)
    raise RuntimeError(f"{what}: not within {within:.0f} s")


class Api:
    """The REST API as one logged-in person uses it."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str | None = None) -> None:
        self.http = http
        self.base = base
        self.token = token

    async def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        return await call_api(self.http, method, self.base + path, self.token, **kwargs)

    async def status(self, method: str, path: str, **kwargs: Any) -> int:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as response:
            return response.status

    async def as_user(self, username: str, password: str) -> Api:
        return Api(self.http, self.base, await login(self.http, self.base, username, password))


async def hire(admin: Api, people: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Api]:
    """Create each person (``username: (role, staff profile)``; existing demo users are kept) with the
    password ``<username>-demo``, give them their staff profile, and log them in."""
    existing = {user["username"]: user for user in await admin("GET", "/api/users")}
    logged_in = {}
    for username, (role, profile) in people.items():
        user = existing.get(username) or await admin(
            "POST",
            "/api/users",
            json={
                "username": username,
                "password": f"{username}-demo",
                "role": role,
                "display_name": username,
            },
        )
        await admin("PUT", f"/api/staff/{user['id']}", json={"display_name": username, **profile})
        logged_in[username] = await admin.as_user(username, f"{username}-demo")
    return logged_in


async def customer_texts(api: Api, sms_id: str, phone: str, text: str) -> None:
    """The SMS gateway posts what the customer wrote to the signed webhook."""
    raw, headers = signed_sms({"id": sms_id, "from": phone, "to": "10690000", "text": text})
    async with api.http.post(api.base + "/api/sms/inbound", data=raw, headers=headers) as reply:
        if reply.status != 200:
            raise RuntimeError(f"SMS webhook → {reply.status}: {await reply.text()}")


async def ticket_of(admin: Api, phone: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        customers = (await admin("GET", f"/api/customers?q={phone}"))["customers"]
        if not customers:
            return None
        tickets = (await admin("GET", f"/api/tickets?customer_id={customers[0]['id']}"))["tickets"]
        return tickets[0] if tickets else None

    ticket: dict[str, Any] = await until(found, 30, f"a ticket for {phone}")
    return ticket


async def sink(admin: Api, to: str | None = None) -> list[dict[str, Any]]:
    """What the SMS sink provider 'sent', oldest first."""
    query = f"?limit=200&to=%2B86{to}" if to else "?limit=200"
    entries: list[dict[str, Any]] = await admin("GET", "/api/sms/sink" + query)
    return entries[::-1]


# ------------------------------------------------------------------------------------ Journey 4: SLA


def short_sla_schemas(workdir: Path, data_dir: Path) -> Path:
    """The operator's copy of the ticket schemas with short targets, named by ``<data_dir>/tickets.yaml``."""
    schemas = workdir / "schemas"
    shutil.copytree(SCHEMAS, schemas)
    policy = yaml.safe_load((schemas / "sla.yaml").read_text(encoding="utf-8"))
    policy["targets"]["urgent"]["first_response"] = URGENT_FIRST_RESPONSE
    policy["collaboration"]["answer_within"] = COLLABORATION_ANSWER_WITHIN
    (schemas / "sla.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    (data_dir / "tickets.yaml").write_text(
        f"schemas_dir: {schemas}\nsla_sweep_seconds: 1\n", encoding="utf-8"
    )
    return schemas


SLA_STAFF: dict[str, tuple[str, dict[str, Any]]] = {
    "cs1": ("agent", {"departments": ["customer_service"], "skills": ["complaints"], "languages": ["zh"]}),
    "cs_lead": ("agent", {"lead_of": ["customer_service"], "phone": "13900000001"}),
    "qa_lead": ("agent", {"lead_of": ["quality"], "phone": "13900000002"}),
    "supervisor": ("supervisor", {"supervisor_of": ["*"], "phone": "13900000009"}),
}
SLA_CUSTOMER = "13800138004"


async def journey_sla(workdir: Path) -> dict[str, Any]:
    started = time.monotonic()
    phases: dict[str, float] = {}
    stack = Stack(workdir, ("web", "worker", "beat"))
    short_sla_schemas(workdir, stack.data_dir)
    stack.start()
    queue = aioredis.from_url(stack.redis_url)
    producer = Celery("journey-producer", broker=stack.redis_url)
    try:
        async with aiohttp.ClientSession() as http:
            await until_ready(http, stack.base)
            await worker_ready(stack)
            phases["processes_ready"] = time.monotonic() - started
            admin = await Api(http, stack.base).as_user("admin", "admin-demo")
            staff = await hire(admin, SLA_STAFF)

            await customer_texts(
                admin, "sms-j4-1", SLA_CUSTOMER, "订单号 7001 重复扣款，太气人了，马上处理，我要投诉"
            )
            ticket = await ticket_of(admin, SLA_CUSTOMER)
            phases["ticket_created"] = time.monotonic() - started
            tid = ticket["id"]
            collaboration = await staff["cs1"](
                "POST",
                f"/api/tickets/{tid}/collaborations",
                json={"department": "quality", "question": "客户说被重复扣款，请质量部确认是否系统问题"},
            )
            timers = await admin("GET", f"/api/tickets/{tid}/sla")
            [first] = [t for t in timers if t["kind"] == "first_response"]

            # The worker holding the first check (the reminder's ETA task) dies mid-wait; another starts.
            async def reserved() -> bool:
                return any(first["id"] in message.decode() for message in await queue.hvals("unacked"))

            await until(reserved, 15, "the worker reserving the SLA check", every=0.1)
            stack.kill("worker")
            killed_at = time.time()
            stack.run("worker")
            restart_seconds = await worker_ready(stack)

            async def escalated() -> bool:
                history = await admin("GET", f"/api/tickets/{tid}/history")
                levels = [e for e in history if e["kind"] == "ticket.escalated"]
                return len({(e["body"]["sla"], e["body"]["level"]) for e in levels}) >= 4

            await until(escalated, 60, "the escalations")
            phases["escalated"] = time.monotonic() - started
            await asyncio.sleep(3.0)  # several sweeps run meanwhile: nothing may fire twice
            # The killed worker's reserved task comes back one day (Redis visibility timeout): it changes
            # nothing. Delivered here at once, as Celery would deliver it then.
            redelivered = producer.send_task(CHECK_TASK, args=[first["id"]])
            await until(lambda: ran(stack, redelivered.id), 15, "the redelivered check")
            await asyncio.sleep(1.0)  # and the SMS it would have queued, had it fired again
            return {
                "ticket": await admin("GET", f"/api/tickets/{tid}"),
                "collaboration": collaboration,
                "timers": await admin("GET", f"/api/tickets/{tid}/sla"),
                "history": await admin("GET", f"/api/tickets/{tid}/history"),
                "sms": await sink(admin),
                "staff_phones": {name: profile.get("phone") for name, (_, profile) in SLA_STAFF.items()},
                "worker_killed_at": killed_at,
                "worker_restart_seconds": round(restart_seconds, 2),
                "phases": {name: round(value, 1) for name, value in phases.items()},
                "settings": {
                    "urgent_first_response": URGENT_FIRST_RESPONSE,
                    "collaboration_answer_within": COLLABORATION_ANSWER_WITHIN,
                },
            }
    finally:
        producer.close()
        await queue.aclose()
        stack.stop()


async def ran(stack: Stack, task_id: str) -> bool:
    """Whether the worker logged the task as done."""
    log = (stack.workdir / "worker.log").read_text(encoding="utf-8", errors="replace")
    return any(task_id in line and "succeeded" in line for line in log.splitlines())


# ----------------------------------------------------------------------------- Journey 5: supervisor


class Watcher:
    """A Socket.IO client that keeps every event it received, by name, with the time it arrived."""

    def __init__(self, base: str, namespace: str, token: str) -> None:
        self.base = base
        self.namespace = namespace
        self.token = token
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[float, str, Any]] = []
        for name in ("wallboard", "alert", "alert.cleared", "agent.state", "offer", "queue.contact"):
            self.client.on(name, self._keep(name), namespace=namespace)

    def _keep(self, name: str) -> Callable[[Any], Awaitable[None]]:
        async def handler(data: Any) -> None:
            self.events.append((time.time(), name, data))

        return handler

    async def connect(self) -> None:
        await self.client.connect(
            self.base,
            namespaces=[self.namespace],
            auth={"token": self.token},
            transports=["websocket"],
            wait_timeout=10,
        )

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.client.call(event, data, namespace=self.namespace, timeout=10)

    def seen(self, name: str) -> list[Any]:
        return [data for _, event, data in self.events if event == name]

    async def wait(self, name: str, check: Callable[[Any], bool], within: float, since: float) -> Any:
        """The first ``name`` event received after ``since`` (a ``time.time()``) for which ``check`` holds."""

        async def found() -> Any:
            return next(
                (data for at, event, data in self.events if event == name and at >= since and check(data)),
                None,
            )

        return await until(found, within, f"{self.namespace} {name}", every=0.05)


class ChatVisitor:
    """A web-chat visitor as the widget is one: a token, then Socket.IO on ``/visitor`` (like
    tests/channels/webchat_client.py's ``Visitor``, which needs an in-process test server)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.client = socketio.AsyncClient(reconnection=False)
        self.replies: list[dict[str, Any]] = []

        async def on_message(data: dict[str, Any]) -> None:
            if data.get("direction") == "out":
                self.replies.append(data)

        self.client.on("message", on_message, namespace="/visitor")

    async def connect(self, http: aiohttp.ClientSession) -> None:
        async with http.post(self.base + "/api/webchat/visitors") as response:
            token = (await response.json())["token"]
        await self.client.connect(
            self.base,
            namespaces=["/visitor"],
            socketio_path="chat/socket.io",
            auth={"token": token, "language": "zh"},
            transports=["websocket"],
            wait_timeout=10,
        )

    async def say(self, text: str) -> None:
        await self.client.call(
            "message", {"client_id": uuid.uuid4().hex, "text": text}, namespace="/visitor", timeout=20
        )

    async def answered(self, within: float = 20.0) -> str:
        async def reply() -> str | None:
            return str(self.replies[-1]["text"]) if self.replies else None

        text: str = await until(reply, within, "the bot's answer")
        return text

    async def close(self) -> Any:
        return await self.client.call("close", None, namespace="/visitor", timeout=10)


HOLD_LINE = "7000"
HOLD_FLOW = """
description: wallboard journey, a caller on the line
language: zh
start: hold
nodes:
  hold:
    type: menu
    prompt:
      say: {zh: "请稍候。", en: "Please hold."}
    choices:
      1: bye
    timeout: 30
    retries: 0
    on_failure: bye
  bye:
    type: hangup
"""
CALLER = "13800138077"
CALL_SECONDS = 12
LIVE_CALL = "#supervise tr[data-call]"


def queue_row(board: dict[str, Any], queue: str = "chat") -> dict[str, Any] | None:
    return next((row for row in board["queues"] if row["queue"] == queue), None)


async def journey_supervisor(workdir: Path) -> dict[str, Any]:
    stack = Stack(workdir, ("web",))
    stack.start(
        telephony={
            "telephony_router": "ivr_flows.line:router",
            "ivr_lines": f"{HOLD_LINE}=hold",
            "ivr_flow_poll_seconds": "1",
        }
    )
    assert stack.node is not None
    visitors: list[ChatVisitor] = []
    sockets: list[Watcher] = []
    marks: dict[str, float] = {}
    boards: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            await until_ready(http, stack.base)
            admin = await Api(http, stack.base).as_user("admin", "admin-demo")
            supervisor = await admin.as_user("supervisor", "supervisor-demo")
            agent = await admin.as_user("agent1", "agent1-demo")
            me = await agent("GET", "/api/desktop/me")
            # One chat at a time: while the agent serves one, the next customer waits.
            await admin(
                "PUT",
                f"/api/desktop/agents/{me['user_id']}/skills",
                json={"skills": {"webchat": 2, "lang_zh": 2}, "max_chats": 1},
            )
            config = await supervisor(
                "PATCH", "/api/desktop/wallboard/config", json={"max_wait_seconds": MAX_WAIT_SECONDS}
            )
            await admin("POST", "/api/flows/hold/versions", json={"yaml": HOLD_FLOW, "activate": True})
            wall = Watcher(stack.base, "/supervisor", str(supervisor.token))
            desk = Watcher(stack.base, "/agent", str(agent.token))
            sockets += [wall, desk]
            await wall.connect()
            await desk.connect()
            before = time.time()
            await desk.call("state", {"state": "available"})
            await wall.wait("agent.state", lambda s: s["state"] == "available", 10, before)

            errors: list[str] = []
            async with async_playwright() as playwright:
                page = await open_page(
                    playwright,
                    stack.base,
                    "/wallboard",
                    str(supervisor.token),
                    tone_wav(workdir / "mic.wav", 1000.0),
                    errors,
                )

                # A caller is on the line (in the IVR) meanwhile: the live-call list shows the call.
                (workdir / "caller").mkdir()
                caller = await asyncio.create_subprocess_exec(
                    sys.executable, str(PEER), "--workdir", str(workdir / "caller"),
                    "--target", f"sip:{HOLD_LINE}@127.0.0.1:{stack.node.sip_port}", "--caller", CALLER,
                    "--tone-hz", "440", "--seconds", str(CALL_SECONDS),
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                await page.wait_for_selector(LIVE_CALL, timeout=20_000)
                live_call = {
                    "row": await page.inner_text(LIVE_CALL),
                    "call_id": await page.get_attribute(LIVE_CALL, "data-call"),
                    "buttons": await page.locator(f"{LIVE_CALL} button").all_inner_texts(),
                    "api": await supervisor("GET", "/api/calls"),
                }
                await page.screenshot(path=str(workdir / "wallboard-live-call.png"), full_page=True)

                def visitor() -> ChatVisitor:
                    visitors.append(ChatVisitor(stack.base))
                    return visitors[-1]

                # 1. The bot answers a question from the knowledge base; the visitor leaves content.
                helped = visitor()
                await helped.connect(http)
                await helped.say("你们几点上班？")
                marks["bot_answer"] = len(await helped.answered())
                boards["after_resolved"] = (await helped.close())["ok"]["outcome"]

                # 2. Someone asks for a person: handed off, offered to the agent, answered.
                answered = visitor()
                await answered.connect(http)
                before = time.time()
                await answered.say("转人工")
                marks["handoff_1"] = time.time()
                offer = await desk.wait("offer", lambda _: True, 15, before)
                contact_id = offer["contact"]["id"]
                await asyncio.sleep(1.0)  # the agent reads the screen-pop
                answered_at = time.time()
                accepted = await desk.call("accept", {"contact_id": contact_id})
                marks["answered_1"] = time.time()
                boards["answered"] = await wall.wait(
                    "wallboard", lambda b: (queue_row(b) or {}).get("answered") == 1, 10, answered_at
                )
                bot_alert = await wall.wait("alert", lambda a: a["rule"] == "bot_resolution", 10, before)

                # 3. The next one waits (the agent's one chat is taken) past the threshold, then leaves.
                waiting = visitor()
                await waiting.connect(http)
                before = time.time()
                await waiting.say("我要找人工客服")
                marks["handoff_2"] = time.time()
                boards["waiting"] = await wall.wait(
                    "wallboard", lambda b: (queue_row(b) or {}).get("waiting") == 1, 10, before
                )
                wait_alert = await wall.wait(
                    "alert", lambda a: a["rule"] == "queue_wait", MAX_WAIT_SECONDS + 6, before
                )
                marks["wait_alert"] = time.time()
                await page.wait_for_function("document.body.innerText.includes('chat')", timeout=10_000)
                await asyncio.sleep(1.0)  # the page's next push
                await page.screenshot(path=str(workdir / "wallboard-waiting.png"), full_page=True)
                boards["page_waiting"] = await page.inner_text("body")
                before = time.time()
                left = await waiting.close()
                marks["left"] = time.time()
                boards["abandoned"] = await wall.wait(
                    "wallboard",
                    lambda b: (queue_row(b) or {}).get("abandoned") == 1 and queue_row(b)["waiting"] == 0,
                    10,
                    before,
                )
                wait_cleared = await wall.wait(
                    "alert.cleared", lambda a: a["rule"] == "queue_wait", 10, before
                )

                # 4. The agent finishes the chat and is free again.
                before = time.time()
                await agent("POST", f"/api/desktop/contacts/{contact_id}/end")
                await wall.wait(
                    "agent.state",
                    lambda s: s["user_id"] == me["user_id"] and not s.get("chats"),
                    10,
                    before,
                )
                out, _ = await asyncio.wait_for(caller.communicate(), CALL_SECONDS + 30)
                live_call["caller"] = [
                    json.loads(line) for line in out.decode().splitlines() if line.startswith("{")
                ]
                await page.wait_for_selector(LIVE_CALL, state="detached", timeout=10_000)
                await page.screenshot(path=str(workdir / "wallboard-final.png"), full_page=True)
                boards["page_final"] = await page.inner_text("body")
            final = await supervisor("GET", "/api/desktop/wallboard")
            alerts = await supervisor("GET", "/api/desktop/alerts")
            return {
                "config": config,
                "marks": marks,
                "boards": boards,
                "accepted": accepted,
                "bot_alert": bot_alert,
                "wait_alert": wait_alert,
                "wait_cleared": wait_cleared,
                "left": left,
                "final": final,
                "alerts": alerts,
                "agent_states": [(s["state"], len(s.get("chats") or [])) for s in wall.seen("agent.state")],
                "pushed_boards": len(wall.seen("wallboard")),
                # (seconds since the second hand-off, longest wait shown) for every push while someone waited
                "longest_waits": [
                    (round(when - marks["handoff_2"], 2), row["longest_wait_seconds"])
                    for when, name, board in wall.events
                    if name == "wallboard"
                    and when >= marks["handoff_2"]
                    and (row := queue_row(board)) is not None
                    and row["waiting"]
                ],
                "page_errors": errors,
                "agent_id": me["user_id"],
                "live_call": live_call,
            }
    finally:
        for client in [*(v.client for v in visitors), *(s.client for s in sockets)]:
            try:
                await client.disconnect()
            except Exception:  # leaving anyway
                pass
        stack.stop()


# -------------------------------------------------------------------------------- Journey 6: workflow

WORKFLOW_STAFF: dict[str, tuple[str, dict[str, Any]]] = {
    "as1": ("agent", {"departments": ["after_sales"], "skills": ["after_sales"], "languages": ["zh"]}),
    "wh1": ("agent", {"departments": ["warehouse"]}),
    "lg1": ("agent", {"departments": ["logistics"]}),
    "fi1": ("agent", {"departments": ["finance"]}),
}
WORKFLOW_CUSTOMER = "13800138006"
LINK = re.compile(r"https?://\S+/p/[A-Za-z0-9_.\-]+")
STEPS_ON_PAGE = """() => [...document.querySelectorAll('#steps li.step')].map(li => ({
    title: li.querySelector('strong').innerText, state: li.dataset.state,
    label: li.querySelector('.state').innerText}))"""


async def journey_workflow(workdir: Path) -> dict[str, Any]:
    stack = Stack(workdir, ("web", "worker", "beat"))
    stack.start(sms_rate_per_minute="30")
    pages: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            await until_ready(http, stack.base)
            await worker_ready(stack)
            admin = await Api(http, stack.base).as_user("admin", "admin-demo")
            staff = await hire(admin, WORKFLOW_STAFF)
            await customer_texts(
                admin, "sms-j6-1", WORKFLOW_CUSTOMER, "我要换货，订单号 6006，已经付款了，但是新的没货了"
            )
            ticket = await ticket_of(admin, WORKFLOW_CUSTOMER)
            tid = ticket["id"]

            async def link() -> str | None:
                texts = [entry["text"] for entry in await sink(admin, WORKFLOW_CUSTOMER)]
                found = [match.group(0) for text in texts for match in [LINK.search(text)] if match]
                return found[0] if found else None

            progress_url = await until(link, 30, "the SMS with the progress link")
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=BROWSER_ARGS
                )
                page = await browser.new_page(locale="zh-CN", viewport={"width": 480, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))

                async def look(name: str) -> None:
                    await page.goto(progress_url)
                    await page.screenshot(path=str(workdir / f"progress-{name}.png"), full_page=True)
                    pages[name] = {
                        "steps": await page.evaluate(STEPS_ON_PAGE),
                        "status": await page.inner_text("#status"),
                        "events": await page.inner_text("#events"),
                    }

                await look("1-received")
                # After-sales reviews: the order is paid and the replacement is out of stock.
                await staff["as1"](
                    "POST",
                    f"/api/tickets/{tid}/workflow/steps/review/complete",
                    json={"facts": {"paid": True, "stock": "out_of_stock"}, "note": "已付款，新货缺货"},
                )
                parallel = await admin("GET", f"/api/tickets/{tid}")
                timers_parallel = await admin("GET", f"/api/tickets/{tid}/sla")
                await look("2-parallel")
                not_yours = await staff["wh1"].status(
                    "POST", f"/api/tickets/{tid}/workflow/steps/hold_payment/complete", json={"note": "x"}
                )
                for number, (username, step) in enumerate(
                    (("wh1", "restock"), ("lg1", "pickup"), ("fi1", "hold_payment")), start=3
                ):
                    await staff[username](
                        "POST", f"/api/tickets/{tid}/workflow/steps/{step}/complete", json={"note": "完成"}
                    )
                    await look(f"{number}-{step}")
                await staff["as1"](
                    "POST", f"/api/tickets/{tid}/workflow/steps/confirm/complete", json={"note": "客户已确认"}
                )
                await staff["as1"](
                    "POST", f"/api/tickets/{tid}/transition", json={"to": "resolved", "reason": "换货完成"}
                )

                async def told_resolved() -> bool:
                    texts = [entry["text"] for entry in await sink(admin, WORKFLOW_CUSTOMER)]
                    return any("已处理完毕" in text for text in texts) and any(
                        "打分" in text for text in texts
                    )

                await until(told_resolved, 30, "the SMS telling the customer it is done")
                await look("7-resolved")
                await browser.close()
            return {
                "ticket": await admin("GET", f"/api/tickets/{tid}"),
                "parallel": parallel,
                "timers_parallel": timers_parallel,
                "timers": await admin("GET", f"/api/tickets/{tid}/sla"),
                "history": await admin("GET", f"/api/tickets/{tid}/history"),
                "customer_sms": await sink(admin, WORKFLOW_CUSTOMER),
                "progress_url": progress_url,
                "pages": pages,
                "not_yours_status": not_yours,
                "staff_ids": {
                    user["username"]: user["id"]
                    for user in await admin("GET", "/api/users")
                    if user["username"] in WORKFLOW_STAFF
                },
                "page_errors": errors,
            }
    finally:
        stack.stop()


JOURNEYS = {"sla": journey_sla, "supervisor": journey_supervisor, "workflow": journey_workflow}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("journey", choices=sorted(JOURNEYS))
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report = asyncio.run(JOURNEYS[args.journey](workdir))
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    report["load"] = os.getloadavg()
    print(json.dumps(report, ensure_ascii=False, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
