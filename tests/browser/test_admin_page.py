"""The admin page in a real browser: login, customer search, one customer's timeline, language, and XSS."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect

from omnichannel.channels.http import CHANNELS
from tests.conftest import ApiClient

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def create_customer(api: ApiClient, phone: str, name: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"identities": [{"kind": "phone", "value": phone}]}
    if name is not None:
        payload["name"] = name
    status, body, _ = await api.request("POST", "/api/customers/resolve", json=payload)
    assert status == 201, body
    customer: dict[str, Any] = body["customer"]
    return customer


async def append_event(
    api: ApiClient, customer_id: str, kind: str, channel: str, ts: str, body: dict[str, Any]
) -> dict[str, Any]:
    status, result, _ = await api.request(
        "POST",
        f"/api/customers/{customer_id}/timeline",
        json={"kind": kind, "channel": channel, "ts": ts, "body": body, "idempotency_key": str(uuid.uuid4())},
    )
    assert status == 201, result
    event: dict[str, Any] = result["event"]
    return event


async def log_in(page: Page, username: str, password: str) -> None:
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")


async def timeline_ids(page: Page) -> list[str]:
    ids: list[str] = await page.locator("#timeline > li").evaluate_all(
        "items => items.map(i => i.dataset.id)"
    )
    return ids


async def test_agent_sees_translated_error_for_wrong_password_then_the_customer_list(
    page: Page, admin: ApiClient
) -> None:
    await create_customer(admin, "13800138000", "王芳 Wang Fang")
    await page.goto("/admin")

    await log_in(page, "agent1", "not-the-password")
    await expect(page.locator("#login-error")).to_have_text("用户名或密码错误。")
    await expect(page.locator("#customers-table")).to_have_count(0)

    await log_in(page, "agent1", "agent1-demo")
    await expect(page.locator(".customer-row")).to_have_count(1)
    await expect(page.locator(".customer-row .customer-name")).to_have_text("王芳 Wang Fang")
    await expect(page.locator(".customer-row .identity-value")).to_have_text("+8613800138000")
    await expect(page.locator("#login-form")).to_have_count(0)
    await expect(page.locator("#who-name")).to_have_text("李娜 Li Na")
    await expect(page.locator("#who-role")).to_have_text("坐席")
    await expect(page).to_have_url(re.compile(r"/admin#/customers$"))


async def test_repeated_wrong_passwords_lock_the_login_and_the_page_says_when_to_retry(
    page: Page, http: ApiClient
) -> None:
    for _ in range(5):
        status, _, _ = await http.request(
            "POST", "/api/auth/login", json={"username": "agent2", "password": "wrong-password"}
        )
        assert status == 401
    await page.goto("/admin")
    await log_in(page, "agent2", "agent2-demo")
    await expect(page.locator("#login-error")).to_have_text(
        re.compile(r"^登录失败次数过多，请 \d+ 秒后再试。$")
    )
    await expect(page.locator("#who")).to_be_hidden()


async def test_stored_markup_in_names_and_messages_renders_as_text(page: Page, admin: ApiClient) -> None:
    name = 'Mallory <img src=x onerror="window.__xss=1">'
    script = "<script>window.__xss=1</script>"
    customer = await create_customer(admin, "13900139000", name)
    await append_event(
        admin,
        customer["id"],
        "message.in",
        "webchat",
        "2025-03-01T09:00:00Z",
        {"text": script, "<b>page</b>": '<img src=x onerror="window.__xss=1">'},
    )
    await page.goto("/admin")
    await log_in(page, "agent1", "agent1-demo")

    await expect(page.locator(".customer-row .customer-name")).to_have_text(name)
    await page.click(".customer-row a")
    await expect(page.locator("#customer-title .customer-name")).to_have_text(name)
    await expect(page.locator("#timeline .event-text")).to_have_text(script)
    await expect(page.locator("#timeline .event-field dt")).to_have_text("<b>page</b>")
    await expect(page.locator("#timeline .event-field dd")).to_have_text(
        '<img src=x onerror="window.__xss=1">'
    )

    note = '<img src=x onerror="window.__xss=1"> typed by an agent'
    await page.fill("#note-text", note)
    await page.click("#note-submit")
    await expect(page.locator("#timeline > li").first.locator(".event-text")).to_have_text(note)

    assert await page.locator("#app img, #app script, #app b").count() == 0
    assert await page.evaluate("window.__xss") is None


async def test_customer_timeline_reads_newest_first_filters_by_channel_and_keeps_a_new_note(
    page: Page, http: ApiClient
) -> None:
    agent2 = await http.as_user("agent2", "agent2-demo")
    customer = await create_customer(agent2, "13700137000", "Zhang Wei")
    seeded = [  # deliberately not in time order
        ("call.ended", "voice", "2025-03-01T09:07:00Z", {"duration_s": 420, "disposition": "resolved"}),
        (
            "message.in",
            "email",
            "2025-03-01T08:00:00Z",
            {"subject": "Invoice", "text": "Where is my invoice?"},
        ),
        ("ticket.created", "internal", "2025-03-01T12:05:00Z", {"ticket_id": "T-4521", "priority": "normal"}),
        ("message.in", "wechat", "2025-03-01T10:15:00Z", {"text": "Thanks, the invoice arrived."}),
        ("call.started", "voice", "2025-03-01T09:00:00Z", {"from": "+8613700137000", "queue": "billing"}),
        ("message.out", "webchat", "2025-03-01T11:30:00Z", {"text": "You're welcome! Anything else?"}),
        ("survey.completed", "sms", "2025-03-01T12:30:00Z", {"score": 5}),
    ]
    events = [await append_event(agent2, customer["id"], *event) for event in seeded]
    newest_first = [event["id"] for event in sorted(events, key=lambda event: event["ts"], reverse=True)]
    by_id = {event["id"]: event for event in events}

    await page.goto(f"/admin#/customers/{customer['id']}")
    await log_in(page, "agent2", "agent2-demo")
    await expect(page.locator("#customer-title .customer-name")).to_have_text("Zhang Wei")
    await expect(page.locator("#timeline > li")).to_have_count(len(seeded))
    assert await timeline_ids(page) == newest_first
    first = page.locator("#timeline > li").first
    await expect(first.locator(".event-kind")).to_have_text("survey.completed")  # unknown kind: raw
    call_started = page.locator('#timeline > li[data-kind="call.started"]')
    await expect(call_started.locator(".event-kind")).to_have_text("Call started")
    await expect(call_started.locator("time")).to_have_text("2025-03-01 17:00:00")  # Asia/Shanghai
    await expect(call_started.locator(".event-actor")).to_have_text("Alex Chen")
    await expect(call_started.locator(".event-field dt")).to_have_text(["from", "queue"])
    await expect(call_started.locator(".event-field dd")).to_have_text(["+8613700137000", "billing"])

    await page.click('#channel-filter [data-channel="voice"]')
    voice = [event_id for event_id in newest_first if by_id[event_id]["channel"] == "voice"]
    await expect(page.locator("#timeline > li")).to_have_count(len(voice))
    assert await timeline_ids(page) == voice
    await page.click('#channel-filter [data-channel="wechat"]')
    voice_or_wechat = [e for e in newest_first if by_id[e]["channel"] in ("voice", "wechat")]
    await expect(page.locator("#timeline > li")).to_have_count(len(voice_or_wechat))
    assert await timeline_ids(page) == voice_or_wechat
    await page.click("#channel-filter button:not([data-channel])")
    await expect(page.locator("#timeline > li")).to_have_count(len(seeded))

    note = "Customer will call back about the refund tomorrow morning."
    await page.fill("#note-text", note)
    await page.click("#note-submit")
    await expect(page.locator("#timeline > li")).to_have_count(len(seeded) + 1)
    await expect(first).to_have_attribute("data-kind", "note.added")
    await expect(first.locator(".event-text")).to_have_text(note)
    await expect(first.locator(".event-kind")).to_have_text("Note added")
    await expect(page.locator("#note-text")).to_have_value("")

    await page.reload()
    await expect(page.locator("#timeline > li")).to_have_count(len(seeded) + 1)
    await expect(first.locator(".event-text")).to_have_text(note)
    status, stored, _ = await agent2.request("GET", f"/api/customers/{customer['id']}/timeline?limit=1")
    assert status == 200
    [stored_note] = stored["events"]
    assert (stored_note["kind"], stored_note["channel"], stored_note["body"]) == (
        "note.added",
        "internal",
        {"text": note},
    )
    assert stored_note["actor"]["name"] == "Alex Chen"
    assert UUID.match(stored_note["idempotency_key"])

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "admin-timeline.png", full_page=True)


async def test_long_lists_page_with_more_and_load_older(page: Page, admin: ApiClient) -> None:
    customers = [await create_customer(admin, f"1360013{n:04d}", f"Customer {n:02d}") for n in range(52)]
    oldest = customers[0]
    for minute in range(53):
        await append_event(
            admin,
            oldest["id"],
            "message.in",
            "sms",
            f"2025-03-01T10:{minute:02d}:00Z",
            {"text": f"sms {minute}"},
        )
    await page.goto("/admin")
    await log_in(page, "agent2", "agent2-demo")

    await expect(page.locator(".customer-row")).to_have_count(50)
    await page.click("#customers-more")
    await expect(page.locator(".customer-row")).to_have_count(52)
    await expect(page.locator("#customers-more")).to_have_count(0)
    await expect(page.locator(".customer-row").last.locator(".customer-name")).to_have_text("Customer 00")

    await page.fill("#customer-search", "Customer 00")
    await expect(page.locator(".customer-row")).to_have_count(1)
    await expect(page).to_have_url(re.compile(r"#/customers\?q=Customer%2000$"))
    await page.click(".customer-row a")
    await expect(page.locator("#timeline > li")).to_have_count(50)
    await page.click("#timeline-older")
    await expect(page.locator("#timeline > li")).to_have_count(53)
    await expect(page.locator("#timeline-older")).to_have_count(0)
    await expect(page.locator("#timeline > li").last.locator(".event-text")).to_have_text("sms 0")


async def test_language_switch_toggles_the_interface_and_is_remembered(page: Page, admin: ApiClient) -> None:
    customer = await create_customer(admin, "13600136000")
    await append_event(admin, customer["id"], "call.started", "voice", "2025-03-01T09:00:00Z", {})
    await page.goto("/admin")
    await expect(page.locator(".login-heading")).to_have_text("登录")  # browser language before login

    await log_in(page, "agent2", "agent2-demo")  # agent2's profile says English
    await expect(page.locator("#nav-customers")).to_have_text("Customers")
    await expect(page.locator("#who-role")).to_have_text("Agent")
    await expect(page.locator(".customer-row .customer-name")).to_have_text("unnamed")
    await expect(page.locator("#customers-table th").first).to_have_text("Name")
    await expect(page.locator('#lang-switch [data-lang="en"]')).to_have_attribute("aria-pressed", "true")

    await page.click('#lang-switch [data-lang="zh"]')
    await expect(page.locator("#nav-customers")).to_have_text("客户")
    await expect(page.locator("#who-role")).to_have_text("坐席")
    await expect(page.locator(".customer-row .customer-name")).to_have_text("未命名")
    await expect(page.locator("#customers-table th").first).to_have_text("姓名")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")

    await page.click(".customer-row a")
    await expect(page.locator("#timeline .event-kind")).to_have_text("来电开始")
    await expect(page.locator('#channel-filter [data-channel="voice"]')).to_have_text("语音")
    await page.reload()
    await expect(page.locator("#timeline .event-kind")).to_have_text("来电开始")  # remembered

    await page.click('#lang-switch [data-lang="en"]')
    await expect(page.locator("#timeline .event-kind")).to_have_text("Call started")
    await expect(page.locator('#channel-filter [data-channel="voice"]')).to_have_text("Voice")
    await expect(page.locator("#back-to-customers")).to_have_text("← Customers")


async def test_logout_revokes_the_token_and_an_unknown_customer_shows_the_error_bar(
    page: Page, http: ApiClient
) -> None:
    await page.goto("/admin#/customers/000000000000000000000000")
    await log_in(page, "agent1", "agent1-demo")
    await expect(page.locator("#error-bar")).to_be_visible()
    await expect(page.locator("#error-text")).to_have_text("找不到该客户。")
    await page.click("#error-close")
    await expect(page.locator("#error-bar")).to_be_hidden()

    token = await page.evaluate("sessionStorage.getItem('huiliu.token')")
    assert token
    await page.click("#logout")
    await expect(page.locator("#login-form")).to_be_visible()
    await expect(page.locator("#who")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('huiliu.token')") is None
    status, body, _ = await ApiClient(http.session, http.base, token).request("GET", "/api/auth/me")
    assert (status, body["code"]) == (401, "invalid_token")


async def test_a_revoked_session_returns_to_login_and_back_to_the_same_screen(
    page: Page, http: ApiClient, admin: ApiClient
) -> None:
    customer = await create_customer(admin, "13500135000", "Li Lei")
    await page.goto("/admin")
    await log_in(page, "agent1", "agent1-demo")
    await expect(page.locator(".customer-row")).to_have_count(1)

    token = await page.evaluate("sessionStorage.getItem('huiliu.token')")
    status, _, _ = await ApiClient(http.session, http.base, token).request("POST", "/api/auth/logout")
    assert status == 204
    await page.click(".customer-row a")
    await expect(page.locator("#login-error")).to_have_text("登录已过期，请重新登录。")
    await expect(page.locator("#who")).to_be_hidden()

    await log_in(page, "agent1", "agent1-demo")
    await expect(page.locator("#customer-title .customer-name")).to_have_text("Li Lei")
    await expect(page).to_have_url(re.compile(f"#/customers/{customer['id']}$"))


async def test_a_supervisor_closes_a_line_for_a_typhoon_and_opens_it_again(
    page: Page, admin: ApiClient, supervisor: ApiClient
) -> None:
    from tests.ivr.test_ivr_versions import V1

    status, _, _ = await admin.request(
        "POST", "/api/flows/main/versions", json={"yaml": V1, "activate": True}
    )
    assert status == 201
    url = "/api/flows/main/hours-override"
    await page.goto("/admin")
    await log_in(page, "supervisor", "supervisor-demo")
    await page.click("#nav-lines")
    row = page.locator('.line-row[data-flow="main"]')
    await expect(row.locator(".line-state")).to_have_text("按营业时间")
    await expect(row.locator("td").nth(1)).to_have_text("v1")

    # no reason: refused on the page, nothing sent
    await row.locator('button[data-action="closed"]').click()
    await expect(row.locator(".form-error")).to_have_text("请先填写原因。")
    assert (await supervisor.request("GET", url))[0] == 404

    await row.locator(".line-reason").fill("台风停业 <img src=x onerror=alert(1)>")
    await row.locator(".line-minutes").select_option("120")
    await row.locator('button[data-action="closed"]').click()
    await expect(row.locator('.line-state[data-state="closed"] strong')).to_contain_text("已临时关闭，至 ")
    await expect(row.locator(".line-state .muted")).to_have_text(
        "supervisor：台风停业 <img src=x onerror=alert(1)>"
    )
    await expect(page.locator("img")).to_have_count(0)  # the reason is text, never markup
    await page.screenshot(path=SCREENSHOTS / "admin-lines.png", full_page=True)
    status, override, _ = await supervisor.request("GET", url)
    assert status == 200 and override["state"] == "closed" and override["set_by"] == "supervisor"

    await page.click('button[data-lang="en"]')
    await expect(row.locator(".line-state strong")).to_contain_text("Closed until ")
    await row.locator('button[data-action="clear"]').click()
    await expect(row.locator(".line-state")).to_have_text("Office hours")
    assert (await supervisor.request("GET", url))[0] == 404


async def test_agents_have_no_phone_lines_page(page: Page, admin: ApiClient) -> None:
    await page.goto("/admin#/lines")
    await log_in(page, "agent1", "agent1-demo")
    await expect(page.locator("#customers-table, #customers-empty")).to_have_count(1)
    await expect(page.locator("#nav-lines")).to_be_hidden()
    await expect(page).to_have_url(re.compile(r"/admin#/customers$"))


async def test_an_admin_reads_the_development_sms_inbox_and_filters_it_by_number(
    page: Page, admin: ApiClient, server: TestServer
) -> None:
    sms = server.app[CHANNELS].sms
    for to, text in (("13800138000", "您的服务单 T0001 已受理"), ("13900139000", "<b>验证码</b> 123456")):
        status, body, _ = await admin.request(
            "POST", "/api/sms/messages", json={"to": to, "text": text, "transactional": True}
        )
        assert status == 202, body
        assert await sms.deliver(body["id"]) is None  # what the Celery task does (no worker runs here)
    await page.goto("/admin")
    await log_in(page, "admin", "admin-demo")
    await page.click("#nav-sms")

    rows = page.locator("#sms-table .sms-row")
    await expect(rows).to_have_count(2)
    await expect(rows.first.locator(".sms-text")).to_have_text("<b>验证码</b> 123456")  # text, not markup
    await expect(page.locator("#sms-table b")).to_have_count(0)
    await page.screenshot(path=SCREENSHOTS / "admin-sms.png", full_page=True)

    await page.fill("#sms-to", "13800138000")
    await page.click('#sms-filter button[type="submit"]')
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator(".sms-text")).to_have_text("您的服务单 T0001 已受理")
    await expect(rows.first.locator(".sms-to")).to_have_text("+8613800138000")
    await expect(page).to_have_url(re.compile(r"#/sms\?to=13800138000$"))


async def test_only_admins_have_the_sms_inbox(page: Page, admin: ApiClient) -> None:
    await page.goto("/admin#/sms")
    await log_in(page, "supervisor", "supervisor-demo")
    await expect(page.locator("#nav-lines")).to_be_visible()
    await expect(page.locator("#nav-sms")).to_be_hidden()
    await expect(page).to_have_url(re.compile(r"/admin#/customers$"))
