"""Delivery receipts from the gateway (signed as it signs them): an undeliverable message is a fact on the
customer's timeline, the same ``message.failed`` the delivery retries write when they give up."""

from __future__ import annotations

from typing import Any

from tests.channels.conftest import customer_with, eventually, post_sms_webhook, timeline
from tests.conftest import ApiClient


async def test_a_failed_delivery_receipt_puts_message_failed_on_the_timeline_once(
    http: ApiClient, agent: ApiClient, admin: ApiClient
) -> None:
    status, sent, _ = await agent.request(
        "POST", "/api/sms/messages", json={"to": "13600000002", "text": "您的退款已到账"}
    )
    assert status == 202, sent

    async def accepted() -> dict[str, Any] | None:
        _, message, _ = await agent.request("GET", f"/api/sms/messages/{sent['id']}")
        return message if message["status"] == "sent" else None

    message = await eventually(accepted, "the gateway accepting the message")
    receipt = {"message_id": message["provider_message_id"], "status": "failed", "error": "UNDELIV: 空号"}
    for _ in range(2):  # the gateway repeats its receipts
        status, updated, _ = await post_sms_webhook(http, "/api/sms/receipts", receipt)
        assert status == 200 and updated["status"] == "failed" and updated["error"] == "UNDELIV: 空号"

    customer = await customer_with(admin, "phone", "+8613600000002")
    events = await timeline(admin, customer["id"])
    [out] = [e for e in events if e["kind"] == "message.out"]
    [failed] = [e for e in events if e["kind"] == "message.failed"]
    assert failed["channel"] == "sms" and failed["conversation_id"] == out["conversation_id"]
    assert failed["body"] == {
        "message_id": sent["id"],
        "to": "+8613600000002",
        "error": "UNDELIV: 空号",
        "event_id": None,
    }
