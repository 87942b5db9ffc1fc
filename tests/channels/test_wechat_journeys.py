"""WeChat Official Account journeys: callbacks signed (and, in safe mode, encrypted) exactly as the
platform does it, answered within the 5-second window."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from core.db import Database
from tests.channels.conftest import (
    customer_with,
    decrypt_reply,
    eventually,
    post_wechat,
    timeline,
    timeline_kinds,
    wechat_query,
    wechat_text,
    wechat_xml,
)
from tests.conftest import ApiClient
from tests.test_api import assert_problem

OPENID = "oHuiliu_customer_0001"


@pytest.fixture
async def sink(server: TestServer, db: Database) -> Database:
    """What the WeChat client 'sent' (customer-service and template messages) is in ``wechat_sink``."""
    return db


async def sent_to(db: Database, openid: str) -> list[dict[str, Any]]:
    return [doc async for doc in db["wechat_sink"].find({"openid": openid}, sort=[("at", 1)])]


async def test_server_url_verification_echoes_only_for_our_token(http: ApiClient) -> None:
    status, body, _ = await http.request("GET", "/api/wechat/callback", params=wechat_query(echostr="e-4242"))
    assert status == 200 and body == "e-4242"
    forged = wechat_query(token="someone-elses-token", echostr="e-4242")
    status, body, headers = await http.request("GET", "/api/wechat/callback", params=forged)
    assert_problem(status, body, headers, 403, "signature_invalid")


@pytest.mark.parametrize("aes", [False, True], ids=["plaintext", "safe-mode"])
async def test_return_request_on_wechat_creates_a_ticket_and_the_number_comes_back_on_wechat(
    http: ApiClient, admin: ApiClient, sink: Database, aes: bool
) -> None:
    status, answer, _ = await post_wechat(
        http, wechat_text(OPENID, "我要退货，订单号 12345", "6001"), aes=aes
    )
    assert status == 200 and answer == "success"  # nothing to say at once: the ticket notice follows

    customer = await customer_with(admin, "wechat_openid", OPENID)
    [notice] = await eventually(lambda: sent_to(sink, OPENID), "the ticket notice on WeChat")
    status, tickets, _ = await admin.request("GET", "/api/tickets", params={"customer_id": customer["id"]})
    [ticket] = tickets["tickets"]
    assert ticket["number"] in notice["text"] and ticket["channel"] == "wechat"
    kinds = await timeline_kinds(admin, customer["id"])
    assert kinds[:3] == ["message.in", "intent.recognised", "ticket.created"]
    assert "message.out" in kinds


async def test_wechat_retrying_the_same_msgid_three_times_lands_one_event(
    http: ApiClient, admin: ApiClient
) -> None:
    xml = wechat_text(OPENID, "你好，在吗", "7001")
    answers = [await post_wechat(http, xml) for _ in range(3)]
    assert [(status, body) for status, body, _ in answers] == [(200, "success")] * 3
    customer = await customer_with(admin, "wechat_openid", OPENID)
    events = await timeline(admin, customer["id"])
    assert [e["kind"] for e in events].count("message.in") == 1


async def test_a_question_missing_the_order_number_gets_a_passive_reply_in_safe_mode(
    http: ApiClient, admin: ApiClient
) -> None:
    status, answer, _ = await post_wechat(http, wechat_text(OPENID, "我要退货", "8001"), aes=True)
    assert status == 200
    reply = decrypt_reply(answer)
    assert f"<ToUserName><![CDATA[{OPENID}]]></ToUserName>" in reply and "订单" in reply
    customer = await customer_with(admin, "wechat_openid", OPENID)
    assert (await timeline_kinds(admin, customer["id"]))[-1] == "message.out"


async def test_voice_uses_wechats_recognition_and_images_and_events_land_on_the_timeline(
    http: ApiClient, admin: ApiClient, sink: Database
) -> None:
    created = int(time.time())
    status, welcome, _ = await post_wechat(
        http, wechat_xml(OPENID, "event", None, "<Event><![CDATA[subscribe]]></Event>", created)
    )
    assert status == 200 and "欢迎关注" in welcome
    voice = (
        "<MediaId><![CDATA[media-1]]></MediaId><Format><![CDATA[amr]]></Format>"
        "<Recognition><![CDATA[我要退货，订单号 55555]]></Recognition>"
    )
    assert (await post_wechat(http, wechat_xml(OPENID, "voice", "9001", voice)))[0] == 200
    image = "<PicUrl><![CDATA[http://mmbiz.example/p.jpg]]></PicUrl><MediaId><![CDATA[media-2]]></MediaId>"
    assert (await post_wechat(http, wechat_xml(OPENID, "image", "9002", image)))[0] == 200
    click = "<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[MENU_ORDER_STATUS]]></EventKey>"
    assert (await post_wechat(http, wechat_xml(OPENID, "event", None, click, created + 1)))[0] == 200

    customer = await customer_with(admin, "wechat_openid", OPENID)
    await eventually(lambda: sent_to(sink, OPENID), "the ticket notice for the voice message")
    events = await timeline(admin, customer["id"])
    inbound = [e["body"] for e in events if e["kind"] == "message.in"]
    assert [(b["msg_type"], b.get("event")) for b in inbound] == [
        ("event", "subscribe"),
        ("voice", None),
        ("image", None),
        ("event", "click"),
    ]
    assert inbound[1]["text"] == "我要退货，订单号 55555"
    assert inbound[3]["key"] == "MENU_ORDER_STATUS"
    status, tickets, _ = await admin.request("GET", "/api/tickets", params={"customer_id": customer["id"]})
    assert [t["entities"]["order_number"] for t in tickets["tickets"]] == ["55555"]


async def test_bad_signatures_and_hostile_xml_are_refused_and_nothing_is_stored(
    http: ApiClient, admin: ApiClient
) -> None:
    xml = wechat_text("oForged", "我要退货，订单号 1", "1001")
    forged = wechat_query(token="not-our-token")
    status, body, headers = await http.request("POST", "/api/wechat/callback", params=forged, data=xml)
    assert_problem(status, body, headers, 403, "signature_invalid")
    status, body, headers = await http.request("POST", "/api/wechat/callback", data=xml)
    assert_problem(status, body, headers, 403, "signature_missing")
    bad_aes = {**wechat_query(), "encrypt_type": "aes", "msg_signature": "0" * 40}
    envelope = "<xml><Encrypt><![CDATA[AAAA]]></Encrypt></xml>"
    status, body, headers = await http.request("POST", "/api/wechat/callback", params=bad_aes, data=envelope)
    assert_problem(status, body, headers, 403, "signature_invalid")
    malformed = wechat_text("oForged", "你好", "not-a-number")  # MsgId is a 64-bit integer
    status, body, headers = await http.request(
        "POST", "/api/wechat/callback", params=wechat_query(), data=malformed
    )
    assert_problem(status, body, headers, 400, "invalid_message")
    status, result, _ = await admin.request("GET", "/api/customers", params={"q": "oForged"})
    assert result["customers"] == []

    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
        "<xml><Content>&b;</Content></xml>"
    )
    status, body, headers = await http.request(
        "POST", "/api/wechat/callback", params=wechat_query(), data=bomb
    )
    assert_problem(status, body, headers, 400, "xml_forbidden")
    status, body, headers = await http.request(
        "POST", "/api/wechat/callback", params=wechat_query(), data="<xml><MsgType>text"
    )
    assert_problem(status, body, headers, 400, "invalid_xml")
    status, body, headers = await http.request(
        "POST", "/api/wechat/callback", params=wechat_query(), data="<xml>" + "x" * 70_000 + "</xml>"
    )
    assert_problem(status, body, headers, 413, "payload_too_large")
