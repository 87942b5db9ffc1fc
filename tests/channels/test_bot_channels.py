"""Journey 2 of DESIGN.md with the bot in front: the customer who asked for a return on WeChat asks how it is
going and gets the ticket's status; angry, they are handed to an agent with the context, and the agent's
reply reaches them on WeChat. Signed callbacks exactly as the platform sends them."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestServer

from core.db import Database
from tests.channels.conftest import customer_with, eventually, post_sms_webhook, post_wechat, wechat_text
from tests.conftest import ApiClient
from tests.desktop.conftest import make_agent

OPENID = "oHuiliu_journey_0002"


def passive_text(xml: str) -> str:
    [content] = re.findall(r"<Content><!\[CDATA\[(.*?)\]\]></Content>", xml, re.S)
    return content


async def sent_on_wechat(db: Database, openid: str) -> list[str]:
    return [doc["text"] async for doc in db["wechat_sink"].find({"openid": openid}, sort=[("at", 1)])]


async def test_journey_2_the_bot_answers_the_return_status_on_wechat_then_hands_an_angry_customer_over(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database
) -> None:
    await post_wechat(http, wechat_text(OPENID, "我要退货，订单号 12345", "9001"))
    [notice] = await eventually(lambda: sent_on_wechat(db, OPENID), "the ticket number on WeChat")
    [number] = re.findall(r"T-\d{8}-\d{4}", notice)

    status, answer, _ = await post_wechat(http, wechat_text(OPENID, "我的退货进度怎么样？", "9002"))
    assert status == 200
    assert number in passive_text(answer) and "已受理" in passive_text(answer)

    _, agent_token = await make_agent(server, "wechat_agent", {"wechat": 1, "lang_zh": 1, "complaints": 1})
    status, answer, _ = await post_wechat(
        http, wechat_text(OPENID, "太差了，我要投诉！你们这什么垃圾服务", "9003")
    )
    assert "人工" in passive_text(answer)
    contact = await eventually(
        lambda: db["queue_contacts"].find_one({"queue": "chat", "context.channel": "wechat"}),
        "the WeChat contact in the ACD",
    )
    assert contact["context"]["handoff_reason"] == "negative_sentiment" and contact["priority"] == "high"
    assert contact["context"]["skills"] == {"wechat": 1, "lang_zh": 1, "complaints": 1}
    assert any("ticket_status" in source or number in source for source in contact["context"]["bot_answered"])

    agent = ApiClient(http.session, http.base, agent_token)
    contact_id = str(contact["_id"])
    await eventually(
        lambda: db["queue_contacts"].find_one({"_id": contact["_id"], "status": "offered"}), "the offer"
    )
    status, _, _ = await agent.request("POST", f"/api/desktop/offers/{contact_id}/accept")
    assert status == 200
    status, sent, _ = await agent.request(
        "POST", f"/api/desktop/contacts/{contact_id}/messages", json={"text": "非常抱歉，我来跟进您的退货。"}
    )
    assert status == 201, sent
    texts = await eventually(
        lambda: _having(sent_on_wechat(db, OPENID), "非常抱歉，我来跟进您的退货。"), "the agent's reply"
    )
    assert texts.count("非常抱歉，我来跟进您的退货。") == 1

    customer = await customer_with(admin, "wechat_openid", OPENID)
    [outcome] = [doc async for doc in db["bot_outcomes"].find({"customer_id": customer["id"]})]
    assert outcome["outcome"] == "handed_off" and outcome["channel"] == "wechat"
    assert outcome["intent"] == "complaint"


async def _having(texts: Any, wanted: str) -> list[str] | None:
    found: list[str] = await texts
    return found if wanted in found else None


async def test_an_sms_question_is_answered_from_the_knowledge_base(http: ApiClient, db: Database) -> None:
    status, _, _ = await post_sms_webhook(
        http, "/api/sms/inbound", {"id": "gw-kb-1", "from": "13900000021", "text": "运费多少钱？"}
    )
    assert status == 200
    sent = await eventually(
        lambda: db["sms_sink"].find_one({"to": "+8613900000021"}), "the knowledge base answer by SMS"
    )
    assert "包邮" in sent["text"]
