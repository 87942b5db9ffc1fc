"""The state history reports what agents did and why — break reasons included — and supervisors read it
page by page over a time window; agents read only their own. Real app over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt

from aiohttp.test_utils import TestServer

from agent_desktop import Desktop, StateChange
from agent_desktop.http import DESKTOP
from tests.conftest import ApiClient
from tests.desktop.conftest import make_agent


async def test_supervisor_reads_an_agents_breaks_with_their_reasons_page_by_page(
    server: TestServer, http: ApiClient, supervisor: ApiClient
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    agent, token = await make_agent(server, "takes_breaks", {"after_sales": 1})
    await asyncio.sleep(0.02)
    before_breaks = dt.datetime.now(dt.UTC)
    for change in (
        StateChange(state="break", reason="lunch"),
        StateChange(state="break", reason="meeting"),  # the same state, another reason: recorded too
        StateChange(state="break", reason="meeting"),  # nothing changed: not recorded again
        StateChange(state="available"),
    ):
        await asyncio.sleep(0.02)
        await desktop.agents.set_state(agent, change)
    path = f"/api/desktop/agents/{agent.id}/states"

    status, page, _ = await supervisor.request("GET", path)
    assert status == 200 and page["user_id"] == agent.id
    assert [(entry["state"], entry["reason"]) for entry in page["states"]] == [
        ("available", None),
        ("break", "meeting"),
        ("break", "lunch"),
        ("available", None),  # make_agent's
    ]

    status, first, _ = await supervisor.request("GET", path, params={"limit": "2"})
    assert status == 200 and len(first["states"]) == 2 and first["next_cursor"]
    status, second, _ = await supervisor.request(
        "GET", path, params={"limit": "2", "cursor": first["next_cursor"]}
    )
    assert status == 200 and second["next_cursor"] is None
    assert first["states"] + second["states"] == page["states"]

    window = {"since": before_breaks.isoformat(), "until": page["states"][0]["ts"]}
    status, breaks, _ = await supervisor.request("GET", path, params=window)
    assert status == 200 and [entry["reason"] for entry in breaks["states"]] == ["meeting", "lunch"]

    own = ApiClient(http.session, http.base, token)
    status, mine, _ = await own.request("GET", path)
    assert status == 200 and mine["states"] == page["states"]

    _, other_token = await make_agent(server, "curious_colleague", {"after_sales": 1})
    status, problem, _ = await ApiClient(http.session, http.base, other_token).request("GET", path)
    assert status == 403 and problem["code"] == "not_your_history"
    status, problem, _ = await supervisor.request("GET", path, params={"since": "2026-01-01T00:00:00"})
    assert status == 400 and problem["code"] == "validation_failed"  # a time without its zone is ambiguous
