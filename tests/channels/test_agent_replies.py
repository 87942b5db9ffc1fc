"""An agent's reply on SMS and WeChat: it reaches the customer on their channel and is one fact on their
timeline (the desktop's ``message.sent``), with the SMS delivery status linked to it, not a second message."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from core.db import Database
from omnichannel import Actor, Channel, NewEvent
from omnichannel.channels import CHANNELS
from tests.channels.conftest import (
    customer_with,
    eventually,
    post_sms_webhook,
    post_wechat,
    timeline,
    wechat_text,
)
from tests.conftest import ApiClient

AGENT = Actor(type="agent", id="u-agent1", name="小王")


@pytest.fixture
def settings(settings: Any) -> Any:
    return settings.model_copy(update={"bot_enabled": False})  # only the agent answers here


async def agent_replies(
    server: TestServer, customer_id: str, conversation_id: str, channel: Channel, text: str
) -> str:
    """What the desktop writes for an agent's reply (agent_desktop/chat.py): message.sent on the conversation,
    announced on the bus."""
    omni = server.app[CHANNELS].email.omni
    event, _ = await omni.timeline.append(
        customer_id,
        NewEvent(kind="message.sent", channel=channel, conversation_id=conversation_id, body={"text": text}),
        AGENT,
    )
    return event.id


def saying(events: list[dict[str, Any]], text: str) -> list[str]:
    return [event["kind"] for event in events if event["body"].get("text") == text]


async def test_an_agent_sms_reply_is_sent_once_and_is_one_timeline_fact_with_its_delivery_status(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database
) -> None:
    number = "+8613700001111"
    status, _, _ = await post_sms_webhook(
        http, "/api/sms/inbound", {"id": "gw-r1", "from": number, "text": "快递到哪了"}
    )
    assert status == 200
    customer = await customer_with(admin, "phone", number)
    [inbound] = [e for e in await timeline(admin, customer["id"]) if e["kind"] == "message.in"]

    text = "您好，包裹明天送达。"
    event_id = await agent_replies(server, customer["id"], inbound["conversation_id"], Channel.sms, text)

    sms = await eventually(
        lambda: db["sms_messages"].find_one({"timeline_event_id": event_id, "status": "sent"}),
        "the agent's SMS sent",
    )
    status, sink, _ = await admin.request("GET", "/api/sms/sink", params={"to": number})
    assert [entry["text"] for entry in sink] == [text]
    claim = await eventually(
        lambda: db["channel_deliveries"].find_one({"_id": event_id, "sent_at": {"$exists": True}}),
        "the delivery recorded",
    )
    assert claim["sms_id"] == str(sms["_id"])
    status, message, _ = await admin.request("GET", f"/api/sms/messages/{sms['_id']}")
    assert status == 200 and message["timeline_event_id"] == event_id and message["status"] == "sent"
    assert saying(await timeline(admin, customer["id"]), text) == ["message.sent"]


async def test_an_agent_wechat_reply_is_sent_once_and_is_one_timeline_fact(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database
) -> None:
    openid = "o-agent-reply-0001"
    status, _, _ = await post_wechat(http, wechat_text(openid, "我的快递到哪了", "8101"))
    assert status == 200
    customer = await customer_with(admin, "wechat_openid", openid)
    [inbound] = [e for e in await timeline(admin, customer["id"]) if e["kind"] == "message.in"]

    text = "您好，包裹明天送达。"
    event_id = await agent_replies(server, customer["id"], inbound["conversation_id"], Channel.wechat, text)

    await eventually(
        lambda: db["channel_deliveries"].find_one({"_id": event_id, "sent_at": {"$exists": True}}),
        "the delivery recorded",
    )
    sent = [doc async for doc in db["wechat_sink"].find({"openid": openid, "text": text})]
    assert len(sent) == 1 and sent[0]["kind"] == "text"
    assert saying(await timeline(admin, customer["id"]), text) == ["message.sent"]
