"""Web chat as visitors meet it: a real python-socketio client on ``/visitor``, the bot answering from the
knowledge base, tickets and the CRM, handing off to a real agent socket with the context, and reconnects
that neither lose nor duplicate a message."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestServer

from core.db import Database
from omnichannel.channels.http import CHANNELS
from tests.channels.conftest import eventually
from tests.channels.webchat_client import Visitor, new_visitor_token
from tests.conftest import ApiClient
from tests.desktop.conftest import make_agent
from tests.test_api import assert_problem

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64


@pytest.fixture
async def visitors(server: TestServer, http: ApiClient) -> AsyncIterator[Any]:
    opened: list[Visitor] = []

    async def open_visitor(token: str | None = None, language: str = "zh") -> Visitor:
        visitor = Visitor(server, token or await new_visitor_token(http), language)
        await visitor.connect()
        opened.append(visitor)
        return visitor

    yield open_visitor
    await asyncio.gather(*(visitor.disconnect() for visitor in opened), return_exceptions=True)


async def outcomes(db: Database) -> list[dict[str, Any]]:
    return [doc async for doc in db["bot_outcomes"].find({}, sort=[("at", 1)])]


async def test_the_bot_answers_an_faq_from_the_knowledge_base_and_a_finished_chat_counts_as_resolved(
    visitors: Any, admin: ApiClient, agent: ApiClient, db: Database
) -> None:
    status, article, _ = await admin.request(
        "POST",
        "/api/kb/articles",
        json={
            "language": "zh",
            "title": "会员积分",
            "body": "每消费 1 元累积 1 积分，100 积分可抵 1 元。",
            "questions": ["积分怎么用", "积分有什么用"],
        },
    )
    assert status == 201, article
    status, body, headers = await agent.request(
        "POST", "/api/kb/articles", json={"language": "en", "title": "x", "body": "y"}
    )
    assert_problem(status, body, headers, 403, "forbidden_role")
    status, hits, _ = await agent.request("GET", "/api/kb/search", params={"q": "积分怎么用"})
    assert status == 200 and hits[0]["article"]["id"] == article["id"] and hits[0]["confidence"] == 1.0

    visitor = await visitors()
    ack = await visitor.say("请问积分有什么用？")
    assert ack["created"] is True and ack["ok"]["text"] == "请问积分有什么用？"
    reply = await visitor.next_reply()
    assert reply["text"] == "每消费 1 元累积 1 积分，100 积分可抵 1 元。" and reply["author"]["type"] == "bot"

    closed = await visitor.call("close")
    assert closed["ok"]["outcome"] == "resolved"
    [outcome] = await outcomes(db)
    assert outcome["outcome"] == "resolved" and outcome["channel"] == "webchat"
    assert set(outcome) >= {"conversation_id", "customer_id", "intent", "outcome", "channel", "at"}


async def test_journey_3_handoff_carries_the_context_to_the_agent_whose_reply_reaches_the_visitor(
    server: TestServer, http: ApiClient, visitors: Any, admin: ApiClient, db: Database
) -> None:
    await admin.request(
        "POST",
        "/api/kb/articles",
        json={
            "language": "zh",
            "title": "修改收货地址",
            "body": "发货前可在订单页面修改收货地址。",
            "questions": ["怎么改收货地址"],
        },
    )
    agent_user, agent_token = await make_agent(server, "chat_agent", {"webchat": 1, "lang_zh": 1})
    desk = socketio.AsyncClient(reconnection=False)
    offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_offer(data: dict[str, Any]) -> None:
        offers.put_nowait(data)

    desk.on("offer", on_offer, namespace="/agent")
    await desk.connect(
        str(server.make_url("/")),
        namespaces=["/agent"],
        auth={"token": agent_token},
        transports=["websocket"],
    )
    try:
        visitor = await visitors()
        await visitor.say("怎么改收货地址")
        assert (await visitor.next_reply())["text"] == "发货前可在订单页面修改收货地址。"
        await visitor.say("我要转人工")
        handoff = await visitor.next_reply()
        assert "人工" in handoff["text"]

        async with asyncio.timeout(10):
            pop = await offers.get()
        contact = pop["contact"]
        assert contact["kind"] == "chat" and contact["queue"] == "chat"
        # skills from the channel, the language and the intent's team (an address change: orders)
        assert contact["context"]["skills"] == {"webchat": 1, "lang_zh": 1, "orders": 1}
        assert contact["context"]["intent"] in ("logistics", "order_status")
        assert contact["context"]["handoff_reason"] == "requested"
        assert "修改收货地址" in pop["bot_summary"] and "修改收货地址" in contact["context"]["bot_answered"]
        history = [event["kind"] for event in pop["history"]]
        assert "bot.summary" in history and "message.in" in history

        agent = ApiClient(http.session, http.base, agent_token)
        status, accepted, _ = await agent.request("POST", f"/api/desktop/offers/{contact['id']}/accept")
        assert status == 200 and accepted["agent_id"] == agent_user.id
        status, sent, _ = await agent.request(
            "POST",
            f"/api/desktop/contacts/{contact['id']}/messages",
            json={"text": "您好，我是李娜，地址问题我来帮您。", "client_id": "agent-1"},
        )
        assert status == 201, sent
        while True:
            said = await visitor.next_reply()
            if said["kind"] == "message.sent":
                break
        assert said["text"] == "您好，我是李娜，地址问题我来帮您。" and said["author"]["type"] == "agent"

        await visitor.say("好的谢谢")  # the agent has the chat now: the bot stays quiet
        await asyncio.sleep(1.0)
        assert all(message["author"]["type"] != "bot" for message in list(visitor.inbox._queue))
    finally:
        await desk.disconnect()
    [outcome] = await outcomes(db)
    assert outcome["outcome"] == "handed_off"


async def test_a_resend_after_reconnect_is_stored_once_and_missed_messages_are_replayed(
    server: TestServer, http: ApiClient, visitors: Any, admin: ApiClient
) -> None:
    token = await new_visitor_token(http)
    visitor = await visitors(token)
    first = await visitor.say("你好", client_id="c-1")
    greeting = await visitor.next_reply()
    await visitor.disconnect()

    # While the visitor is away the bot and an agent say something on their conversation.
    webchat = server.app[CHANNELS].webchat
    conversation_id = first["ok"] and (await webchat.conversation_of_visitor(token.split(".")[0]))
    from omnichannel import Actor

    missed = await webchat.send_to_visitor(conversation_id, "您还在吗？", Actor(type="agent", name="李娜"))

    again = await visitors(token)
    resent = await again.say("你好", client_id="c-1")
    assert resent["created"] is False and resent["ok"]["id"] == first["ok"]["id"]
    replay = await again.call("history", {"after": greeting["id"]})
    assert [message["id"] for message in replay["ok"]] == [missed.id]
    everything = await again.call("history", {})
    assert everything["limits"]["max_chars"] == 2000
    ids = [message["id"] for message in everything["ok"]]
    assert len(ids) == len(set(ids)) == 3
    customer = (await webchat.visitor(token.split(".")[0]))["customer_id"]
    _, page, _ = await admin.request(
        "GET", f"/api/customers/{customer}/timeline", params={"kind": "message.in"}
    )
    assert len(page["events"]) == 1


async def test_missing_forged_or_expired_tokens_are_refused(server: TestServer, http: ApiClient) -> None:
    token = await new_visitor_token(http)
    visitor_id, issued, _ = token.split(".")
    for bad in (None, f"{visitor_id}.{issued}.forged-signature", "not-a-token"):
        visitor = Visitor(server, bad)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await visitor.connect()
    status, body, headers = await http.request(
        "POST", "/api/webchat/attachments", data=PNG, headers={"X-Visitor-Token": "x.1.y"}
    )
    assert_problem(status, body, headers, 403, "visitor_token_invalid")


async def test_oversized_messages_and_attachments_get_precise_errors_and_good_files_are_served_signed(
    server: TestServer, http: ApiClient, visitors: Any, settings: Any
) -> None:
    token = await new_visitor_token(http)
    visitor = await visitors(token)
    ack = await visitor.say("很" * (settings.webchat_max_chars + 1))
    assert ack["error"]["code"] == "message_too_long" and ack["error"]["limit"] == settings.webchat_max_chars
    ack = await visitor.call("message", {"text": "no id"})
    assert ack["error"]["code"] == "validation_failed"

    upload = {"X-Visitor-Token": token}
    too_big = b"a" * (settings.webchat_max_attachment_bytes + 1)
    status, body, headers = await http.request(
        "POST", "/api/webchat/attachments", data=too_big, headers=upload
    )
    assert_problem(status, body, headers, 413, "attachment_too_large")
    status, body, headers = await http.request(
        "POST", "/api/webchat/attachments", data=b"MZ\x90\x00\x03\x00\x00\x00" * 8, headers=upload
    )
    assert_problem(status, body, headers, 415, "attachment_type_not_allowed")

    status, stored, _ = await http.request(
        "POST", "/api/webchat/attachments", params={"name": "../../etc/shot.png"}, data=PNG, headers=upload
    )
    assert status == 201 and stored["content_type"] == "image/png" and stored["size"] == len(PNG)
    ack = await visitor.say("看这张图", attachment_id=stored["id"])
    url = ack["ok"]["attachment"]["url"]
    async with http.session.get(http.base + url) as response:
        assert response.status == 200 and await response.read() == PNG
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response.headers["Content-Security-Policy"]
    status, body, headers = await http.request("GET", url.split("?")[0])
    assert_problem(status, body, headers, 403, "signature_missing")
    status, body, headers = await http.request("GET", url.replace("sig=", "sig=x"))
    assert_problem(status, body, headers, 403, "signature_invalid")


async def test_ticket_status_and_order_lookups_are_answered_without_an_agent(
    visitors: Any, admin: ApiClient
) -> None:
    visitor = await visitors()
    await visitor.say("我要退货，订单号 12345")
    notice = await visitor.next_reply()  # the ticket engine's own notice, on the channel the customer used
    [number] = re.findall(r"T-\d{8}-\d{4}", notice["text"])
    assert notice["author"]["type"] == "system"
    await visitor.say("我的退货进度怎么样？")
    status_answer = await visitor.next_reply()
    assert number in status_answer["text"] and "已受理" in status_answer["text"]

    await visitor.say("我的订单 A12345 到哪了")
    order = await visitor.next_reply()
    assert "A12345" in order["text"] and "已付款" in order["text"] and "缺货" in order["text"]


async def test_two_questions_the_bot_cannot_answer_hand_off_to_a_person(
    server: TestServer, visitors: Any, db: Database
) -> None:
    visitor = await visitors(language="en")
    await visitor.say("zorblax quantum flux capacitor?")
    first = await visitor.next_reply()
    assert "didn't understand" in first["text"]
    await visitor.say("frobnicate the wibble please")
    second = await visitor.next_reply()
    assert "connecting you to an agent" in second["text"]
    contact = await eventually(
        lambda: db["queue_contacts"].find_one({"queue": "chat"}), "the chat contact in the ACD"
    )
    assert contact["context"]["handoff_reason"] == "low_confidence"
    assert contact["context"]["skills"] == {"webchat": 1, "lang_en": 1}
