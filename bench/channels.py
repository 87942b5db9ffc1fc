"""Channels benchmark: a customer's message → the unified timeline → the serving agent's socket, per channel.

    .venv/bin/python bench/channels.py                  # web chat: 10 visitors, 30 messages each, 20 msg/s
    .venv/bin/python bench/channels.py --channel wechat # signed WeChat callbacks (safe mode, AES)
    .venv/bin/python bench/channels.py --channel sms    # signed SMS gateway webhooks
    .venv/bin/python bench/channels.py --channel all    # the three, one after the other
    .venv/bin/python bench/channels.py --visitors 20 --messages 50 --rate 50

It starts the embedded MongoDB and redis-server on free loopback ports and the real web application in a
child process (``huiliu web``, one node), logs in the demo agent ``agent1`` (chat capacity raised to the
number of customers), then brings ``--visitors`` customers on the channel: real Socket.IO visitors on
``/visitor`` for web chat; for WeChat, callbacks signed and AES-encrypted the way the platform sends them; for
SMS, webhooks signed the way the gateway signs them (HMAC-SHA256 over ``<timestamp>.<body>``). Each asks for
a person ("转人工"): the bot hands off, the agent accepts every offer over REST. Then the customers send
``--messages`` messages each, paced to ``--rate`` per second in total. For every message it measures

* stored: the send → the channel's answer (web chat: the emit's acknowledgement; WeChat and SMS: the
  webhook's HTTP 200, the event is in MongoDB), and
* at agent: the send → the agent's ``chat.message`` (timeline append → Redis bus → the desktop's relay);

the sustained rate is messages acknowledged per second of sending. A phase without pacing (``--burst``
messages per visitor, all at once) gives the throughput ceiling. Progress goes to stderr; stdout gets the
machine and one table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from wechatpy.crypto import WeChatCrypto

import bench as _bench  # noqa: F401  (first: run as a script, it unshadows the tickets package)

# isort: split

from core.embedded import free_port, start_mongo, start_redis
from omnichannel.channels.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

P95_TARGET_MS = 100.0
REPO = Path(__file__).resolve().parent.parent
CHANNELS = ("webchat", "wechat", "sms")
SMS_SECRET = "bench-gateway-secret"
WECHAT_TOKEN = "bench-wechat-token"
WECHAT_APP_ID = "wx0123456789abcdef"
WECHAT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SERVICE_ACCOUNT = "gh_huiliu_bench"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Bench:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sent_at: dict[str, float] = {}
        self.at_agent_ms: list[float] = []
        self.offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.arrived = asyncio.Event()
        self.expected = 0

    async def on_chat(self, data: dict[str, Any]) -> None:
        text = data.get("body", {}).get("text")
        started = self.sent_at.pop(text, None) if isinstance(text, str) else None
        if started is not None:
            self.at_agent_ms.append((time.perf_counter() - started) * 1000)
            if len(self.at_agent_ms) >= self.expected:
                self.arrived.set()

    async def on_offer(self, data: dict[str, Any]) -> None:
        self.offers.put_nowait(data)


class Customer:
    """One customer writing on one channel: ``say`` returns once the channel has accepted the message."""

    async def say(self, text: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class Visitor(Customer):
    def __init__(self, socket: socketio.AsyncClient) -> None:
        self.socket = socket

    async def say(self, text: str) -> None:
        ack = await self.socket.call(
            "message", {"client_id": uuid.uuid4().hex, "text": text}, namespace="/visitor"
        )
        assert "ok" in ack, ack

    async def close(self) -> None:
        await self.socket.disconnect()


class WeChatFollower(Customer):
    """Messages posted as the WeChat platform posts them in safe mode: encrypted, signed over the
    ciphertext."""

    crypto = WeChatCrypto(WECHAT_TOKEN, WECHAT_AES_KEY, WECHAT_APP_ID)

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.openid = f"o-bench-{uuid.uuid4().hex[:20]}"

    async def say(self, text: str) -> None:
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
        xml = (
            f"<xml><ToUserName><![CDATA[{SERVICE_ACCOUNT}]]></ToUserName>"
            f"<FromUserName><![CDATA[{self.openid}]]></FromUserName><CreateTime>{timestamp}</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
            f"<MsgId>{uuid.uuid4().int % 10**18}</MsgId></xml>"
        )
        envelope = self.crypto.encrypt_message(xml, nonce, timestamp)
        encrypted = envelope.split("<Encrypt><![CDATA[")[1].split("]]></Encrypt>")[0]
        body = (
            f"<xml><ToUserName><![CDATA[{SERVICE_ACCOUNT}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        )
        query = {
            "timestamp": timestamp,
            "nonce": nonce,
            "signature": _sha1(WECHAT_TOKEN, timestamp, nonce),
            "encrypt_type": "aes",
            "msg_signature": _sha1(WECHAT_TOKEN, timestamp, nonce, encrypted),
        }
        async with self.session.post(
            f"{self.url}/api/wechat/callback",
            params=query,
            data=body.encode(),
            headers={"Content-Type": "text/xml"},
        ) as response:
            assert response.status == 200, await response.text()


class Texter(Customer):
    """Messages the SMS gateway forwards to the inbound webhook, signed as it signs them."""

    def __init__(self, session: aiohttp.ClientSession, url: str, number: int) -> None:
        self.session = session
        self.url = url
        self.phone = f"+86139{number:08d}"

    async def say(self, text: str) -> None:
        raw = json.dumps(
            {"id": uuid.uuid4().hex, "from": self.phone, "text": text}, ensure_ascii=False
        ).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(SMS_SECRET, timestamp, raw),
        }
        async with self.session.post(f"{self.url}/api/sms/inbound", data=raw, headers=headers) as response:
            assert response.status == 200, await response.text()


def _sha1(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


async def customer(channel: str, session: aiohttp.ClientSession, url: str, number: int) -> Customer:
    if channel == "wechat":
        return WeChatFollower(session, url)
    if channel == "sms":
        return Texter(session, url, number)
    async with session.post(f"{url}/api/webchat/visitors") as response:
        token = (await response.json())["token"]
    socket = socketio.AsyncClient(reconnection=False)
    await socket.connect(
        url,
        namespaces=["/visitor"],
        socketio_path="chat/socket.io",
        auth={"token": token, "language": "zh"},
        transports=["websocket"],
    )
    return Visitor(socket)


async def login(session: aiohttp.ClientSession, url: str, username: str, password: str) -> tuple[str, str]:
    async with session.post(f"{url}/api/auth/login", json={"username": username, "password": password}) as r:
        body = await r.json()
        return body["token"], body["user"]["id"]


async def run(args: argparse.Namespace) -> None:
    channels = CHANNELS if args.channel == "all" else (args.channel,)
    root = Path(tempfile.mkdtemp(prefix="huiliu-bench-channels-"))
    mongo = start_mongo(root / "mongo", free_port(), root / "mongo.log")
    redis = start_redis(root / "redis", free_port(), root / "redis.log")
    server: asyncio.subprocess.Process | None = None
    clients: list[socketio.AsyncClient] = []
    customers: list[Customer] = []
    try:
        port = free_port()
        server = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "huiliu"),
            "web",
            env={
                **os.environ,
                "HUILIU_MONGO_URL": mongo.url,
                "HUILIU_REDIS_URL": redis.url,
                "HUILIU_DB_NAME": "bench_channels",
                "HUILIU_DATA_DIR": str(root / "var"),
                "HUILIU_WEB_PORT": str(port),
                "HUILIU_DEMO": "true",
                "HUILIU_LOG_LEVEL": "WARNING",
                "HUILIU_SECRET_KEY": "bench-secret-key-not-for-production",
                "HUILIU_WEBCHAT_VISITORS_PER_MINUTE": "10000",
                "HUILIU_SMS_WEBHOOK_SECRET": SMS_SECRET,
                "HUILIU_SMS_DELIVERY": "inline",  # the bot's SMS answers go to the dev sink, no Celery here
                "HUILIU_WECHAT_TOKEN": WECHAT_TOKEN,
                "HUILIU_WECHAT_APP_ID": WECHAT_APP_ID,
                "HUILIU_WECHAT_ENCODING_AES_KEY": WECHAT_AES_KEY,
            },
            cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        bench = Bench(url)
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, url)
            admin, _ = await login(session, url, "admin", "admin-demo")
            agent_token, agent_id = await login(session, url, "agent1", "agent1-demo")
            auth = {"Authorization": f"Bearer {agent_token}"}
            agent = socketio.AsyncClient(reconnection=False)
            clients.append(agent)
            agent.on("chat.message", bench.on_chat, namespace="/agent")
            agent.on("offer", bench.on_offer, namespace="/agent")
            await agent.connect(
                url, namespaces=["/agent"], auth={"token": agent_token}, transports=["websocket"]
            )
            skills = {
                "skills": {**dict.fromkeys(CHANNELS, 1), "lang_zh": 1},
                "max_chats": min(20, args.visitors),
            }
            async with session.put(
                f"{url}/api/desktop/agents/{agent_id}/skills",
                json=skills,
                headers={"Authorization": f"Bearer {admin}"},
            ) as response:
                assert response.status == 200, await response.text()
            async with session.put(
                f"{url}/api/desktop/me/state", json={"state": "available"}, headers=auth
            ) as r:
                assert r.status == 200, await r.text()
            print_machine()
            for channel in channels:
                await measure(args, channel, session, url, auth, bench, customers)
                for done in customers:  # the agent's chats end with them: capacity for the next channel
                    await done.close()
                customers.clear()
                await end_chats(session, url, auth)
    finally:
        for done in customers:
            await done.close()
        for client in clients:
            await client.disconnect()
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(server.wait(), 15)
            except TimeoutError:
                server.kill()
                await server.wait()
        mongo.stop()
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)


async def measure(
    args: argparse.Namespace,
    channel: str,
    session: aiohttp.ClientSession,
    url: str,
    auth: dict[str, str],
    bench: Bench,
    customers: list[Customer],
) -> None:
    for number in range(args.visitors):
        person = await customer(channel, session, url, number)
        customers.append(person)
        await person.say("转人工")
        pop = await asyncio.wait_for(bench.offers.get(), 30)
        async with session.post(f"{url}/api/desktop/offers/{pop['contact']['id']}/accept", headers=auth) as r:
            assert r.status == 200, await r.text()
    log(f"{channel}: {len(customers)} customers handed off and accepted by agent1")

    stored_ms: list[float] = []

    async def send(person: Customer, number: int) -> None:
        text = f"第 {number} 条消息 #{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        bench.sent_at[text] = started
        await person.say(text)
        stored_ms.append((time.perf_counter() - started) * 1000)

    total = args.visitors * args.messages
    bench.at_agent_ms.clear()
    bench.arrived.clear()
    bench.expected = total
    started = time.perf_counter()
    sends = []
    for number in range(total):
        sends.append(asyncio.create_task(send(customers[number % len(customers)], number)))
        await asyncio.sleep(max(0.0, started + (number + 1) / args.rate - time.perf_counter()))
    await asyncio.gather(*sends)
    paced_s = time.perf_counter() - started
    try:
        await asyncio.wait_for(bench.arrived.wait(), 30)
    except TimeoutError:
        log(f"{channel}: only {len(bench.at_agent_ms)} of {total} reached the agent within 30 s")
    paced_at_agent = list(bench.at_agent_ms)
    paced_stored = list(stored_ms)

    stored_ms.clear()
    bench.at_agent_ms.clear()
    bench.arrived.clear()
    burst = args.visitors * args.burst
    bench.expected = burst
    started = time.perf_counter()
    await asyncio.gather(*(send(customers[n % len(customers)], n) for n in range(burst)))
    try:
        await asyncio.wait_for(bench.arrived.wait(), 60)
    except TimeoutError:
        log(f"{channel}: burst: only {len(bench.at_agent_ms)} of {burst} reached the agent within 60 s")
    burst_s = time.perf_counter() - started
    report(args, channel, paced_stored, paced_at_agent, total / paced_s, burst, burst_s, bench.at_agent_ms)
    bench.sent_at.clear()


async def end_chats(session: aiohttp.ClientSession, url: str, auth: dict[str, str]) -> None:
    """The agent ends every chat they hold (with a wrap-up), so the next channel starts from free capacity."""
    async with session.get(f"{url}/api/desktop/me", headers=auth) as response:
        me = await response.json()
    for contact_id in me["chats"]:
        async with session.post(f"{url}/api/desktop/contacts/{contact_id}/end", headers=auth) as r:
            assert r.status == 200, await r.text()
        async with session.post(
            f"{url}/api/desktop/contacts/{contact_id}/wrap-up", json={"codes": ["bench"]}, headers=auth
        ) as r:
            assert r.status == 200, await r.text()
    async with session.put(f"{url}/api/desktop/me/state", json={"state": "available"}, headers=auth) as r:
        assert r.status == 200, await r.text()


async def wait_healthy(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(600):
        try:
            async with session.get(url + "/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("the web node did not become healthy")


def print_machine() -> None:
    print(
        f"machine: {platform.node()} · {platform.machine()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · "
        f"python-socketio {importlib.metadata.version('python-socketio')}"
        " · embedded MongoDB (SecantusDB) + redis-server, one web node"
    )


def report(
    args: argparse.Namespace,
    channel: str,
    stored: list[float],
    at_agent: list[float],
    paced_rate: float,
    burst: int,
    burst_s: float,
    burst_at_agent: list[float],
) -> None:
    how = {
        "webchat": "visitors (Socket.IO /visitor)",
        "wechat": "WeChat followers (signed AES callbacks)",
        "sms": "SMS senders (signed gateway webhooks)",
    }[channel]
    print(f"\n[{channel}]")
    rows = [
        (f"{how} handed off to one agent", f"{args.visitors}"),
        ("paced: messages sent / at the agent", f"{len(stored)} / {len(at_agent)}"),
        ("paced: rate asked / sustained", f"{args.rate:.0f}/s / {paced_rate:.1f}/s"),
    ]
    if stored:
        rows.append(
            (
                "send → stored (ack / HTTP 200) p50 / p95",
                f"{percentile(stored, 0.5):.1f} / {percentile(stored, 0.95):.1f} ms",
            )
        )
    if at_agent:
        rows.append(
            (
                "send → timeline → agent socket p50 / p95",
                f"{percentile(at_agent, 0.5):.1f} / {percentile(at_agent, 0.95):.1f} ms"
                f" (target p95 ≤ {P95_TARGET_MS:.0f})",
            )
        )
    rows.append(("burst: messages at once / at the agent", f"{burst} / {len(burst_at_agent)}"))
    rows.append(("burst: throughput (all at the agent)", f"{len(burst_at_agent) / burst_s:.1f} msg/s"))
    if burst_at_agent:
        rows.append(("burst: send → agent socket p95", f"{percentile(burst_at_agent, 0.95):.0f} ms"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--channel", choices=(*CHANNELS, "all"), default="webchat")
    parser.add_argument("--visitors", type=int, default=10, help="customers on the channel")
    parser.add_argument("--messages", type=int, default=30, help="paced messages per visitor")
    parser.add_argument("--rate", type=float, default=20.0, help="paced messages per second, all visitors")
    parser.add_argument("--burst", type=int, default=20, help="unpaced messages per visitor")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
