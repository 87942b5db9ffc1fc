"""The flows REST API as admins and supervisors use it, and what agents may not do."""

from __future__ import annotations

import datetime as dt

from tests.conftest import ApiClient
from tests.ivr.conftest import MAIN_YAML
from tests.ivr.test_ivr_versions import V1, V2
from tests.test_api import assert_problem


async def test_admin_uploads_activates_and_rolls_back(admin: ApiClient, supervisor: ApiClient) -> None:
    status, first, _ = await admin.request("POST", "/api/flows/main/versions", json={"yaml": MAIN_YAML})
    assert status == 201, first
    assert (first["version"], first["active"], first["author"]) == (1, False, "admin")
    status, second, _ = await admin.request(
        "POST", "/api/flows/main/versions", json={"yaml": V2, "activate": True}
    )
    assert status == 201 and (second["version"], second["active"]) == (2, True)

    status, flows, _ = await supervisor.request("GET", "/api/flows")
    assert status == 200 and flows == [
        {"name": "main", "active_version": 2, "latest_version": 2, "versions": 2}
    ]

    status, activated, _ = await admin.request("POST", "/api/flows/main/versions/1/activate")
    assert status == 200 and activated["active"] and activated["previous_active"] == 2
    status, back, _ = await admin.request("POST", "/api/flows/main/rollback")
    assert status == 200 and back["version"] == 2

    status, detail, _ = await supervisor.request("GET", "/api/flows/main")
    assert status == 200 and detail["active_version"] == 2
    assert [(v["version"], v["active"]) for v in detail["versions"]] == [(2, True), (1, False)]
    status, version, _ = await supervisor.request("GET", "/api/flows/main/versions/1")
    assert status == 200 and version["yaml"] == MAIN_YAML

    status, audit, _ = await admin.request("GET", "/api/audit?limit=20")
    actions = [entry["action"] for entry in audit]
    assert {"upload_flow_version", "activate_flow_version", "rollback_flow"} <= set(actions)


async def test_an_invalid_upload_is_refused_with_line_numbers_and_nothing_changes(admin: ApiClient) -> None:
    await admin.request("POST", "/api/flows/main/versions", json={"yaml": V1, "activate": True})
    broken = V1.replace("type: hangup", "type: hangpu")
    status, body, headers = await admin.request(
        "POST", "/api/flows/main/versions", json={"yaml": broken, "activate": True}
    )
    assert_problem(status, body, headers, 400, "flow_invalid")
    [error] = body["errors"]
    assert error == {
        "file": "main.yaml",
        "line": 14,
        "column": 11,
        "node": "bye",
        "code": "unknown_node_type",
        "message": error["message"],
    }
    assert body["detail"].startswith("main.yaml:14:11: node bye: unknown node type 'hangpu'")
    status, flows, _ = await admin.request("GET", "/api/flows")
    assert flows[0]["active_version"] == 1 and flows[0]["versions"] == 1


async def test_supervisor_validates_without_storing(supervisor: ApiClient) -> None:
    status, report, _ = await supervisor.request(
        "POST", "/api/flows/validate", json={"yaml": MAIN_YAML, "name": "main"}
    )
    assert status == 200 and report["valid"] and report["errors"] == [] and report["nodes"] > 20
    unknown_intent = MAIN_YAML.replace("return_request: service_ticket", "return_requst: service_ticket")
    status, report, _ = await supervisor.request("POST", "/api/flows/validate", json={"yaml": unknown_intent})
    assert status == 200 and not report["valid"]
    assert [(e["code"], e["node"]) for e in report["errors"]] == [("unknown_intent", "understand")]
    assert report["errors"][0]["file"] == "flow.yaml" and report["errors"][0]["line"] > 1
    status, flows, _ = await supervisor.request("GET", "/api/flows")
    assert flows == []


async def test_roles(agent: ApiClient, supervisor: ApiClient) -> None:
    for method, path, body in [
        ("GET", "/api/flows", None),
        ("POST", "/api/flows/validate", {"yaml": V1}),
        ("POST", "/api/flows/main/versions", {"yaml": V1}),
    ]:
        status, problem, headers = await agent.request(method, path, json=body)
        assert_problem(status, problem, headers, 403, "forbidden_role")
    for method, path, body in [
        ("POST", "/api/flows/main/versions", {"yaml": V1}),
        ("POST", "/api/flows/main/versions/1/activate", None),
        ("POST", "/api/flows/main/rollback", None),
    ]:
        status, problem, headers = await supervisor.request(method, path, json=body)
        assert_problem(status, problem, headers, 403, "forbidden_role")


async def test_bad_names_and_versions(admin: ApiClient) -> None:
    status, body, headers = await admin.request("POST", "/api/flows/Main%20Menu/versions", json={"yaml": V1})
    assert_problem(status, body, headers, 400, "bad_flow_name")
    status, body, headers = await admin.request("GET", "/api/flows/main/versions/latest")
    assert_problem(status, body, headers, 404, "flow_version_not_found")
    status, body, headers = await admin.request("POST", "/api/flows/main/versions/7/activate")
    assert_problem(status, body, headers, 404, "flow_version_not_found")
    status, body, headers = await admin.request("POST", "/api/flows/main/rollback")
    assert_problem(status, body, headers, 409, "flow_no_rollback")


async def test_a_supervisor_overrides_office_hours_until_a_time_and_ends_it(
    admin: ApiClient, supervisor: ApiClient, agent: ApiClient
) -> None:
    url = "/api/flows/main/hours-override"
    status, body, headers = await supervisor.request(
        "PUT", url, json={"state": "closed", "minutes": 120, "reason": "台风"}
    )
    assert_problem(status, body, headers, 404, "flow_not_found")  # no flow main yet
    await admin.request("POST", "/api/flows/main/versions", json={"yaml": V1, "activate": True})
    status, body, headers = await supervisor.request("GET", url)
    assert_problem(status, body, headers, 404, "override_not_found")  # the calendar rules

    status, override, _ = await supervisor.request(
        "PUT", url, json={"state": "closed", "minutes": 120, "reason": "台风 typhoon"}
    )
    assert status == 200, override
    assert (override["flow"], override["state"], override["set_by"]) == ("main", "closed", "supervisor")
    until = dt.datetime.fromisoformat(override["until"])
    assert dt.timedelta(minutes=119) < until - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=120)
    status, shown, _ = await agent.request("GET", url)
    assert status == 403
    status, shown, _ = await supervisor.request("GET", url)
    assert status == 200 and shown == override

    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).astimezone(dt.timezone(dt.timedelta(hours=8)))
    status, reopened, _ = await supervisor.request(
        "PUT", url, json={"state": "open", "until": later.isoformat(), "reason": "promotion"}
    )
    assert status == 200 and reopened["state"] == "open"  # a new override replaces the old one
    assert dt.datetime.fromisoformat(reopened["until"]) == later

    assert (await supervisor.request("DELETE", url))[0] == 204
    status, body, headers = await supervisor.request("GET", url)
    assert_problem(status, body, headers, 404, "override_not_found")
    status, body, headers = await supervisor.request("DELETE", url)
    assert_problem(status, body, headers, 404, "override_not_found")

    status, audit, _ = await admin.request("GET", "/api/audit?limit=20")
    actions = {(entry["action"], entry["actor"]["username"]) for entry in audit}
    assert {("set_hours_override", "supervisor"), ("clear_hours_override", "supervisor")} <= actions


async def test_a_bad_override_is_refused_and_changes_nothing(admin: ApiClient, agent: ApiClient) -> None:
    url = "/api/flows/main/hours-override"
    await admin.request("POST", "/api/flows/main/versions", json={"yaml": V1, "activate": True})
    now = dt.datetime.now(dt.UTC)
    for body, code in [
        ({"state": "open", "reason": "no end"}, "validation_failed"),
        (
            {"state": "open", "minutes": 5, "until": now.isoformat(), "reason": "two ends"},
            "validation_failed",
        ),
        ({"state": "ajar", "minutes": 5, "reason": "x"}, "validation_failed"),
        ({"state": "open", "minutes": 5, "reason": ""}, "validation_failed"),
        ({"state": "open", "until": "2026-11-26T23:00:00", "reason": "naive"}, "validation_failed"),
        (
            {"state": "open", "until": (now - dt.timedelta(minutes=1)).isoformat(), "reason": "past"},
            "override_bad_until",
        ),
        (
            {"state": "open", "until": (now + dt.timedelta(days=40)).isoformat(), "reason": "far"},
            "override_bad_until",
        ),
    ]:
        status, problem, headers = await admin.request("PUT", url, json=body)
        assert_problem(status, problem, headers, 400, code)
    status, problem, headers = await admin.request(
        "PUT", "/api/flows/Main/hours-override", json={"state": "open", "minutes": 5, "reason": "x"}
    )
    assert_problem(status, problem, headers, 400, "bad_flow_name")
    status, problem, headers = await agent.request(
        "PUT", url, json={"state": "open", "minutes": 5, "reason": "x"}
    )
    assert_problem(status, problem, headers, 403, "forbidden_role")
    status, problem, headers = await admin.request("GET", url)
    assert_problem(status, problem, headers, 404, "override_not_found")
