"""The chat widget as a shop's visitor meets it: one <script> tag on a plain page served by *another* origin
(a second aiohttp server on another port), in headless chromium."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from asr.nlu import default_analyzer
from core.settings import Settings
from omnichannel import Actor
from omnichannel.channels.http import CHANNELS
from omnichannel.channels.webchat import agent_typing
from tests.channels.test_email_notices import Relay
from tests.conftest import ApiClient


@pytest.fixture(scope="module", autouse=True)
def warm_analyzer() -> None:
    """The NLU model loads once per process (seconds); not inside a test's wait."""
    default_analyzer().analyze("你好")


@pytest.fixture
def relay() -> Iterator[Relay]:
    """The mail provider's SMTP relay (a local aiosmtpd): codes by email arrive here."""
    relay = Relay()
    relay.up()
    yield relay
    relay.down()


@pytest.fixture
def settings(settings: Settings, relay: Relay) -> Settings:
    """SMS (the verification code) is delivered by the web process itself: no Celery worker here."""
    return settings.model_copy(
        update={"sms_delivery": "inline", "smtp_host": "127.0.0.1", "smtp_port": relay.port}
    )


@pytest.fixture
async def shop(server: TestServer) -> AsyncIterator[str]:
    """A third-party page that embeds the widget with one tag; its own origin."""
    base = str(server.make_url("")).rstrip("/")

    async def page(request: web.Request) -> web.Response:
        language = request.match_info.get("language") or "zh"
        html = (
            "<!doctype html><html><head><meta charset='utf-8'><title>小店 Shop</title>"
            "<style>* { font-size: 40px !important; color: red !important; }</style></head>"
            f"<body><h1>欢迎光临</h1><script src='{base}/static/widget.js' data-lang='{language}'></script>"
            "</body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/{language:en}", page)
    shop_server = TestServer(app, host="127.0.0.1")
    await shop_server.start_server()
    yield str(shop_server.make_url("/"))
    await shop_server.close()


@pytest.fixture
async def visitor_page(browser: Browser, shop: str) -> AsyncIterator[Page]:
    """Closed before the servers stop (it depends on them): an open socket would hold their shutdown."""
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1200, "height": 800})
    context.set_default_timeout(15000)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    yield opened
    await context.close()
    assert not errors, errors


async def test_a_visitor_on_another_site_chats_with_the_bot_and_then_an_agent(
    visitor_page: Page, shop: str, server: TestServer
) -> None:
    page = visitor_page
    await page.goto(shop)
    assert await page.evaluate("location.origin") != str(server.make_url("")).rstrip("/")
    await page.locator(".launcher").click()
    await page.locator(".input").fill("你们几点上班？")
    await page.locator(".input").press("Enter")
    answer = page.locator(".message.bot .text")
    await expect(answer).to_contain_text("9:00", timeout=15000)
    await expect(page.locator(".message.mine .text")).to_have_text(["你们几点上班？"])
    await page.locator(".input").fill("长" * 2001)
    await page.locator(".send").click()
    await expect(page.locator(".message.notice.error")).to_have_text("消息太长（最多 2000 字）")
    await expect(page.locator(".message.mine")).to_have_count(1)

    # An agent writes (script tags included): it arrives as text, and the typing indicator shows first.
    base = str(server.make_url("")).rstrip("/")
    token = json.loads(await page.evaluate(f"localStorage.getItem('huiliu-chat:{base}:token')"))
    webchat = server.app[CHANNELS].webchat
    assert webchat is not None
    conversation_id = await webchat.conversation_of_visitor(token.split(".")[0])
    assert conversation_id is not None
    bus = webchat.omni.timeline.bus
    assert bus is not None
    await agent_typing(bus, conversation_id, True, "李娜")
    await expect(page.locator(".typing")).to_be_visible()
    await webchat.send_to_visitor(
        conversation_id, "您好<img src=x onerror=alert(1)>", Actor(type="agent", id="u1", name="李娜")
    )
    await expect(page.locator(".message.agent .text")).to_have_text("您好<img src=x onerror=alert(1)>")
    await expect(page.locator(".message.agent .who")).to_have_text("李娜")
    await expect(page.locator(".typing")).to_be_hidden()

    # A reload replays the conversation from the server: every message once.
    await page.reload()
    await expect(page.locator(".message.agent .text")).to_have_count(1)
    await expect(page.locator(".message.mine")).to_have_count(1)
    await expect(page.locator(".message.bot")).to_have_count(1)


async def test_the_widget_speaks_english_when_asked(browser: Browser, shop: str) -> None:
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    await page.goto(shop + "en")
    await expect(page.locator(".launcher")).to_have_text("Chat with us")
    await page.locator(".launcher").click()
    await page.locator(".input").fill("how long does shipping take?")
    await page.locator(".send").click()
    await expect(page.locator(".message.bot .text")).to_contain_text("Delivery takes", timeout=15000)
    await context.close()


async def code_in_sms_sink(admin: ApiClient, phone: str) -> str:
    """The verification code as the visitor's phone got it: the development sink, read by the admin API."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        status, entries, _ = await admin.request("GET", "/api/sms/sink", params={"to": phone})
        assert status == 200, entries
        if entries:
            [code] = re.findall(r"\d{6}", entries[0]["text"])[:1]
            return str(code)
        assert asyncio.get_running_loop().time() < deadline, "no code SMS in the sink"
        await asyncio.sleep(0.1)


async def test_a_visitor_proves_their_phone_number_in_the_widget_and_joins_the_callers_history(
    visitor_page: Page, shop: str, admin: ApiClient
) -> None:
    page = visitor_page
    status, caller, _ = await admin.request(
        "POST", "/api/customers/resolve", json={"identities": [{"kind": "phone", "value": "13800138066"}]}
    )
    assert status in (200, 201), caller
    caller_id = caller["customer"]["id"]
    await page.goto(shop)
    await page.locator(".launcher").click()
    await page.locator(".input").fill("你们几点上班？")
    await page.locator(".input").press("Enter")
    await expect(page.locator(".message.bot .text")).to_contain_text("9:00", timeout=15000)

    await page.locator(".verify").click()
    await expect(page.locator(".verify-intro")).to_contain_text("验证手机号或邮箱后")
    await page.locator(".verify-send").click()
    await expect(page.locator(".verify-status.error")).to_have_text("请输入手机号")
    await page.locator(".verify-phone").fill("<b>12</b>")
    await page.locator(".verify-send").click()
    await expect(page.locator(".verify-status.error")).to_have_text("手机号格式不正确")
    assert await page.locator(".verify-status b").count() == 0  # shown as text, never parsed

    await page.locator(".verify-phone").fill("138 0013 8066")
    await page.locator(".verify-send").click()
    await expect(page.locator(".verify-status")).to_have_text(
        "验证码已发送至 +86138****8066，10 分钟内有效。"
    )
    code = await code_in_sms_sink(admin, "+8613800138066")
    await page.locator(".verify-code").fill("000000" if code != "000000" else "111111")
    await page.locator(".verify-confirm").click()
    await expect(page.locator(".verify-status.error")).to_have_text("验证码不正确，还可以再试 4 次")
    await page.locator(".verify-code").fill(code)
    await page.locator(".verify-code").press("Enter")
    await expect(page.locator(".message.notice.verified")).to_have_text("手机号已验证，您的记录已关联。")
    await expect(page.locator(".verify-form")).to_be_hidden()
    await expect(page.locator(".verify")).to_be_hidden()

    # The chat is now on the caller's timeline.
    status, events, _ = await admin.request("GET", f"/api/customers/{caller_id}/timeline?limit=100")
    assert status == 200, events
    said = [e["body"].get("text") for e in events["events"] if e["kind"] == "message.in"]
    assert "你们几点上班？" in said


async def test_the_verification_form_speaks_english(browser: Browser, shop: str) -> None:
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    await page.goto(shop + "en")
    await page.locator(".launcher").click()
    await expect(page.locator(".message.welcome")).to_be_visible()  # connected: the greeting follows history
    await page.locator(".verify").click()
    await expect(page.locator(".verify-phone")).to_have_attribute("placeholder", "Phone number")
    await page.locator(".verify-phone").fill("12")
    await page.locator(".verify-send").click()
    await expect(page.locator(".verify-status.error")).to_have_text("That is not a valid phone number")
    await page.get_by_label("Email", exact=True).check()
    await expect(page.locator(".verify-status")).to_be_hidden()  # the phone's error went with the phone
    await expect(page.locator(".verify-email")).to_have_attribute("placeholder", "Email address")
    await page.locator(".verify-email").fill("me@home")
    await page.locator(".verify-send").click()
    await expect(page.locator(".verify-status.error")).to_have_text("That is not a valid email address")
    await context.close()


async def code_at_relay(relay: Relay, to: str) -> str:
    """The verification code as the visitor's mailbox got it: the mail the relay took for them."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        for message in await relay.notices():
            body = message.get_body(preferencelist=("plain",))
            if message["To"] == to and body is not None:
                [code] = re.findall(r"\b\d{6}\b", str(body.get_content()))[:1]
                return str(code)
        assert asyncio.get_running_loop().time() < deadline, "no code mail at the relay"
        await asyncio.sleep(0.1)


async def test_a_visitor_proves_their_email_with_the_keyboard_and_joins_the_history_of_that_customer(
    visitor_page: Page, shop: str, admin: ApiClient, relay: Relay
) -> None:
    page = visitor_page
    status, known, _ = await admin.request(
        "POST",
        "/api/customers/resolve",
        json={"identities": [{"kind": "email", "value": "zhou.min@example.com"}]},
    )
    assert status in (200, 201), known
    known_id = known["customer"]["id"]
    await admin.request(
        "POST",
        f"/api/customers/{known_id}/timeline",
        json={"kind": "message.in", "channel": "email", "body": {"text": "发票开了吗？"}},
    )
    await page.goto(shop)
    await page.locator(".launcher").click()
    await page.locator(".input").fill("你们几点上班？")
    await page.locator(".input").press("Enter")
    await expect(page.locator(".message.bot .text")).to_contain_text("9:00", timeout=15000)

    await page.locator(".verify").click()
    await expect(page.locator(".verify-phone")).to_be_focused()
    await page.keyboard.press("Shift+Tab")  # back to the choice of phone or email
    await page.keyboard.press("ArrowRight")
    await expect(page.get_by_label("邮箱", exact=True)).to_be_checked()
    await expect(page.locator(".verify-phone")).to_be_hidden()
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("邮箱地址")).to_be_focused()
    await page.keyboard.type("<b>zhou</b>")
    await page.keyboard.press("Enter")
    await expect(page.locator(".verify-status.error")).to_have_text("邮箱地址格式不正确")
    assert await page.locator(".verify-status b").count() == 0  # shown as text, never parsed

    await page.locator(".verify-email").fill("Zhou.Min@Example.com")
    await page.keyboard.press("Enter")
    await expect(page.locator(".verify-status")).to_have_text(
        "验证码已发送至 z***@example.com，10 分钟内有效。"
    )
    code_field = page.get_by_label("邮件中的验证码")
    await expect(code_field).to_be_focused()
    code = await code_at_relay(relay, "zhou.min@example.com")
    await page.keyboard.type("000000" if code != "000000" else "111111")
    await page.keyboard.press("Enter")
    await expect(page.locator(".verify-status.error")).to_have_text("验证码不正确，还可以再试 4 次")
    await code_field.fill(code)
    await page.keyboard.press("Enter")
    await expect(page.locator(".message.notice.verified")).to_have_text("邮箱已验证，您的记录已关联。")
    await expect(page.locator(".verify-form")).to_be_hidden()

    # The chat and the customer's email are one history now.
    status, events, _ = await admin.request("GET", f"/api/customers/{known_id}/timeline?limit=100")
    assert status == 200, events
    said = {(e["channel"], e["body"].get("text")) for e in events["events"] if e["kind"] == "message.in"}
    assert {("email", "发票开了吗？"), ("webchat", "你们几点上班？")} <= said
