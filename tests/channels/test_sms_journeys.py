"""SMS journeys against the real web app: the gateway's signed webhooks in, the development sink out."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.channels.conftest import (
    SMS_SECRET,
    customer_with,
    eventually,
    post_sms_webhook,
    timeline,
    timeline_kinds,
)
from tests.conftest import ApiClient
from tests.test_api import assert_problem

NEW_NUMBER = "+8613912345678"


async def sink_for(admin: ApiClient, number: str) -> list[dict[str, Any]]:
    status, entries, _ = await admin.request("GET", "/api/sms/sink", params={"to": number})
    assert status == 200, entries
    return list(entries)


async def test_return_request_by_sms_from_a_new_number_creates_a_ticket_and_texts_its_number_back(
    http: ApiClient, admin: ApiClient
) -> None:
    status, ack, _ = await post_sms_webhook(
        http,
        "/api/sms/inbound",
        {"id": "gw-1", "from": NEW_NUMBER, "to": "10690000", "text": "我要退货，订单号 12345"},
    )
    assert status == 200 and ack == {"accepted": True, "duplicate": False}

    customer = await customer_with(admin, "phone", NEW_NUMBER)
    replies = await eventually(lambda: sink_for(admin, NEW_NUMBER), "the reply SMS in the sink")
    events = await timeline(admin, customer["id"])
    kinds = [event["kind"] for event in events]
    assert kinds[:3] == ["message.in", "intent.recognised", "ticket.created"]
    intent = events[1]["body"]
    assert intent["intent"] == "return_request"
    assert [(e["kind"], e["value"]) for e in intent["entities"]] == [("order_number", "12345")]

    status, tickets, _ = await admin.request("GET", "/api/tickets", params={"customer_id": customer["id"]})
    assert status == 200, tickets
    [ticket] = tickets["tickets"]
    assert ticket["entities"]["order_number"] == "12345"
    [reply] = replies
    assert ticket["number"] in reply["text"]
    assert "message.out" in await timeline_kinds(admin, customer["id"])


async def test_the_gateway_retrying_an_inbound_sms_lands_it_once(http: ApiClient, admin: ApiClient) -> None:
    message = {"id": "gw-7", "from": "13800000007", "text": "你好"}
    first = await post_sms_webhook(http, "/api/sms/inbound", message)
    again = await post_sms_webhook(http, "/api/sms/inbound", message)
    assert first[1]["duplicate"] is False and again[1]["duplicate"] is True
    customer = await customer_with(admin, "phone", "+8613800000007")
    assert (await timeline_kinds(admin, customer["id"])).count("message.in") == 1


async def test_stop_unsubscribes_until_start(http: ApiClient, admin: ApiClient, agent: ApiClient) -> None:
    number = "+8613700000001"
    await post_sms_webhook(http, "/api/sms/inbound", {"id": "gw-s1", "from": number, "text": "退订"})
    customer = await customer_with(admin, "phone", number)
    assert customer["profile"]["sms_opt_out"]["keyword"] == "退订"
    confirmation = await eventually(lambda: sink_for(admin, number), "the opt-out confirmation")
    assert "START" in confirmation[0]["text"]

    status, body, headers = await agent.request(
        "POST", "/api/sms/messages", json={"to": number, "text": "双十一大促！", "transactional": False}
    )
    assert_problem(status, body, headers, 409, "sms_opted_out")
    assert "退订" in body["detail"]
    status, sent, _ = await agent.request(
        "POST", "/api/sms/messages", json={"to": number, "text": "您的退款已到账", "transactional": True}
    )
    assert status == 202, sent

    await post_sms_webhook(http, "/api/sms/inbound", {"id": "gw-s2", "from": number, "text": "START"})
    status, sent, _ = await agent.request(
        "POST", "/api/sms/messages", json={"to": number, "text": "新品上市"}
    )
    assert status == 202, sent
    texts = await eventually(
        lambda: _texts_if(admin, number, 4), "confirmation, refund notice, opt-in confirmation and the news"
    )
    assert "双十一大促！" not in texts and "新品上市" in texts


async def _texts_if(admin: ApiClient, number: str, count: int) -> list[str] | None:
    entries = await sink_for(admin, number)
    return [entry["text"] for entry in entries] if len(entries) >= count else None


async def test_delivery_receipt_updates_the_message_status(http: ApiClient, agent: ApiClient) -> None:
    status, sent, _ = await agent.request(
        "POST", "/api/sms/messages", json={"to": "13600000001", "text": "hi"}
    )
    assert status == 202, sent

    async def sent_message() -> dict[str, Any] | None:
        _, message, _ = await agent.request("GET", f"/api/sms/messages/{sent['id']}")
        return message if message["status"] == "sent" else None

    message = await eventually(sent_message, "the sink accepting the message")
    status, updated, _ = await post_sms_webhook(
        http, "/api/sms/receipts", {"message_id": message["provider_message_id"], "status": "delivered"}
    )
    assert status == 200 and updated["status"] == "delivered"


async def test_unsigned_forged_stale_and_malformed_webhooks_are_refused_and_nothing_is_stored(
    http: ApiClient, admin: ApiClient
) -> None:
    message = {"id": "gw-x", "from": "13500000001", "text": "我要退货，订单号 999"}
    raw = json.dumps(message).encode()
    status, body, headers = await http.request("POST", "/api/sms/inbound", data=raw)
    assert_problem(status, body, headers, 403, "signature_missing")
    status, body, headers = await post_sms_webhook(http, "/api/sms/inbound", message, secret="not-the-secret")
    assert_problem(status, body, headers, 403, "signature_invalid")
    status, body, headers = await post_sms_webhook(http, "/api/sms/inbound", message, age=3600)
    assert_problem(status, body, headers, 403, "signature_expired")
    tampered = {"X-Signature-Timestamp": str(int(time.time())), "X-Signature": "sha256=" + "0" * 64}
    status, body, headers = await http.request("POST", "/api/sms/inbound", data=raw, headers=tampered)
    assert_problem(status, body, headers, 403, "signature_invalid")
    status, result, _ = await admin.request("GET", "/api/customers", params={"q": "13500000001"})
    assert status == 200 and result["customers"] == []

    from omnichannel.channels.signing import sign

    now = int(time.time())
    garbage = b"{not json"
    status, body, headers = await http.request(
        "POST",
        "/api/sms/inbound",
        data=garbage,
        headers={"X-Signature-Timestamp": str(now), "X-Signature": sign(SMS_SECRET, now, garbage)},
    )
    assert_problem(status, body, headers, 400, "invalid_json")
    status, body, headers = await post_sms_webhook(
        http, "/api/sms/inbound", {"id": "gw-y", "text": "no sender"}
    )
    assert_problem(status, body, headers, 400, "validation_failed")
    huge = {"id": "gw-z", "from": "13500000002", "text": "长" * 20_000}
    status, body, headers = await post_sms_webhook(http, "/api/sms/inbound", huge)
    assert_problem(status, body, headers, 413, "payload_too_large")


async def test_the_sink_is_for_admins_only(agent: ApiClient) -> None:
    status, body, headers = await agent.request("GET", "/api/sms/sink")
    assert_problem(status, body, headers, 403, "forbidden_role")
