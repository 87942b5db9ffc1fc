"""The tickets REST API as the agent desktop and admins meet it: agents work their tickets, supervisors
reassign, admins manage templates and staff; refusals are problem+json with a stable code."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ApiClient

CALLER = {"identities": [{"kind": "phone", "value": "13800138000"}], "name": "李娜"}


def assert_problem(response: tuple[int, Any, dict[str, str]], status: int, code: str) -> dict[str, Any]:
    got, body, headers = response
    assert got == status, body
    assert headers["Content-Type"].startswith("application/problem+json") and body["code"] == code
    return dict(body)


@pytest.fixture
async def team(admin: ApiClient) -> dict[str, str]:
    """Staff profiles for the demo users: agent1 (zh) and agent2 (en) in after-sales, a supervisor."""
    _, users, _ = await admin.request("GET", "/api/users")
    ids = {user["username"]: user["id"] for user in users}
    profiles = {
        "agent1": {"departments": ["after_sales"], "skills": ["after_sales"], "languages": ["zh"]},
        "agent2": {"departments": ["after_sales"], "skills": ["after_sales"], "languages": ["en"]},
        "supervisor": {"supervisor_of": ["*"], "phone": "139 0000 0009"},
    }
    for username, profile in profiles.items():
        status, body, _ = await admin.request("PUT", f"/api/staff/{ids[username]}", json=profile)
        assert status == 200, body
    return ids


async def test_an_agent_works_a_ticket_from_the_callers_words(
    agent: ApiClient, supervisor: ApiClient, http: ApiClient, team: dict[str, str]
) -> None:
    _, resolved, _ = await agent.request("POST", "/api/customers/resolve", json=CALLER)
    customer_id = resolved["customer"]["id"]
    signal = {
        "customer_id": customer_id,
        "intent": "return_request",
        "confidence": 0.87,
        "entities": {"order_number": "12345"},
        "text": "我要退货，订单号 12345",
        "channel": "voice",
        "language": "zh",
    }
    status, outcome, _ = await agent.request("POST", "/api/tickets/intents", json=signal)
    assert status == 201 and outcome["action"] == "created"
    number = outcome["ticket"]["number"]
    assert outcome["ticket"]["assignee_id"] == team["agent1"]
    status, again, _ = await agent.request("POST", "/api/tickets/intents", json={**signal, "text": "快点"})
    assert status == 200 and again["action"] == "appended" and again["ticket"]["number"] == number

    status, ticket, _ = await agent.request("GET", f"/api/tickets/{number}")
    assert status == 200 and ticket["entities"] == {"order_number": "12345"}
    _, mine, _ = await agent.request("GET", "/api/tickets?assignee_id=me&status=new,open")
    assert [t["number"] for t in mine["tickets"]] == [number]

    problem = assert_problem(
        await agent.request("POST", f"/api/tickets/{number}/transition", json={"to": "reopened"}),
        409,
        "invalid_transition",
    )
    assert problem["allowed"] == ["closed", "open", "pending-customer", "pending-internal", "resolved"]
    problem = assert_problem(
        await agent.request("POST", f"/api/tickets/{number}/transition", json={"to": "resolved"}),
        409,
        "workflow_incomplete",
    )
    status, ticket, _ = await agent.request(
        "POST", f"/api/tickets/{number}/workflow/steps/review/complete", json={"note": "同意退货"}
    )
    assert status == 200 and ticket["workflow"]["steps"]["review"]["state"] == "done"
    status, ticket, _ = await agent.request(
        "POST", f"/api/tickets/{number}/comments", json={"text": "已安排上门取件", "public": True}
    )
    assert status == 200 and ticket["first_response_at"] is not None

    _, history, _ = await agent.request("GET", f"/api/tickets/{number}/history")
    kinds = [entry["kind"] for entry in history]
    assert kinds[:2] == ["ticket.created", "ticket.assigned"] and "ticket.appended" in kinds
    _, timers, _ = await agent.request("GET", f"/api/tickets/{number}/sla")
    assert {t["kind"]: t["state"] for t in timers if t["kind"] != "step"} == {
        "first_response": "met",
        "resolution": "running",
    }
    _, timeline, _ = await agent.request(
        "GET", f"/api/customers/{customer_id}/timeline?kind=ticket.*&limit=200"
    )
    assert {e["kind"] for e in timeline["events"]} >= {
        "ticket.created",
        "ticket.appended",
        "ticket.commented",
    }
    _, queued, _ = await agent.request(
        "GET", f"/api/customers/{customer_id}/timeline?kind=notification.queued"
    )
    texts = [e["body"]["text"] for e in queued["events"] if e["body"]["template"] == "ticket.created"]
    [text] = texts
    greeting, link = text.split(" 查看进度：")
    assert greeting == f"您好，您的工单 {number}（退货申请）已受理，我们会尽快处理。"
    token = link.rsplit("/p/", 1)[1]
    status, progress, _ = await http.request("GET", f"/api/progress/{token}")
    assert status == 200 and progress["number"] == number and progress["language"] == "zh"


async def test_roles_agents_work_supervisors_reassign_admins_manage(
    agent: ApiClient, supervisor: ApiClient, admin: ApiClient, http: ApiClient, team: dict[str, str]
) -> None:
    _, resolved, _ = await agent.request("POST", "/api/customers/resolve", json=CALLER)
    new = {
        "customer_id": resolved["customer"]["id"],
        "category": "return",
        "subject": "退货",
        "language": "zh",
    }
    status, ticket, _ = await agent.request("POST", "/api/tickets", json=new)
    assert status == 201 and ticket["assignee_id"] == team["agent1"]
    path = f"/api/tickets/{ticket['id']}"

    agent2 = await http.as_user("agent2", "agent2-demo")
    assert_problem(
        await agent2.request("POST", f"{path}/transition", json={"to": "open"}), 403, "not_your_ticket"
    )
    assign = {"assignee_id": team["agent2"], "reason": "客户说英语"}
    assert_problem(await agent.request("POST", f"{path}/assign", json=assign), 403, "forbidden_role")
    status, moved, _ = await supervisor.request("POST", f"{path}/assign", json=assign)
    assert status == 200 and moved["assignee_id"] == team["agent2"] and moved["reassign_count"] == 1
    status, opened, _ = await agent2.request("POST", f"{path}/transition", json={"to": "open"})
    assert status == 200 and opened["status"] == "open"

    template = {
        "name": "recall",
        "title": {"zh": "召回", "en": "Recall"},
        "start": "notify",
        "steps": {
            "notify": {
                "title": {"zh": "通知", "en": "Notify"},
                "department": "after_sales",
                "next": [{"to": "ship"}],
            },
            "ship": {"title": {"zh": "寄回", "en": "Ship"}, "department": "shipping"},
            "orphan": {"title": {"zh": "孤儿", "en": "Orphan"}, "department": "quality"},
        },
    }
    assert_problem(
        await agent.request("PUT", "/api/workflow-templates/recall", json=template), 403, "forbidden_role"
    )
    problem = assert_problem(
        await admin.request("PUT", "/api/workflow-templates/recall", json=template), 400, "invalid_template"
    )
    assert problem["problems"] == [
        {
            "step": "ship",
            "message": "unknown department 'shipping' (known: after_sales, customer_service, finance, "
            "logistics, quality, technical, warehouse)",
        }
    ]
    template["steps"]["ship"]["department"] = "logistics"  # type: ignore[index]
    problem = assert_problem(
        await admin.request("POST", "/api/workflow-templates/check", json=template), 400, "invalid_template"
    )
    assert problem["problems"] == [{"step": "orphan", "message": "unreachable from the start step 'notify'"}]
    del template["steps"]["orphan"]  # type: ignore[attr-defined]
    status, saved, _ = await admin.request("PUT", "/api/workflow-templates/recall", json=template)
    assert status == 200 and saved["name"] == "recall"
    status, started, _ = await agent2.request("POST", f"{path}/workflow", json={"template": "recall"})
    assert status == 200 and started["workflow"]["steps"]["notify"]["state"] == "active"

    assert_problem(
        await agent.request("PUT", f"/api/staff/{team['agent1']}", json={"departments": ["finance"]}),
        403,
        "forbidden_role",
    )
    assert_problem(
        await admin.request("PUT", f"/api/staff/{team['agent1']}", json={"departments": ["sales"]}),
        400,
        "unknown_department",
    )
    rule = {"category": "recall", "subject": {"zh": "召回", "en": "Recall"}, "workflow": "recall"}
    status, _, _ = await admin.request("PUT", "/api/intent-rules/recall_request", json=rule)
    assert status == 200
    _, rules, _ = await agent.request("GET", "/api/intent-rules")
    assert rules["recall_request"]["workflow"] == "recall" and "return_request" in rules
    _, staff, _ = await agent.request("GET", "/api/staff")
    assert [s["phone"] for s in staff if s["username"] == "supervisor"] == ["+8613900000009"]


async def test_the_tickets_api_is_in_the_openapi_document(http: ApiClient) -> None:
    _, spec, _ = await http.request("GET", "/api/openapi.json")
    assert spec["paths"]["/api/tickets/{ticket_id}/assign"]["post"]["x-required-role"] == "supervisor"
    assert spec["paths"]["/api/workflow-templates/{name}"]["put"]["x-required-role"] == "admin"
    assert "/api/tickets/{ticket_id}/workflow/steps/{step}/hand-back" in spec["paths"]
    assert "IntentSignal" in spec["components"]["schemas"]
