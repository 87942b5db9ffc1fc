"""After a ticket is resolved, what the customer texts back reaches the ticket through the SMS webhook: a
rating is recorded as its CSAT (and not treated as a new request), any other reply reopens it."""

from __future__ import annotations

from typing import Any

from tests.channels.conftest import customer_with, eventually, post_sms_webhook
from tests.conftest import ApiClient

NUMBER = "+8613911112222"


async def ticket_of(admin: ApiClient, customer_id: str) -> dict[str, Any] | None:
    _, page, _ = await admin.request("GET", f"/api/tickets?customer_id={customer_id}")
    return page["tickets"][0] if page["tickets"] else None


async def test_a_rating_becomes_the_csat_and_a_later_reply_reopens_the_ticket(
    http: ApiClient, admin: ApiClient
) -> None:
    said = {"id": "csat-1", "from": NUMBER, "text": "我要开发票，订单号 12345"}
    assert (await post_sms_webhook(http, "/api/sms/inbound", said))[0] == 200
    customer = await customer_with(admin, "phone", NUMBER)
    ticket = await eventually(lambda: ticket_of(admin, customer["id"]), "the invoice ticket")
    for status in ("open", "resolved"):
        code, moved, _ = await admin.request(
            "POST", f"/api/tickets/{ticket['id']}/transition", json={"to": status, "reason": "发票已开"}
        )
        assert code == 200, moved
    assert moved["csat"] is not None and moved["csat"]["score"] is None  # the rating request went out

    assert (
        await post_sms_webhook(http, "/api/sms/inbound", {"id": "csat-2", "from": NUMBER, "text": "5 很满意"})
    )[0] == 200

    async def rated() -> dict[str, Any] | None:
        _, current, _ = await admin.request("GET", f"/api/tickets/{ticket['id']}")
        return current if current["csat"] and current["csat"]["score"] == 5 else None

    rated_ticket = await eventually(rated, "the CSAT score")
    assert rated_ticket["status"] == "resolved"
    _, page, _ = await admin.request("GET", f"/api/tickets?customer_id={customer['id']}")
    assert len(page["tickets"]) == 1  # "5 很满意" did not open anything new

    assert (
        await post_sms_webhook(
            http, "/api/sms/inbound", {"id": "csat-3", "from": NUMBER, "text": "发票抬头写错了"}
        )
    )[0] == 200

    async def reopened() -> dict[str, Any] | None:
        _, current, _ = await admin.request("GET", f"/api/tickets/{ticket['id']}")
        return current if current["status"] == "reopened" else None

    await eventually(reopened, "the ticket to reopen")
