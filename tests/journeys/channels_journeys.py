"""Journeys 2 and 3 of DESIGN.md, end to end, with real parts only: embedded MongoDB and redis-server,
``huiliu web`` and ``huiliu worker`` (Celery: every SMS goes out through it) as child processes.

``--journey wechat`` — *same customer, other channel.* The customer texts the signed SMS webhook
"我要退货，订单号 12345" and gets the return ticket's number by SMS. Later they write to the Official
Account in safe (AES) mode, messages built and encrypted with wechatpy and signed as WeChat signs them: they
give their phone number, read the code from the SMS sink (the development SMS gateway, ``GET
/api/sms/sink``) and send it back, ask "我的退货进度怎么样？", then "转人工". An agent connected to
``/agent`` with python-socketio gets the offer, accepts it and replies; the reply reaches WeChat as a
customer-service message (the development WeChat client records those in ``wechat_sink``, read here from
MongoDB). The bot's answers are read where WeChat gets them: the passive reply (decrypted), or — when the
bot took longer than WeChat's window — the customer-service message sent afterwards.

``--journey webchat`` — *web chat.* A third-party page on another origin (an aiohttp server of this script)
embeds the widget with one ``<script>`` tag; a visitor in headless chromium asks an FAQ answered from a
knowledge-base article the admin created through the API, then presses the widget's 转人工 button. An agent
in chromium on ``/desktop`` gets the offer with the bot's summary, accepts, replies, records the chat as a
ticket and resolves it (the product asks for CSAT when a ticket is resolved, on the channel it came from),
ends the chat and wraps up; the visitor rates 5 in the widget.

Each prints one JSON line with what the tests check.

    .venv/bin/python tests/journeys/channels_journeys.py --journey wechat --workdir /tmp/journey2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from aiohttp import web
from playwright.async_api import async_playwright, expect
from pymongo import MongoClient

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from core.embedded import free_port, start_mongo, start_redis  # noqa: E402
from tests.channels.conftest import (  # noqa: E402
    WECHAT_AES_KEY,
    WECHAT_APP_ID,
    WECHAT_TOKEN,
    decrypt_reply,
    post_wechat,
    wechat_text,
)
from tests.conftest import ApiClient  # noqa: E402
from tests.journeys.processes import (  # noqa: E402
    environment,
    signed_sms,
    start_processes,
    stop_processes,
)
from tests.softphone.scenario import AGENT_HZ, call_api, login, open_page, tone_wav, until_ready  # noqa: E402

PHONE = "13800138000"
E164 = "+8613800138000"
OPENID = "oHuiliu_journey2_customer"
AGENT_SKILLS = {"wechat": 1, "webchat": 1, "lang_zh": 1, "after_sales": 1, "orders": 1, "general": 1}
KB_ARTICLE = {
    "language": "zh",
    "title": "会员积分",
    "body": "每消费 1 元累积 1 积分，100 积分可抵 1 元。",
    "questions": ["积分怎么用", "积分有什么用"],
}
TICKET_NUMBER = re.compile(r"T-\d{8}-\d{4}")


async def until(check: Callable[[], Awaitable[Any]], what: str, within: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within} s")
        await asyncio.sleep(0.2)


def event_row(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event["id"],
        "kind": event["kind"],
        "channel": event["channel"],
        "ts": event["ts"],
        "conversation_id": event.get("conversation_id"),
        "actor": (event.get("actor") or {}).get("type"),
        "text": (event.get("body") or {}).get("text"),
        "body": event.get("body") or {},
    }


async def customer_record(http: aiohttp.ClientSession, base: str, admin: str, customer_id: str) -> Any:
    """The customer, their whole timeline (oldest first) and their tickets, as the admin API gives them."""
    customer = await call_api(http, "GET", f"{base}/api/customers/{customer_id}", admin)
    timeline = await call_api(http, "GET", f"{base}/api/customers/{customer_id}/timeline?limit=200", admin)
    tickets = await call_api(http, "GET", f"{base}/api/tickets?customer_id={customer_id}", admin)
    return customer, [event_row(event) for event in reversed(timeline["events"])], tickets["tickets"]


async def sms_to(http: aiohttp.ClientSession, base: str, admin: str, phone: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = await call_api(
        http, "GET", f"{base}/api/sms/sink", admin, params={"to": phone, "limit": 100}
    )
    return entries


# ----------------------------------------------------------------------------------- journey 2: WeChat


class WeChatUser:
    """The customer's WeChat: signed, AES-encrypted callbacks; what the account says back (passive reply,
    else the customer-service messages that reached the WeChat client)."""

    def __init__(self, http: aiohttp.ClientSession, base: str, sink: Any) -> None:
        self.client = ApiClient(http, base)
        self.sink = sink
        self.sent = 0

    def _customer_service_messages(self) -> list[str]:
        return [doc["text"] for doc in self.sink.find({"openid": OPENID}, sort=[("at", 1)])]

    async def later_messages(self, seen: int) -> list[str]:
        texts = await asyncio.to_thread(self._customer_service_messages)
        return texts[seen:]

    async def say(self, text: str) -> dict[str, Any]:
        self.sent += 1
        seen = len(await asyncio.to_thread(self._customer_service_messages))
        started = time.monotonic()
        msg_id = str(6_000_000_000_000_000_000 + self.sent)  # WeChat's MsgId: a 64-bit integer
        status, body, _ = await post_wechat(self.client, wechat_text(OPENID, text, msg_id), aes=True)
        if status != 200:
            raise RuntimeError(f"WeChat callback → {status}: {body}")
        if body != "success":
            [answer] = re.findall(r"<Content><!\[CDATA\[(.*?)\]\]></Content>", decrypt_reply(body), re.S)
            via = "passive"
        else:
            later = await until(lambda: self.later_messages(seen), f"the answer to {text!r} on WeChat", 20)
            answer, via = later[0], "customer_service"
        return {"said": text, "answer": answer, "via": via, "seconds": round(time.monotonic() - started, 2)}


async def wechat_journey(workdir: Path) -> dict[str, Any]:
    mongo = start_mongo(workdir / "mongo", free_port(), workdir / "mongo.log")
    redis = start_redis(workdir / "redis", free_port(), workdir / "redis.log")
    processes = []
    sink_client: MongoClient[dict[str, Any]] = MongoClient(mongo.url)
    try:
        web_port = free_port()
        env = environment(
            mongo.url,
            redis.url,
            "journey2",
            workdir / "web",
            web_port,
            wechat_token=WECHAT_TOKEN,
            wechat_app_id=WECHAT_APP_ID,
            wechat_encoding_aes_key=WECHAT_AES_KEY,
        )
        processes = start_processes(workdir, env)
        base = f"http://127.0.0.1:{web_port}"
        async with aiohttp.ClientSession() as http:
            await until_ready(http, base)
            started = time.monotonic()
            admin = await login(http, base, "admin", "admin-demo")
            agent = await login(http, base, "agent1", "agent1-demo")
            me = await call_api(http, "GET", base + "/api/desktop/me", agent)
            await call_api(
                http,
                "PUT",
                f"{base}/api/desktop/agents/{me['user_id']}/skills",
                admin,
                json={"skills": AGENT_SKILLS},
            )

            # The return request by SMS, through the signed gateway webhook.
            raw, headers = signed_sms(
                {"id": "sms-j2-1", "from": PHONE, "to": "10690000", "text": "我要退货，订单号 12345"}
            )
            async with http.post(base + "/api/sms/inbound", data=raw, headers=headers) as reply:
                if reply.status != 200:
                    raise RuntimeError(f"SMS webhook → {reply.status}: {await reply.text()}")

            async def the_ticket() -> Any:
                found = await call_api(http, "GET", f"{base}/api/customers", admin, params={"q": PHONE})
                if not found["customers"]:
                    return None
                tickets = await call_api(
                    http, "GET", f"{base}/api/tickets?customer_id={found['customers'][0]['id']}", admin
                )
                return tickets["tickets"][0] if tickets["tickets"] else None

            ticket = await until(the_ticket, "the return ticket")

            async def notice_sms() -> Any:
                return [e for e in await sms_to(http, base, admin, E164) if ticket["number"] in e["text"]]

            await until(notice_sms, "the SMS with the ticket number")

            # Later, on WeChat.
            wechat = WeChatUser(http, base, sink_client["journey2"]["wechat_sink"])
            answers = [await wechat.say(f"你好，我之前发短信申请了退货。我的手机号是{PHONE}")]

            async def code_sms() -> Any:
                return [e for e in await sms_to(http, base, admin, E164) if "验证码" in e["text"]]

            [code] = re.findall(r"\d{6}", (await until(code_sms, "the verification code SMS"))[0]["text"])[:1]
            answers.append(await wechat.say(code))
            answers.append(await wechat.say("我的退货进度怎么样？"))

            # The agent is on the desktop's socket, available, when the customer asks for a person.
            offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            desk = socketio.AsyncClient(reconnection=False)

            async def on_offer(data: dict[str, Any]) -> None:
                offers.put_nowait(data)

            desk.on("offer", on_offer, namespace="/agent")
            await desk.connect(base, namespaces=["/agent"], auth={"token": agent}, transports=["websocket"])
            try:
                available = {"state": "available"}
                await call_api(http, "PUT", base + "/api/desktop/me/state", agent, json=available)
                answers.append(await wechat.say("转人工"))
                asked_at = time.monotonic()
                pop = await asyncio.wait_for(offers.get(), 30)
                offered_after = time.monotonic() - asked_at
                contact_id = pop["contact"]["id"]
                await call_api(http, "POST", f"{base}/api/desktop/offers/{contact_id}/accept", agent)
                agent_text = f"您好，我是客服。您的退货工单 {ticket['number']} 我来跟进。"
                await call_api(
                    http,
                    "POST",
                    f"{base}/api/desktop/contacts/{contact_id}/messages",
                    agent,
                    json={"text": agent_text, "client_id": "j2-agent-1"},
                )

                async def agent_reply_on_wechat() -> Any:
                    texts = await wechat.later_messages(0)
                    return texts if agent_text in texts else None

                wechat_texts = await until(agent_reply_on_wechat, "the agent's reply on WeChat")
                await call_api(http, "POST", f"{base}/api/desktop/contacts/{contact_id}/end", agent)
            finally:
                await desk.disconnect()

            by_phone = await call_api(http, "GET", f"{base}/api/customers", admin, params={"q": PHONE})
            by_openid = await call_api(
                http,
                "POST",
                f"{base}/api/customers/resolve",
                admin,
                json={"identities": [{"kind": "wechat_openid", "value": OPENID}]},
            )
            customer, timeline, tickets = await customer_record(
                http, base, admin, by_phone["customers"][0]["id"]
            )
            sms = await sms_to(http, base, admin, E164)
            elapsed = time.monotonic() - started
        return {
            "journey_seconds": round(elapsed, 1),
            "ticket": ticket,
            "answers": answers,
            "offered_after_seconds": round(offered_after, 2),
            "offer": {
                "contact": pop["contact"],
                "bot_summary": pop.get("bot_summary"),
                "open_tickets": pop.get("open_tickets", []),
                "history": [event_row(event) for event in pop.get("history", [])],
                "customer": pop.get("customer"),
            },
            "agent_text": agent_text,
            "wechat_texts": wechat_texts,
            "customers_with_phone": [found["id"] for found in by_phone["customers"]],
            "customer_of_openid": by_openid["customer"]["id"],
            "openid_resolved_as_new": by_openid.get("created"),
            "customer": customer,
            "timeline": timeline,
            "tickets": tickets,
            "sms": sms,
        }
    finally:
        sink_client.close()
        stop_processes(processes)
        redis.stop()
        mongo.stop()


# -------------------------------------------------------------------------------- journey 3: web chat


async def third_party_site(widget_base: str) -> tuple[web.AppRunner, str]:
    """A shop's page on its own origin that embeds the widget with one tag."""

    async def page(request: web.Request) -> web.Response:
        html = (
            "<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>小店 Shop</title></head>"
            "<body><h1>欢迎光临小店</h1><p>全场包邮。</p>"
            f"<script src='{widget_base}/static/widget.js' async></script></body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/"


async def webchat_journey(workdir: Path) -> dict[str, Any]:
    mongo = start_mongo(workdir / "mongo", free_port(), workdir / "mongo.log")
    redis = start_redis(workdir / "redis", free_port(), workdir / "redis.log")
    processes = []
    shop: web.AppRunner | None = None
    try:
        web_port = free_port()
        env = environment(mongo.url, redis.url, "journey3", workdir / "web", web_port)
        processes = start_processes(workdir, env)
        base = f"http://127.0.0.1:{web_port}"
        shop, shop_url = await third_party_site(base)
        errors: list[str] = []
        async with aiohttp.ClientSession() as http:
            await until_ready(http, base)
            started = time.monotonic()
            admin = await login(http, base, "admin", "admin-demo")
            agent = await login(http, base, "agent1", "agent1-demo")
            me = await call_api(http, "GET", base + "/api/desktop/me", agent)
            await call_api(
                http,
                "PUT",
                f"{base}/api/desktop/agents/{me['user_id']}/skills",
                admin,
                json={"skills": AGENT_SKILLS},
            )
            article = await call_api(http, "POST", base + "/api/kb/articles", admin, json=KB_ARTICLE)

            # Each wait is for the platform to do something (bot, routing, delivery): generous, as a loaded
            # machine needs, and a failure still names what did not happen.
            expect.set_options(timeout=30_000)
            async with async_playwright() as playwright:
                desk = await open_page(
                    playwright, base, "/desktop", agent, tone_wav(workdir / "mic.wav", AGENT_HZ), errors
                )
                await desk.click("#state-available")
                context = await desk.context.browser.new_context(locale="zh-CN")
                context.set_default_timeout(20_000)
                visitor = await context.new_page()
                visitor.on("pageerror", lambda error: errors.append(f"visitor: {error}"))
                await visitor.goto(shop_url)
                page_origin = await visitor.evaluate("location.origin")

                # The FAQ, answered by the bot from the article.
                await visitor.locator(".launcher").click()
                await visitor.locator(".input").fill("请问积分有什么用？")
                await visitor.locator(".input").press("Enter")
                await expect(visitor.locator(".message.bot .text").first).to_have_text(KB_ARTICLE["body"])
                # A person, please: the widget's button.
                await visitor.locator(".human").click()
                await expect(visitor.locator(".message.bot .text")).to_have_count(2)
                bot_said = await visitor.locator(".message.bot .text").all_text_contents()

                # The agent: the offer pops with the bot's summary and the chat so far.
                await desk.wait_for_selector("#offer-accept", timeout=30_000)
                offer_text = await desk.text_content("#offer") or ""
                pop_text = await desk.text_content("body") or ""
                await desk.screenshot(path=str(workdir / "journey3-offer.png"))
                await desk.click("#offer-accept")
                agent_text = "您好，我是客服小李：积分在下单时可直接抵扣，100 积分抵 1 元。"
                await desk.locator(".chat-pane .chat-input").fill(agent_text)
                await desk.locator(".chat-pane .chat-input").press("Enter")
                await expect(visitor.locator(".message.agent .text")).to_have_text([agent_text])
                await visitor.locator(".input").fill("明白了，谢谢！")
                await visitor.locator(".input").press("Enter")
                await expect(desk.locator(".chat-pane .message-in .message-text").last).to_have_text(
                    "明白了，谢谢！"
                )

                # The agent records the chat as a ticket and resolves it: the customer is asked to rate.
                await desk.locator("details.new-ticket summary").click()
                await desk.fill("#ticket-subject", "会员积分使用咨询")
                await desk.select_option("#ticket-category", "inquiry")
                await desk.click("#ticket-create")
                ticket_item = desk.locator("#tickets li.ticket").first
                await expect(ticket_item).to_contain_text("会员积分使用咨询")
                await ticket_item.locator("select").first.select_option("resolved")
                await ticket_item.get_by_role("button", name="更新状态").click()
                csat_request = visitor.locator(".message .text", has_text="请为工单")
                await expect(csat_request).to_have_count(1)
                csat_text = await csat_request.text_content() or ""

                # The agent ends the chat and wraps up.
                await desk.locator(".chat-pane").get_by_role("button", name="结束会话").click()
                await desk.locator("#wrap-up input[type=checkbox]").first.check()
                await desk.click("#wrap-up-submit")
                await desk.wait_for_function("!document.querySelector('#wrap-up-submit')", timeout=15_000)
                await desk.screenshot(path=str(workdir / "journey3-wrapped.png"))

                # The visitor rates 5.
                await visitor.locator(".input").fill("5 很满意")
                await visitor.locator(".input").press("Enter")
                thanks = visitor.locator(".message .text", has_text="感谢您对工单")
                await expect(thanks).to_have_count(1)
                widget_before_reload = await visitor.locator(".message").all_text_contents()
                await visitor.reload()  # the widget replays the conversation from the server
                await expect(visitor.locator(".message .text", has_text="感谢您对工单")).to_have_count(1)
                widget_after_reload = await visitor.locator(".message").all_text_contents()
                stored = await visitor.evaluate(f"localStorage.getItem('huiliu-chat:{base}:token')")
                token = json.loads(stored)
                await visitor.screenshot(path=str(workdir / "journey3-visitor.png"))
                await context.close()
                await desk.context.browser.close()

            visitor_id = token.split(".")[0]
            resolved = await call_api(
                http,
                "POST",
                f"{base}/api/customers/resolve",
                admin,
                json={"identities": [{"kind": "web_visitor", "value": visitor_id}]},
            )
            customer, timeline, tickets = await customer_record(http, base, admin, resolved["customer"]["id"])
            elapsed = time.monotonic() - started
        return {
            "journey_seconds": round(elapsed, 1),
            "page_origin": page_origin,
            "platform_origin": base,
            "article": article,
            "bot_said": bot_said,
            "offer_text": offer_text,
            "pop_text": pop_text[:20_000],
            "agent_text": agent_text,
            "csat_text": csat_text,
            "widget_before_reload": widget_before_reload,
            "widget_after_reload": widget_after_reload,
            "visitor_resolved_as_new": resolved.get("created"),
            "customer": customer,
            "timeline": timeline,
            "tickets": tickets,
            "page_errors": errors,
        }
    finally:
        if shop is not None:
            await shop.cleanup()
        stop_processes(processes)
        redis.stop()
        mongo.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--journey", choices=("wechat", "webchat"), required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    journey = wechat_journey if args.journey == "wechat" else webchat_journey
    print(json.dumps(asyncio.run(journey(workdir)), ensure_ascii=False, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
