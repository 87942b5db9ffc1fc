"""The agent desktop and the supervisor wallboard in headless chromium at 1366×768: an agent logs in, goes
available, an offer pops with the customer's history, they accept and chat; a call offer shows the IVR path
and live transcript and ends in wrap-up; the wallboard follows a waiting contact; stored XSS stays text.
Screenshots go to var/artifacts/."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect

from agent_desktop import AgentSkills, ContactKind, Desktop, NewContact, QueueConfig
from agent_desktop.http import DESKTOP
from agent_desktop.models import QueuePatch
from core.app import BUS, DATABASE
from ivr_flows import CallbackRequest, FakeCall
from ivr_flows.transcript import CallTranscript
from ivr_flows.understanding import Transcribed
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, NewEvent
from tests.channels.test_webchat_journeys import PNG
from tests.channels.webchat_client import Visitor, new_visitor_token
from tests.conftest import ApiClient
from tests.desktop.conftest import caller_with_history, queue_request

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts"
SCREEN = {"width": 1366, "height": 768}
# A media provider that records what the desktop asks of it (attach gets the page's live /agent socket).
RECORDING_MEDIA = """
window.mediaCalls = [];
const record = (name) => (...args) => { window.mediaCalls.push([name, ...args]); return Promise.resolve(); };
window.huiliuDesktop.registerMedia({
  attach: (callId, socket) => record("attach")(callId, Boolean(socket && socket.connected)),
  detach: record("detach"),
  hold: record("hold"),
  mute: record("mute"),
  sendDtmf: record("sendDtmf"),
  dial: record("dial"),
});
"""


async def log_in(page: Page, path: str, username: str, password: str) -> None:
    await page.set_viewport_size(SCREEN)
    await page.goto(path)
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name))


async def ready_agent(server: TestServer, agent: ApiClient) -> str:
    """agent1 with the after_sales skill and the after_sales queue; returns the agent's user id."""
    desktop: Desktop = server.app[DESKTOP]
    await desktop.store.create_queue(QueueConfig(id="after_sales", name="售后", skills={"after_sales": 1}))
    _, me, _ = await agent.request("GET", "/api/desktop/me")
    await desktop.agents.set_skills(me["user_id"], AgentSkills(skills={"after_sales": 2}, max_chats=3))
    return str(me["user_id"])


async def answered_call(page: Page, server: TestServer, agent: ApiClient) -> tuple[str, str]:
    """agent1 signed in on the page, available, with a caller's call offered and answered (Alt+A) through a
    recording media provider; (customer id, call id)."""
    await ready_agent(server, agent)
    await log_in(page, "/desktop", "agent1", "agent1-demo")
    await page.click("#state-available")
    await expect(page.locator("#agent-state")).to_have_text("就绪")
    customer_id, call_id = await caller_with_history(server)
    await server.app[DESKTOP].gateway.enqueue(queue_request(call_id))
    await expect(page.locator("#phone-answer")).to_be_enabled()
    await page.evaluate(RECORDING_MEDIA)
    await page.keyboard.press("Alt+a")
    await expect(page.locator("#phone-status")).to_contain_text("通话中")
    return customer_id, call_id


async def customer_with_sms_call_and_ticket(
    server: TestServer, agent: ApiClient, name: str
) -> tuple[str, str]:
    """A customer who texted, called and has an open ticket, now on web chat: (customer, conversation)."""
    omni = server.app[DESKTOP].acd.omni
    customer, _ = await omni.customers.resolve(
        [Identity(kind=IdentityKind.phone, value="13700137000")], name=name
    )
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    await omni.timeline.append(
        customer.id,
        NewEvent(kind="message.in", channel=Channel.sms, ts=earlier, body={"text": "快递三天没动了"}),
        Actor(type="customer"),
    )
    for minutes, kind in ((0, "call.started"), (4, "call.ended")):
        await omni.timeline.append(
            customer.id,
            NewEvent(
                kind=kind,
                channel=Channel.voice,
                ts=earlier + dt.timedelta(hours=1, minutes=minutes),
                body={"caller": "+8613700137000"},
            ),
            Actor(type="system"),
        )
    status, ticket, _ = await agent.request(
        "POST",
        "/api/tickets",
        json={
            "customer_id": customer.id,
            "category": "inquiry",
            "subject": "物流查询 TK-快递",
            "channel": "sms",
        },
    )
    assert status == 201, ticket
    conversation, _ = await omni.conversations.open(
        customer.id, NewConversation(channel=Channel.webchat, external_ref=f"chat-{uuid.uuid4().hex}")
    )
    await omni.timeline.append(
        customer.id,
        NewEvent(
            kind="message.in",
            channel=Channel.webchat,
            conversation_id=conversation.id,
            body={"text": "你好，我的快递到哪了？"},
        ),
        Actor(type="customer"),
    )
    return customer.id, conversation.id


async def enqueue_chat(server: TestServer, customer_id: str, conversation_id: str) -> str:
    contact = await server.app[DESKTOP].acd.add(
        NewContact(
            queue="after_sales",
            kind=ContactKind.chat,
            customer_id=customer_id,
            conversation_id=conversation_id,
            external_ref=f"ref-{conversation_id}",
        )
    )
    return contact.id


async def test_agent_goes_available_takes_a_chat_with_history_and_replies(
    page: Page, server: TestServer, agent: ApiClient
) -> None:
    await ready_agent(server, agent)
    customer_id, conversation_id = await customer_with_sms_call_and_ticket(server, agent, "王芳")
    await log_in(page, "/desktop", "agent1", "agent1-demo")
    await expect(page.locator("#link-state")).to_have_text("已连接")
    await expect(page.locator("#agent-state")).to_have_text("离线")
    # while the agent is offline the chat waits, and the desktop shows the queue it waits in
    contact_id = await enqueue_chat(server, customer_id, conversation_id)
    await expect(page.locator("#queue-list li[data-queue=after_sales]")).to_contain_text("1 位等待")
    await page.click("#state-available")
    await expect(page.locator("#offer-title")).to_contain_text("王芳")
    await expect(page.locator("#agent-state")).to_have_text("就绪")
    await expect(page.locator("#offer-accept")).to_be_focused()
    history = page.locator("#history")
    await expect(history.locator("li[data-channel=sms][data-kind='message.in']")).to_contain_text(
        "快递三天没动了"
    )
    await expect(history.locator("li[data-kind='call.started']")).to_have_count(1)
    await expect(history.locator("li[data-kind='call.ended']")).to_have_count(1)
    await expect(page.locator("#tickets .ticket-subject")).to_have_text("物流查询 TK-快递")
    await expect(page.locator("#customer-card")).to_contain_text("+8613700137000")
    await screenshot(page, "desktop-offer.png")

    await page.keyboard.press("Enter")  # the focused Accept button
    pane = page.locator(f".chat-pane[data-id='{contact_id}']")
    await expect(pane.locator(".message-in .message-text")).to_have_text(["你好，我的快递到哪了？"])
    await expect(page.locator("#agent-state")).to_have_text("会话中")
    await expect(page.locator("#queue-list")).to_have_text("暂无排队")
    await pane.locator("textarea").fill("您好，正在为您查询")
    await pane.locator("textarea").press("Enter")
    await expect(pane.locator(".message-out .message-text")).to_have_text(["您好，正在为您查询"])

    omni = server.app[DESKTOP].acd.omni
    page_of_chat = await omni.timeline.page(
        customer_id, kinds=["message.sent"], conversation_id=conversation_id
    )
    assert [event.body["text"] for event in page_of_chat.events] == ["您好，正在为您查询"]
    await omni.timeline.append(
        customer_id,
        NewEvent(
            kind="message.in", channel=Channel.webchat, conversation_id=conversation_id, body={"text": "谢谢"}
        ),
        Actor(type="customer"),
    )
    await expect(pane.locator(".message-in .message-text")).to_have_text(["你好，我的快递到哪了？", "谢谢"])

    await page.click("#tickets summary")
    await page.fill("#ticket-subject", "补发快递")
    await page.click("#ticket-create")
    await expect(page.locator("#tickets .ticket-subject")).to_have_count(2)
    await screenshot(page, "desktop.png")

    await page.click("#lang-switch button[data-lang=en]")
    await expect(page.locator("#agent-state")).to_have_text("In chat")
    await expect(pane.locator(".message-out .message-text")).to_have_text(["您好，正在为您查询"])
    await pane.get_by_role("button", name="End chat").click()
    await page.get_by_label("Resolved").check()
    await page.click("#wrap-up-submit")
    await expect(page.locator("#work-empty")).to_be_visible()
    contact = await server.app[DESKTOP].store.contact(contact_id)
    assert (contact.status.value, contact.wrap_up_codes) == ("ended", ["resolved"])


async def test_a_call_offer_shows_the_ivr_path_and_transcript_and_ends_in_wrap_up(
    page: Page, server: TestServer, agent: ApiClient
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await ready_agent(server, agent)
    await log_in(page, "/desktop", "agent1", "agent1-demo")
    await page.click("#state-available")
    await expect(page.locator("#agent-state")).to_have_text("就绪")
    _, call_id = await caller_with_history(server)
    await desktop.gateway.enqueue(queue_request(call_id))

    await expect(page.locator("#ivr .ivr-vars")).to_contain_text("12345")
    await expect(page.locator("#ivr .ivr-path")).to_contain_text("greeting")
    await expect(page.locator("#transcript li")).to_have_count(2)
    await expect(page.locator("#bot-summary")).to_contain_text("退货，订单 12345")
    await expect(page.locator("#phone-answer")).to_be_enabled()
    # the page's WebRTC softphone (softphone-provider.js) is plugged in; this test swaps in a recording
    # provider to see what the page asks of it (the real media is tests/softphone)
    await expect(page.locator("#phone-media-note")).to_have_count(0)
    await page.evaluate(RECORDING_MEDIA)
    await page.keyboard.press("Alt+a")
    await expect(page.locator("#phone-status")).to_contain_text("通话中")
    await expect(page.locator("#wrap-up-submit")).to_be_disabled()
    contact = await desktop.store.contact_by_ref(call_id)
    assert contact is not None and contact.conversation_id is not None
    await desktop.acd.omni.timeline.append(
        contact.customer_id,
        NewEvent(
            kind="transcript.final",
            channel=Channel.voice,
            conversation_id=contact.conversation_id,
            body={"text": "盒子也压坏了"},
        ),
        Actor(type="customer"),
    )
    await expect(page.locator("#transcript li")).to_have_count(3)  # the transcript goes on live
    await expect(page.locator("#transcript li").last).to_contain_text("盒子也压坏了")
    await screenshot(page, "desktop-call.png")
    await page.click("#phone-mute")
    await expect(page.locator("#phone-mute")).to_have_attribute("aria-pressed", "true")
    await page.get_by_role("group", name="拨号键盘").get_by_role("button", name="5").click()
    await page.click("#phone-hangup")  # no telephony node owns this call: the contact ends all the same
    await expect(page.locator("#agent-state")).to_have_text("话后整理")
    await expect(page.locator("#wrap-up-timer")).to_be_visible()
    await page.get_by_label("需跟进").check()
    await page.click("#wrap-up-submit")
    await expect(page.locator("#agent-state")).to_have_text("就绪")
    contact = await desktop.store.contact_by_ref(call_id)
    assert contact is not None and contact.wrap_up_codes == ["follow_up"]
    media_calls = await page.evaluate("window.mediaCalls")
    assert media_calls == [
        ["attach", call_id, True],
        ["mute", call_id, True],
        ["sendDtmf", call_id, "5"],
        ["detach", call_id],
    ]


async def test_wallboard_follows_a_waiting_contact_alerts_and_forces_an_agent_state(
    page: Page, server: TestServer, agent: ApiClient, supervisor: ApiClient
) -> None:
    await ready_agent(server, agent)
    await supervisor.request("PATCH", "/api/desktop/wallboard/config", json={"max_wait_seconds": 1})
    hostile = "<img src=x onerror=window.__xss=5>售后"
    await server.app[DESKTOP].store.update_queue("after_sales", QueuePatch(name=hostile))
    await log_in(page, "/wallboard", "supervisor", "supervisor-demo")
    row = page.locator("#queues-table tr[data-queue=after_sales]")
    await expect(row.locator(".waiting")).to_have_text("0")
    await expect(row.locator("th")).to_have_text(hostile)
    customer_id, conversation_id = await customer_with_sms_call_and_ticket(server, agent, "李雷")
    await enqueue_chat(server, customer_id, conversation_id)
    await expect(row.locator(".waiting")).to_have_text("1", timeout=1500)
    await expect(page.locator("#figure-waiting .figure")).to_have_text("1")
    alert = page.locator("#alerts .alert-item[data-rule=queue_wait]")
    await expect(alert).to_contain_text("队列 after_sales 等待已超过 0:01")

    agent_row = page.locator("tr[data-agent=agent1]")
    await expect(agent_row.locator(".agent-state")).to_have_text("离线")
    await agent_row.locator("select").select_option("available")
    await agent_row.get_by_role("button").click()
    await expect(agent_row.locator(".agent-state")).to_have_text("就绪")
    await expect(row.locator(".waiting")).to_have_text("0")  # the ACD offered the chat to the agent
    await expect(row.locator("td").nth(2)).to_have_text("1")
    assert await page.evaluate("window.__xss") is None
    # the bot's resolution per intent, named in the page's language, below the floor marked
    await server.app[DATABASE]["bot_outcomes"].insert_many(
        [
            {"conversation_id": f"c{i}", "intent": intent, "outcome": outcome, "at": dt.datetime.now(dt.UTC)}
            for i, (intent, outcome) in enumerate(
                [("order_status", "resolved"), ("order_status", "resolved"), ("complaint", "handed_off")]
            )
        ]
    )
    intents = page.locator("#bot-intents-table tbody tr")
    await expect(intents).to_have_count(2)
    await expect(intents.nth(0).locator("th")).to_have_text("订单状态查询")
    await expect(intents.nth(0).locator(".rate")).to_have_text("100%")
    await expect(intents.nth(1).locator(".rate.bad")).to_have_text("0%")
    await screenshot(page, "wallboard.png")


async def test_the_wallboard_shows_a_line_closed_against_its_office_hours_until_it_is_reopened(
    page: Page, admin: ApiClient, supervisor: ApiClient
) -> None:
    from tests.ivr.test_ivr_versions import V1

    status, _, _ = await admin.request(
        "POST", "/api/flows/main/versions", json={"yaml": V1, "activate": True}
    )
    assert status == 201
    await log_in(page, "/wallboard", "supervisor", "supervisor-demo")
    await expect(page.locator("#figure-waiting")).to_have_count(1)
    await expect(page.locator(".line-override")).to_have_count(0)

    url = "/api/flows/main/hours-override"
    reason = "台风停业 <b>typhoon</b>"
    status, _, _ = await supervisor.request(
        "PUT", url, json={"state": "closed", "minutes": 90, "reason": reason}
    )
    assert status == 200
    line = page.locator('.line-override[data-flow="main"][data-state="closed"]')
    await expect(line).to_contain_text("线路 main 已临时关闭，至 ", timeout=3000)  # the next push
    await expect(line).to_contain_text(f"（{reason}，supervisor）")
    await expect(page.locator("#lines b")).to_have_count(0)  # the reason is text
    _, board, _ = await supervisor.request("GET", "/api/desktop/wallboard")
    assert [(line["flow"], line["state"]) for line in board["lines"]] == [("main", "closed")]

    assert (await supervisor.request("DELETE", url))[0] == 204
    await expect(page.locator(".line-override")).to_have_count(0, timeout=3000)


async def test_stored_script_in_a_name_a_chat_message_and_a_ticket_title_renders_as_text(
    page: Page, server: TestServer, agent: ApiClient
) -> None:
    await ready_agent(server, agent)
    omni = server.app[DESKTOP].acd.omni
    name = '<img src=x onerror="window.__xss=1">'
    customer, _ = await omni.customers.resolve(
        [Identity(kind=IdentityKind.web_visitor, value="visitor-xss")], name=name
    )
    conversation, _ = await omni.conversations.open(customer.id, NewConversation(channel=Channel.webchat))
    message = "<script>window.__xss=2</script><img src=x onerror=window.__xss=3>"
    await omni.timeline.append(
        customer.id,
        NewEvent(
            kind="message.in",
            channel=Channel.webchat,
            conversation_id=conversation.id,
            body={"text": message},
        ),
        Actor(type="customer"),
    )
    subject = "<svg onload=window.__xss=4>退款</svg>"
    status, _, _ = await agent.request(
        "POST", "/api/tickets", json={"customer_id": customer.id, "category": "inquiry", "subject": subject}
    )
    assert status == 201
    await log_in(page, "/desktop", "agent1", "agent1-demo")
    await page.click("#state-available")
    await expect(page.locator("#agent-state")).to_have_text("就绪")
    contact_id = await enqueue_chat(server, customer.id, conversation.id)
    await expect(page.locator("#customer-name")).to_have_text(name)
    await expect(page.locator("#tickets .ticket-subject")).to_have_text(subject)
    await page.click("#offer-accept")
    pane = page.locator(f".chat-pane[data-id='{contact_id}']")
    await expect(pane.locator(".message-in .message-text")).to_have_text([message])
    await expect(pane.locator("h3")).to_have_text(name)
    await asyncio.sleep(0.3)
    injected: Any = await page.evaluate("window.__xss")
    assert injected is None
    assert await page.locator("main img, main svg, main script").count() == 0
    await screenshot(page, "desktop-xss.png")


async def test_two_chats_side_by_side_each_reply_goes_to_its_own_conversation(
    page: Page, server: TestServer, agent: ApiClient
) -> None:
    await ready_agent(server, agent)
    omni = server.app[DESKTOP].acd.omni
    chats = []
    for visitor, name, text in (("visitor-aaaa", "甲客户", "第一位"), ("visitor-bbbb", "乙客户", "第二位")):
        customer, _ = await omni.customers.resolve(
            [Identity(kind=IdentityKind.web_visitor, value=visitor)], name=name
        )
        conversation, _ = await omni.conversations.open(customer.id, NewConversation(channel=Channel.webchat))
        await omni.timeline.append(
            customer.id,
            NewEvent(
                kind="message.in",
                channel=Channel.webchat,
                conversation_id=conversation.id,
                body={"text": text},
            ),
            Actor(type="customer"),
        )
        chats.append((customer.id, conversation.id))
    await log_in(page, "/desktop", "agent1", "agent1-demo")
    await page.click("#state-available")
    await expect(page.locator("#agent-state")).to_have_text("就绪")
    ids = []
    for customer_id, conversation_id in chats:
        ids.append(await enqueue_chat(server, customer_id, conversation_id))
        await page.click("#offer-accept")
        await expect(page.locator(f".chat-pane[data-id='{ids[-1]}']")).to_be_visible()
    first, second = (page.locator(f".chat-pane[data-id='{contact_id}']") for contact_id in ids)
    await expect(first.locator("h3")).to_have_text("甲客户")
    await expect(second.locator("h3")).to_have_text("乙客户")
    await second.locator("textarea").fill("给乙的回复")
    await second.get_by_role("button", name="发送").click()
    await first.locator("textarea").fill("给甲的回复")
    await first.locator("textarea").press("Enter")
    await expect(second.locator(".message-out .message-text")).to_have_text(["给乙的回复"])
    await expect(first.locator(".message-out .message-text")).to_have_text(["给甲的回复"])
    await expect(page.locator(".work-item")).to_have_count(2)
    for (customer_id, conversation_id), expected in zip(chats, ("给甲的回复", "给乙的回复"), strict=True):
        sent = await omni.timeline.page(customer_id, kinds=["message.sent"], conversation_id=conversation_id)
        assert [event.body["text"] for event in sent.events] == [expected]
    await screenshot(page, "desktop-two-chats.png")


async def test_an_agent_opening_the_wallboard_is_told_it_is_for_supervisors(page: Page) -> None:
    await log_in(page, "/wallboard", "agent1", "agent1-demo")
    await expect(page.locator("#board-denied")).to_have_text("监控大屏仅供班长和管理员使用。")
    await expect(page.locator("#queues-table")).to_have_count(0)
    await page.click("#lang-switch button[data-lang=en]")
    await expect(page.locator("#board-denied")).to_have_text("The wallboard is for supervisors and admins.")
    await page.click("#logout")
    await expect(page.locator("#login-submit")).to_have_text("Sign in")


async def test_the_caller_hanging_up_ends_the_call_on_the_page_after_the_live_words_showed(
    page: Page, server: TestServer, agent: ApiClient
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    customer_id, call_id = await answered_call(page, server, agent)

    # what the caller is saying shows as it is recognised, then gives way to the final words
    said = CallTranscript(FakeCall(call_id=call_id), server.app[BUS])
    await said(Transcribed(final=False, body={"text": "还有一个问题"}))
    await expect(page.locator("#transcript .partial")).to_have_text("还有一个问题")

    contact = await desktop.store.contact_by_ref(call_id)
    assert contact is not None
    await desktop.acd.omni.timeline.append(
        customer_id,
        NewEvent(
            kind="call.ended",
            channel=Channel.voice,
            conversation_id=contact.conversation_id,
            body={"call_id": call_id, "cause": "hung_up"},
        ),
        Actor(type="system", name="telephony"),
    )
    await expect(page.locator("#notice")).to_contain_text("客户已挂断")
    await expect(page.locator("#agent-state")).to_have_text("话后整理")
    await expect(page.locator("#phone-status")).not_to_contain_text("通话中")
    await page.get_by_label("已解决").check()
    await page.click("#wrap-up-submit")
    await expect(page.locator("#agent-state")).to_have_text("就绪")
    assert await page.evaluate("window.mediaCalls") == [["attach", call_id, True], ["detach", call_id]]


async def test_a_web_chat_shows_typing_both_ways_files_and_a_reply_that_never_arrived(
    page: Page, server: TestServer, agent: ApiClient, http: ApiClient
) -> None:
    await ready_agent(server, agent)
    await log_in(page, "/desktop", "agent1", "agent1-demo")
    await page.click("#state-available")
    await expect(page.locator("#agent-state")).to_have_text("就绪")
    token = await new_visitor_token(http)
    visitor = Visitor(server, token)
    await visitor.connect()
    try:
        await visitor.call("handoff")
        await page.click("#offer-accept")
        pane = page.locator(".chat-pane")
        await expect(pane).to_have_count(1)

        await visitor.call("typing", {"typing": True})
        await expect(pane.locator(".chat-typing")).to_have_text("客户正在输入…")
        await pane.locator("textarea").press_sequentially("您好")
        async with asyncio.timeout(5):
            shown = await visitor.typing.get()
        assert shown["typing"] is True

        status, stored, _ = await http.request(
            "POST",
            "/api/webchat/attachments",
            params={"name": "receipt.png"},
            data=PNG,
            headers={"X-Visitor-Token": token},
        )
        assert status == 201
        await visitor.say("这是小票", attachment_id=stored["id"])
        await expect(pane.locator(".message-in .message-text")).to_have_text(["这是小票"])
        async with page.expect_download() as download:
            await pane.get_by_role("button", name="📎 receipt.png").click()
        saved = await (await download.value).path()
        assert await asyncio.to_thread(Path(saved).read_bytes) == PNG

        contact_id = await pane.get_attribute("data-id")
        contact = await server.app[DESKTOP].store.contact(str(contact_id))
        await server.app[DESKTOP].acd.omni.timeline.append(
            contact.customer_id,
            NewEvent(
                kind="message.failed",
                channel=Channel.webchat,
                conversation_id=contact.conversation_id,
                body={"event_id": "e1", "error": "the visitor left", "attempts": 6},
            ),
            Actor(type="system", name="channels"),
        )
        await expect(pane.locator(".message-failed")).to_have_text(
            re.compile("未能送达客户：the visitor left")
        )
        await screenshot(page, "desktop-chat-typing.png")
    finally:
        await visitor.disconnect()


async def test_an_agent_calls_back_a_caller_who_asked_for_it_and_nobody_else_can_take_it(
    page: Page, server: TestServer, agent: ApiClient
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await ready_agent(server, agent)
    _, call_id = await caller_with_history(server)
    await desktop.gateway.enqueue(queue_request(call_id))
    await desktop.gateway.withdraw(call_id, "timeout")
    await desktop.gateway.request_callback(
        CallbackRequest(
            call_id=call_id,
            number="+8613800138000",
            queue="after_sales",
            context=queue_request(call_id).context,
        )
    )
    await log_in(page, "/desktop", "agent1", "agent1-demo")
    await page.evaluate(RECORDING_MEDIA)
    row = page.locator("#callbacks li")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("+8613800138000")
    await row.get_by_role("button", name="回电").click()
    await expect(page.locator("#callbacks")).to_have_count(0)
    calls = await page.evaluate("window.mediaCalls")
    assert ["dial", "+8613800138000"] in calls
    contact = await desktop.store.contact_by_ref(call_id)
    assert contact is not None and contact.callback_by is not None
    status, body, _ = await agent.request("POST", f"/api/desktop/callbacks/{contact.id}/take")
    assert status == 409 and body["code"] == "callback_taken"


async def test_a_blind_transfer_hands_the_call_over_and_a_refused_one_keeps_it_with_the_reason(
    page: Page, server: TestServer, agent: ApiClient
) -> None:
    """The blind-transfer button posts the target (no worker owns the call here: the test answers the
    route). Refused (the call ended meanwhile), the agent keeps the call and reads why; accepted, their part
    of the call is over (wrap-up)."""
    await answered_call(page, server, agent)
    asked: list[Any] = []
    refuse = True

    async def transfer_route(route: Any) -> None:
        asked.append(route.request.post_data_json)
        if refuse:
            problem = {
                "type": "about:blank",
                "title": "Conflict",
                "status": 409,
                "code": "call_not_active",
                "detail": "通话已结束 / the call has ended",
            }
            await route.fulfill(
                status=409, json=problem, headers={"content-type": "application/problem+json"}
            )
        else:
            await route.fulfill(status=204)

    await page.route(re.compile(r".*/api/calls/[^/]+/transfer$"), transfer_route)
    await page.click("#phone-blind")  # no target yet: nothing is sent, the target field asks for one
    await expect(page.locator("#transfer-target")).to_be_focused()
    await page.fill("#transfer-target", " 8001 ")
    await page.click("#phone-blind")
    await expect(page.locator("#error-text")).to_contain_text("通话已结束")
    await expect(page.locator("#phone-status")).to_contain_text("通话中")
    refuse = False
    await page.click("#phone-blind")
    await expect(page.locator("#agent-state")).to_have_text("话后整理")
    assert asked == [{"target": "8001"}, {"target": "8001"}]


async def test_an_attended_transfer_consults_the_target_then_completes_and_the_page_follows_the_target(
    page: Page, server: TestServer, agent: ApiClient
) -> None:
    """The page's side of a consultation: the telephony side (who hears whom) is
    tests/softphone/test_softphone_consult.py; here no worker owns the call, so the three consult routes
    are answered by the test while the page's socket gets the real ``call.consult`` relay."""
    desktop: Desktop = server.app[DESKTOP]
    customer_id, call_id = await answered_call(page, server, agent)

    asked: list[tuple[str, Any]] = []
    answer = asyncio.Event()

    async def consult_route(route: Any) -> None:
        request = route.request
        asked.append((request.url.rsplit("/api/calls/", 1)[1], request.post_data_json))
        if request.url.endswith("/consult"):
            await answer.wait()  # the target rings until the test lets it answer
            body = {"call_id": call_id, "target": "8001", "consult_call_id": "leg-1"}
            await route.fulfill(status=200, json=body)
        else:
            await route.fulfill(status=204)

    await page.route(re.compile(r".*/api/calls/[^/]+/consult(/(complete|cancel))?$"), consult_route)
    await page.fill("#transfer-target", "8001")
    await page.click("#phone-attended")
    await expect(page.locator("#consult-status")).to_have_text("正在呼叫 8001…客户在等待中")
    await expect(page.locator("#phone-consult-complete")).to_be_disabled()
    await expect(page.locator("#phone-hold")).to_be_disabled()  # the caller is on hold already
    answer.set()
    await expect(page.locator("#consult-status")).to_have_text("正在与 8001 通话，客户在等待中")
    await expect(page.locator("#phone-consult-complete")).to_be_focused()
    await screenshot(page, "desktop-consult.png")

    # the target hangs up: the telephony worker writes it on the caller's timeline, the page is told
    contact = await desktop.store.contact_by_ref(call_id)
    assert contact is not None
    await desktop.acd.omni.timeline.append(
        customer_id,
        NewEvent(
            kind="call.consult_ended",
            channel=Channel.voice,
            conversation_id=contact.conversation_id,
            body={"call_id": call_id, "target": "sip:8001@front", "outcome": "target_hung_up"},
        ),
        Actor(type="system", name="telephony"),
    )
    await expect(page.locator("#notice")).to_contain_text("被咨询方已挂断")
    await expect(page.locator("#consult-status")).to_have_count(0)
    await expect(page.locator("#phone-status")).to_contain_text("通话中")

    # once more, and this time the agent hands the caller over: their part of the call is over
    await page.click("#phone-attended")
    await expect(page.locator("#phone-consult-complete")).to_be_enabled()
    await page.keyboard.press("Enter")  # the focus is on "complete transfer"
    await expect(page.locator("#agent-state")).to_have_text("话后整理")
    assert asked == [
        (f"{call_id}/consult", {"target": "8001"}),
        (f"{call_id}/consult", {"target": "8001"}),
        (f"{call_id}/consult/complete", None),
    ]
    # English works too
    await page.get_by_role("button", name="English").click()
    await expect(page.locator("#agent-state")).to_have_text("Wrap-up")
