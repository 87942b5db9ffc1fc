"""An agent's reply on SMS and WeChat: it reaches the customer on their channel and is one fact on their
timeline (the desktop's ``message.sent``), with the SMS delivery status linked to it, not a second message."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from core.db import Database
from omnichannel import Actor, Channel, NewEvent
from omnichannel.channels.http import CHANNELS
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


class _WeChatDown:
    """The WeChat API failing ``failures`` times (then the dev sink behind it answers)."""

    def __init__(self, client: Any, failures: int) -> None:
        self.client = client
        self.failures = failures
        self.calls = 0

    async def send_text(self, openid: str, text: str) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("api.weixin.qq.com unreachable")
        await self.client.send_text(openid, text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


async def _wechat_conversation(
    http: ApiClient, admin: ApiClient, openid: str, msg_id: str
) -> tuple[str, str]:
    status, _, _ = await post_wechat(http, wechat_text(openid, "我的快递到哪了", msg_id))
    assert status == 200
    customer = await customer_with(admin, "wechat_openid", openid)
    [inbound] = [e for e in await timeline(admin, customer["id"]) if e["kind"] == "message.in"]
    return customer["id"], inbound["conversation_id"]


async def test_a_wechat_reply_the_api_refused_is_sent_again_once_it_is_back(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database
) -> None:
    channels = server.app[CHANNELS]
    assert channels.replies is not None
    channels.replies.retry_delays = (0.2, 0.2, 0.2)
    down = _WeChatDown(channels.wechat.client, failures=2)
    channels.wechat.client = down
    openid = "o-agent-reply-retry"
    customer_id, conversation_id = await _wechat_conversation(http, admin, openid, "8201")

    text = "您好，包裹明天送达。"
    event_id = await agent_replies(server, customer_id, conversation_id, Channel.wechat, text)

    claim = await eventually(
        lambda: db["channel_deliveries"].find_one({"_id": event_id, "sent_at": {"$exists": True}}),
        "the reply sent on the third try",
        within=10,
    )
    assert claim["attempts"] == 2 and "error" not in claim and down.calls == 3
    sent = [doc async for doc in db["wechat_sink"].find({"openid": openid, "text": text})]
    assert len(sent) == 1
    assert "message.failed" not in [event["kind"] for event in await timeline(admin, customer_id)]


async def test_a_wechat_reply_that_never_goes_out_is_failed_on_the_timeline_for_the_agent(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database
) -> None:
    channels = server.app[CHANNELS]
    assert channels.replies is not None
    channels.replies.retry_delays = (0.2, 0.2)
    channels.wechat.client = down = _WeChatDown(channels.wechat.client, failures=1000)
    openid = "o-agent-reply-down"
    customer_id, conversation_id = await _wechat_conversation(http, admin, openid, "8202")

    event_id = await agent_replies(server, customer_id, conversation_id, Channel.wechat, "稍后回复您")

    failed = await eventually(
        lambda: _kinds(admin, customer_id, "message.failed"), "message.failed on the timeline", within=10
    )
    [event] = failed
    assert event["body"]["event_id"] == event_id and event["body"]["attempts"] == 3
    assert "unreachable" in event["body"]["error"] and event["conversation_id"] == conversation_id
    claim = await db["channel_deliveries"].find_one({"_id": event_id})
    assert claim is not None and "failed_at" in claim and "sent_at" not in claim and "retry_at" not in claim
    await asyncio.sleep(1.5)  # no more tries after the last one, and one failure fact
    assert down.calls == 3 and len(await _kinds(admin, customer_id, "message.failed")) == 1


async def _kinds(admin: ApiClient, customer_id: str, kind: str) -> list[dict[str, Any]]:
    return [event for event in await timeline(admin, customer_id) if event["kind"] == kind]
