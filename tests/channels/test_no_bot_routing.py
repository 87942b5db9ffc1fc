"""With the self-service bot switched off (``HUILIU_BOT_ENABLED=false``), SMS and WeChat conversations go
straight to an agent, as web chat's do: a contact in the chat queue with the channel as a preferred skill,
offered to an agent on the real desktop socket, the ticket pipeline still run. Signed webhooks as the
providers send them."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from core.db import Database
from tests.channels.conftest import customer_with, eventually, post_sms_webhook, post_wechat, wechat_text
from tests.conftest import ApiClient
from tests.desktop.conftest import make_agent


@pytest.fixture
def settings(settings: Any) -> Any:
    return settings.model_copy(update={"bot_enabled": False})


async def test_an_sms_with_no_bot_reaches_an_agent_once_however_many_texts_follow(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database
) -> None:
    number = "+8613700002222"
    for n, text in enumerate(["你好，我的快递三天没动了", "还在吗？"]):
        status, _, _ = await post_sms_webhook(
            http, "/api/sms/inbound", {"id": f"gw-nb{n}", "from": number, "text": text}
        )
        assert status == 200
    customer = await customer_with(admin, "phone", number)

    contact = await eventually(
        lambda: db["queue_contacts"].find_one({"customer_id": customer["id"], "context.channel": "sms"}),
        "an ACD contact for the SMS conversation",
    )
    assert contact["queue"] == "chat" and contact["preferred_skills"].get("sms") == 1
    assert "未启用机器人" in contact["context"]["bot_summary"]
    assert await db["queue_contacts"].count_documents({"customer_id": customer["id"]}) == 1
    # and nobody talked to them as a bot: no bot greeting or answer went out
    sent = [doc["text"] async for doc in db["sms_sink"].find({"to": number})]
    assert not any("智能客服" in text for text in sent)


async def test_a_wechat_message_with_no_bot_is_offered_to_an_agent_on_the_desktop(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database
) -> None:
    await make_agent(server, "wechat_only_agent", {"wechat": 1})
    openid = "o-no-bot-0001"
    status, _, _ = await post_wechat(http, wechat_text(openid, "人在吗？发票怎么开", "7701"))
    assert status == 200
    customer = await customer_with(admin, "wechat_openid", openid)

    offered = await eventually(
        lambda: db["queue_contacts"].find_one({"customer_id": customer["id"], "status": "offered"}),
        "the WeChat conversation offered to an agent",
    )
    assert offered["context"]["channel"] == "wechat" and len(offered["offered_to"]) == 1
