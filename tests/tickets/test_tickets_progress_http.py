"""The progress link over HTTP as a customer's phone opens it (no login), and what a changed or expired
link gets: a page and a problem+json saying so, and nothing of the ticket. Webhook subscriptions are an
admin's business."""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.settings import Settings
from tests.conftest import ApiClient
from tests.tickets.test_tickets_http import CALLER, assert_problem
from tickets.progress import ProgressLinks


async def open_ticket(agent: ApiClient, **signal: Any) -> tuple[dict[str, Any], str]:
    """A ticket from what the caller said, and the token of the progress link texted to them."""
    _, resolved, _ = await agent.request("POST", "/api/customers/resolve", json=CALLER)
    customer_id = resolved["customer"]["id"]
    body = {
        "customer_id": customer_id,
        "intent": "return_request",
        "confidence": 0.9,
        "channel": "voice",
        "language": "zh",
        "entities": {"order_number": "12345"},
        **signal,
    }
    status, outcome, _ = await agent.request("POST", "/api/tickets/intents", json=body)
    assert status == 201, outcome
    ticket = outcome["ticket"]
    _, queued, _ = await agent.request(
        "GET", f"/api/customers/{customer_id}/timeline?kind=notification.queued"
    )
    [text] = [
        e["body"]["text"]
        for e in queued["events"]
        if e["body"]["template"] == "ticket.created" and e["body"]["ticket_id"] == ticket["id"]
    ]
    return ticket, text.rsplit("/p/", 1)[1]


async def test_a_customer_opens_the_link_without_logging_in(http: ApiClient, agent: ApiClient) -> None:
    ticket, token = await open_ticket(agent)
    status, view, headers = await http.request("GET", f"/api/progress/{token}")
    assert status == 200 and view["number"] == ticket["number"] and view["status"] == "new"
    assert "assignee_id" not in view and "customer_id" not in view and "entities" not in view
    status, page, headers = await http.request("GET", f"/p/{token}")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert ticket["number"] in page and "工单进度" in page and 'name="viewport"' in page
    assert headers["Cache-Control"] == "no-store" and "noindex" in headers["X-Robots-Tag"]
    status, page, _ = await http.request("GET", f"/p/{token}?lang=en")
    assert status == 200 and "Ticket progress" in page and "Received" in page


async def test_a_changed_or_expired_link_is_refused_with_nothing_shown(
    http: ApiClient, agent: ApiClient, settings: Settings
) -> None:
    ticket, token = await open_ticket(agent)
    other, _ = await open_ticket(agent, intent="refund", entities={"order_number": "777"})
    ticket_id, expires, signature = token.split(".")
    for forged in (
        f"{other['id']}.{expires}.{signature}",
        f"{ticket_id}.{int(expires) + 3600}.{signature}",
        f"{ticket_id}.{expires}.{signature[:-2]}xx",
        "not-a-token",
    ):
        problem = assert_problem(
            await http.request("GET", f"/api/progress/{forged}"), 403, "progress_link_invalid"
        )
        assert ticket["number"] not in str(problem)
        status, page, headers = await http.request("GET", f"/p/{forged}")
        assert status == 403 and headers["Content-Type"].startswith("text/html")
        assert "链接无效" in page and "not valid" in page
        assert ticket["number"] not in page and other["number"] not in page

    month_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    expired = ProgressLinks(settings.secret(), "http://x").token(ticket_id, month_ago)
    assert_problem(await http.request("GET", f"/api/progress/{expired}"), 410, "progress_link_expired")
    status, page, _ = await http.request("GET", f"/p/{expired}")
    assert status == 410 and "链接已过期" in page and ticket["number"] not in page


async def test_webhook_subscriptions_are_for_admins(
    admin: ApiClient, agent: ApiClient, supervisor: ApiClient
) -> None:
    subscription = {"url": "https://erp.example.com/hooks/huiliu", "events": ["ticket.created", "ticket.*"]}
    assert_problem(await agent.request("POST", "/api/webhooks", json=subscription), 403, "forbidden_role")
    assert_problem(await supervisor.request("GET", "/api/webhooks"), 403, "forbidden_role")
    problem = assert_problem(
        await admin.request("POST", "/api/webhooks", json={**subscription, "url": "ftp://x/y"}),
        400,
        "validation_failed",
    )
    assert problem["errors"][0]["field"] == "url"
    problem = assert_problem(
        await admin.request("POST", "/api/webhooks", json={**subscription, "events": ["Ticket Created"]}),
        400,
        "validation_failed",
    )
    assert "Ticket Created" in problem["detail"]

    status, created, _ = await admin.request("POST", "/api/webhooks", json=subscription)
    assert status == 201 and len(created["secret"]) >= 32
    assert created["secret_hint"] == created["secret"][-4:]
    _, listed, _ = await admin.request("GET", "/api/webhooks")
    assert [hook["id"] for hook in listed] == [created["id"]] and "secret" not in listed[0]
    status, deliveries, _ = await admin.request("GET", f"/api/webhooks/{created['id']}/deliveries")
    assert status == 200 and deliveries == []
    assert_problem(
        await admin.request("POST", "/api/webhooks/deliveries/nope/retry"), 404, "delivery_not_found"
    )
    assert (await admin.request("DELETE", f"/api/webhooks/{created['id']}"))[0] == 204
    assert_problem(await admin.request("DELETE", f"/api/webhooks/{created['id']}"), 404, "webhook_not_found")
    _, audit, _ = await admin.request("GET", "/api/audit?limit=20")
    assert {"create_webhook", "delete_webhook"} <= {entry["action"] for entry in audit}
    assert all(created["secret"] not in str(entry) for entry in audit)
