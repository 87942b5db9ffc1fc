"""Identity linking: a phone number given on web chat or WeChat and proven by an SMS code (the development
sink provider receives it) joins the visitor to the customer who owns that number: one timeline. (By email:
test_identity_linking_email.py.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from core.db import Database
from tests.channels.conftest import customer_with, eventually, post_wechat, timeline, wechat_text
from tests.channels.webchat_client import Visitor, new_visitor_token
from tests.conftest import ApiClient


async def code_sent_to(db: Database, phone: str) -> str:
    doc = await eventually(lambda: db["sms_sink"].find_one({"to": phone}, sort=[("at", -1)]), "the code SMS")
    [code] = re.findall(r"\d{6}", doc["text"])[:1]
    return code


@pytest.fixture
async def visitor(server: TestServer, http: ApiClient) -> AsyncIterator[Visitor]:
    opened = Visitor(server, await new_visitor_token(http))
    await opened.connect()
    yield opened
    await opened.disconnect()


async def test_a_visitor_who_proves_their_number_joins_the_callers_timeline(
    visitor: Visitor, admin: ApiClient, db: Database
) -> None:
    caller = await customer_with(admin, "phone", "13800138000")
    await admin.request(
        "POST",
        f"/api/customers/{caller['id']}/timeline",
        json={"kind": "call.ended", "channel": "voice", "body": {"duration": 62}},
    )
    await visitor.say("你好")
    await visitor.next_reply()

    ack = await visitor.call("verify_phone", {"phone": "138 0013 8000"})
    assert ack == {"ok": {"sent_to": "+86138****8000"}}
    code = await code_sent_to(db, "+8613800138000")
    wrong = await visitor.call("verify_code", {"code": "000000" if code != "000000" else "111111"})
    assert wrong["error"]["code"] == "verification_failed" and wrong["error"]["attempts_left"] == 4
    linked = await visitor.call("verify_code", {"code": code})
    assert linked == {"ok": {"customer_id": caller["id"], "merged": True}}

    kinds = {(event["channel"], event["kind"]) for event in await timeline(admin, caller["id"])}
    assert {("voice", "call.ended"), ("webchat", "message.in"), ("webchat", "identity.verified")} <= kinds
    _, audit, _ = await admin.request(
        "GET", "/api/audit", params={"target": f"/api/customers/{caller['id']}"}
    )
    assert [entry["action"] for entry in audit] == ["identity_verified"]
    assert visitor.client.connected


async def test_without_outbound_smtp_an_email_address_cannot_be_verified(visitor: Visitor) -> None:
    answer = await visitor.call("verify_email", {"email": "li.na@example.com"})
    assert answer["error"]["code"] == "email_verification_unavailable"
    assert await visitor.call("verify_phone", {"phone": "13800138002"}) == {
        "ok": {"sent_to": "+86138****8002"}
    }


async def test_a_wechat_user_gives_their_number_and_the_bot_links_it_with_a_code(
    http: ApiClient, admin: ApiClient, db: Database
) -> None:
    openid = "oHuiliu_linking_0001"
    status, answer, _ = await post_wechat(http, wechat_text(openid, "我的手机号是13800138001", "5501"))
    assert status == 200 and "+86138****8001" in answer
    code = await code_sent_to(db, "+8613800138001")
    status, answer, _ = await post_wechat(http, wechat_text(openid, code, "5502"))
    assert "已验证" in answer
    customer: dict[str, Any] = await customer_with(admin, "wechat_openid", openid)
    assert {"kind": "phone", "value": "+8613800138001"} in customer["identities"]
