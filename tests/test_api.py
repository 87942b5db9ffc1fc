"""The REST API as its clients meet it: auth and roles, precise problem+json for bad input, the audit log."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestServer

from tests.conftest import ApiClient

PHONE = {"identities": [{"kind": "phone", "value": "13800138000"}], "name": "李娜"}


def assert_problem(status: int, body: object, headers: dict[str, str], expected: int, code: str) -> None:
    assert status == expected, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert isinstance(body, dict) and body["code"] == code and body["status"] == expected and body["detail"]


async def test_every_api_route_needs_a_token(http: ApiClient, server: TestServer) -> None:
    status, spec, _ = await http.request("GET", "/api/openapi.json")
    assert status == 200
    checked = 0
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            concrete = path.replace("{", "").replace("}", "")
            status, body, headers = await http.request(method.upper(), concrete)
            if operation.get("security") == []:
                assert status != 401, f"{method} {path} is public by declaration"
                continue
            assert_problem(status, body, headers, 401, "unauthorized")
            checked += 1
    assert checked >= 15


async def test_login_gives_a_token_that_identifies_the_user(agent: ApiClient) -> None:
    status, me, _ = await agent.request("GET", "/api/auth/me")
    assert status == 200
    assert me["username"] == "agent1" and me["role"] == "agent"


async def test_logout_revokes_the_token(agent: ApiClient) -> None:
    assert (await agent.request("POST", "/api/auth/logout"))[0] == 204
    status, body, headers = await agent.request("GET", "/api/auth/me")
    assert_problem(status, body, headers, 401, "invalid_token")


async def test_wrong_password_then_lockout(http: ApiClient) -> None:
    for _ in range(5):
        status, body, headers = await http.request(
            "POST", "/api/auth/login", json={"username": "agent2", "password": "wrong-password"}
        )
        assert_problem(status, body, headers, 401, "bad_credentials")
    status, body, headers = await http.request(
        "POST", "/api/auth/login", json={"username": "agent2", "password": "agent2-demo"}
    )
    assert_problem(status, body, headers, 429, "login_locked")
    assert int(headers["Retry-After"]) > 0


async def test_agent_is_refused_admin_work_and_the_attempt_is_audited(
    agent: ApiClient, admin: ApiClient
) -> None:
    status, body, headers = await agent.request(
        "POST", "/api/users", json={"username": "mallory", "password": "long-enough-1", "role": "admin"}
    )
    assert_problem(status, body, headers, 403, "forbidden_role")
    status, body, headers = await agent.request("GET", "/api/audit")
    assert_problem(status, body, headers, 403, "forbidden_role")
    status, entries, _ = await admin.request("GET", "/api/audit?limit=50")
    assert status == 200
    denied = [e for e in entries if e["status"] == 403 and e["actor"]["username"] == "agent1"]
    assert {e["action"] for e in denied} == {"create_user", "list_audit"}
    assert all(e["ip"] == "127.0.0.1" and e["ts"] for e in denied)


async def test_state_changes_are_audited_with_who_what_when_where(
    admin: ApiClient, supervisor: ApiClient
) -> None:
    _, first, _ = await supervisor.request("POST", "/api/customers/resolve", json=PHONE)
    _, second, _ = await supervisor.request(
        "POST", "/api/customers/resolve", json={"identities": [{"kind": "email", "value": "li@example.com"}]}
    )
    target, source = first["customer"]["id"], second["customer"]["id"]
    status, merge, _ = await supervisor.request(
        "POST", f"/api/customers/{target}/merge", json={"source_id": source}
    )
    assert status == 201
    _, entries, _ = await admin.request("GET", f"/api/audit?target=/api/customers/{target}/merge")
    assert len(entries) == 1
    entry = entries[0]
    assert entry["actor"]["username"] == "supervisor" and entry["action"] == "merge_customers"
    assert (
        entry["details"]["moved"] == ["email:li@example.com"] and entry["details"]["merge_id"] == merge["id"]
    )
    _, logins, _ = await admin.request("GET", "/api/audit?target=/api/auth/login")
    assert any(
        e["action"] == "login" and e["actor"]["username"] == "supervisor" and e["status"] == 200
        for e in logins
    )


async def test_agent_cannot_merge_customers(agent: ApiClient) -> None:
    status, body, headers = await agent.request(
        "POST",
        "/api/customers/6b0000000000000000000000/merge",
        json={"source_id": "6b0000000000000000000001"},
    )
    assert_problem(status, body, headers, 403, "forbidden_role")


async def test_invalid_json_is_a_400_with_a_code(agent: ApiClient) -> None:
    status, body, headers = await agent.request(
        "POST",
        "/api/customers/resolve",
        data=b'{"identities": [',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(status, body, headers, 400, "invalid_json")


async def test_unknown_fields_are_named(agent: ApiClient) -> None:
    status, body, headers = await agent.request(
        "POST", "/api/customers/resolve", json={**PHONE, "nmae": "typo"}
    )
    assert_problem(status, body, headers, 400, "validation_failed")
    assert [error["field"] for error in body["errors"]] == ["nmae"]


async def test_oversized_body_is_413_and_nothing_is_stored(agent: ApiClient) -> None:
    huge = json.dumps({**PHONE, "name": "x" * (2 * 1024 * 1024)})
    status, body, headers = await agent.request(
        "POST", "/api/customers/resolve", data=huge, headers={"Content-Type": "application/json"}
    )
    assert_problem(status, body, headers, 413, "payload_too_large")
    _, page, _ = await agent.request("GET", "/api/customers")
    assert page["customers"] == []


async def test_unknown_and_malformed_ids_are_404(agent: ApiClient) -> None:
    for path in ("/api/customers/6b0000000000000000000000", "/api/customers/not-an-id/timeline"):
        status, body, headers = await agent.request("GET", path)
        assert_problem(status, body, headers, 404, "customer_not_found")
    status, body, headers = await agent.request("GET", "/api/nothing-here")
    assert_problem(status, body, headers, 404, "route_not_found")


async def test_bad_phone_is_a_400_naming_the_problem(agent: ApiClient) -> None:
    status, body, headers = await agent.request(
        "POST", "/api/customers/resolve", json={"identities": [{"kind": "phone", "value": "call me"}]}
    )
    assert_problem(status, body, headers, 400, "invalid_phone")


async def test_event_posted_twice_with_one_idempotency_key_is_one_event(agent: ApiClient) -> None:
    _, resolved, _ = await agent.request("POST", "/api/customers/resolve", json=PHONE)
    customer_id = resolved["customer"]["id"]
    event = {"kind": "note.added", "channel": "internal", "body": {"text": "回访客户"}}
    first = await agent.request(
        "POST", f"/api/customers/{customer_id}/timeline", json=event, headers={"Idempotency-Key": "note-1"}
    )
    second = await agent.request(
        "POST", f"/api/customers/{customer_id}/timeline", json=event, headers={"Idempotency-Key": "note-1"}
    )
    assert (first[0], second[0]) == (201, 200)
    assert first[1]["event"]["id"] == second[1]["event"]["id"] and second[1]["created"] is False
    _, page, _ = await agent.request("GET", f"/api/customers/{customer_id}/timeline")
    assert [e["body"]["text"] for e in page["events"]] == ["回访客户"]
    assert page["events"][0]["actor"] == {
        "type": "agent",
        "id": page["events"][0]["actor"]["id"],
        "name": "李娜 Li Na",
    }


async def test_timeline_paging_over_http(agent: ApiClient) -> None:
    _, resolved, _ = await agent.request("POST", "/api/customers/resolve", json=PHONE)
    customer_id = resolved["customer"]["id"]
    for i in range(5):
        await agent.request(
            "POST",
            f"/api/customers/{customer_id}/timeline",
            json={
                "kind": "message.in",
                "channel": "sms",
                "body": {"n": i},
                "ts": f"2026-11-25T08:00:0{i}Z",
                "idempotency_key": f"sms{i}",
            },
        )
    _, page1, _ = await agent.request("GET", f"/api/customers/{customer_id}/timeline?limit=3&channel=sms")
    _, page2, _ = await agent.request(
        "GET", f"/api/customers/{customer_id}/timeline?limit=3&channel=sms&cursor={page1['next_cursor']}"
    )
    assert [e["body"]["n"] for e in page1["events"] + page2["events"]] == [4, 3, 2, 1, 0]
    assert page2["next_cursor"] is None
    status, body, headers = await agent.request("GET", f"/api/customers/{customer_id}/timeline?channel=fax")
    assert_problem(status, body, headers, 400, "validation_failed")
    assert "unknown channel fax" in body["detail"]


async def test_openapi_and_docs_are_served(http: ApiClient) -> None:
    status, spec, _ = await http.request("GET", "/api/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    assert "/api/customers/{customer_id}/timeline" in spec["paths"]
    resolve = spec["paths"]["/api/customers/resolve"]["post"]
    schema_ref = resolve["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref.rsplit("/", 1)[1] in spec["components"]["schemas"]
    status, html, _ = await http.request("GET", "/api/docs")
    assert status == 200 and "openapi.json" in html


async def test_health_and_metrics(http: ApiClient, agent: ApiClient) -> None:
    status, health, _ = await http.request("GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and health["down"] == []
    assert set(health["checks"]) == {"mongodb", "redis", "schema"}
    await agent.request("GET", "/api/customers")
    status, text, _ = await http.request("GET", "/metrics")
    assert status == 200
    assert 'huiliu_http_requests_total{method="GET",route="/api/customers",status="200"}' in text
