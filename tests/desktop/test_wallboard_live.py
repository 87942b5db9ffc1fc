"""The supervisor's wallboard over real Socket.IO clients: live updates, alerts stored once, forced states."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from aiohttp.test_utils import TestServer

from agent_desktop import ContactKind, Desktop, NewContact
from agent_desktop.http import DESKTOP
from core.app import DATABASE
from core.db import utcnow
from omnichannel import Identity, IdentityKind
from tests.conftest import ApiClient
from tests.desktop.conftest import AgentSocket, Connect, make_agent, make_queue


async def board_where(socket: AgentSocket, check: Any, within: float) -> dict[str, Any]:
    """The first pushed wallboard for which ``check(board)`` holds."""
    async with asyncio.timeout(within):
        while True:
            board: dict[str, Any] = await socket.events["wallboard"].get()
            if check(board):
                return board


async def waiting_contact(server: TestServer, phone: str = "13900139000") -> str:
    desktop: Desktop = server.app[DESKTOP]
    customer, _ = await desktop.acd.omni.customers.resolve([Identity(kind=IdentityKind.phone, value=phone)])
    contact = await desktop.acd.add(
        NewContact(queue="after_sales", kind=ContactKind.call, customer_id=customer.id, external_ref=phone)
    )
    return contact.id


async def test_wallboard_shows_a_waiting_contact_within_a_second(
    server: TestServer, supervisor: ApiClient, connect: Connect
) -> None:
    await make_queue(server)
    socket = await connect(server, supervisor.token, "/supervisor")
    await board_where(socket, lambda board: board["queues"], within=3)

    enqueued = time.monotonic()
    await waiting_contact(server)
    board = await board_where(socket, lambda board: board["queues"][0]["waiting"] == 1, within=1.0)
    assert time.monotonic() - enqueued < 1.0
    queue = board["queues"][0]
    assert queue["queue"] == "after_sales" and queue["longest_wait_seconds"] < 1.0
    assert set(board["agents_by_state"]) == {"offline", "available", "on_call", "in_chat", "wrap_up", "break"}
    assert board["config"]["sl_threshold_seconds"] == 20.0


async def test_answered_and_abandoned_contacts_give_service_level_asa_and_abandon_rate(
    server: TestServer, supervisor: ApiClient
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    now = utcnow()
    # contacts as the ACD writes them (every write stamps updated_at: the wallboard reads what changed)
    base = {
        "queue": "after_sales",
        "kind": "call",
        "customer_id": "c",
        "priority": "normal",
        "skills": {},
        "updated_at": now,
    }
    await desktop.store.contacts.insert_many(
        [
            {
                **base,
                "status": "ended",
                "enqueued_at": now - dt.timedelta(seconds=90),
                "connected_at": now - dt.timedelta(seconds=80),
                "ended_at": now,
            },
            {
                **base,
                "status": "connected",
                "enqueued_at": now - dt.timedelta(seconds=60),
                "connected_at": now - dt.timedelta(seconds=30),
            },
            {**base, "status": "withdrawn", "enqueued_at": now - dt.timedelta(seconds=50), "ended_at": now},
        ]
    )
    status, config, _ = await supervisor.request(
        "PATCH", "/api/desktop/wallboard/config", json={"sl_threshold_seconds": 15, "sl_target": 0.5}
    )
    assert status == 200 and config["sl_threshold_seconds"] == 15
    status, board, _ = await supervisor.request("GET", "/api/desktop/wallboard")
    queue = board["queues"][0]
    assert (queue["answered"], queue["abandoned"], queue["connected"]) == (2, 1, 1)
    assert queue["service_level"] == 1 / 3
    assert queue["asa_seconds"] == 20.0
    assert queue["abandon_rate"] == 1 / 3
    bad = await supervisor.request("PATCH", "/api/desktop/wallboard/config", json={"sl_target": 3})
    assert bad[0] == 400 and bad[1]["code"] == "validation_failed"


async def test_a_long_wait_raises_one_stored_alert_until_it_clears(
    server: TestServer, supervisor: ApiClient, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    await supervisor.request("PATCH", "/api/desktop/wallboard/config", json={"max_wait_seconds": 0.5})
    socket = await connect(server, supervisor.token, "/supervisor")
    contact_id = await waiting_contact(server)

    alert = await socket.next("alert", within=4)
    assert (alert["rule"], alert["subject"], alert["active"]) == ("queue_wait", "after_sales", True)
    board = await board_where(socket, lambda board: board["alerts"], within=2)
    assert [a["rule"] for a in board["alerts"]] == ["queue_wait"]
    await asyncio.sleep(1.5)  # the condition keeps holding over several evaluations
    alerts = server.app[DATABASE]["alerts"]
    assert await alerts.count_documents({"rule": "queue_wait"}) == 1
    assert socket.events["alert"].empty()

    await desktop.acd.withdraw(contact_id, "caller_hung_up")
    cleared = await socket.next("alert.cleared", within=3)
    assert cleared["id"] == alert["id"] and cleared["active"] is False
    status, stored, _ = await supervisor.request("GET", "/api/desktop/alerts")
    assert status == 200
    # the caller who hung up is an abandoned contact: with nobody answered the service level is 0 %
    assert sorted((a["rule"], a["active"]) for a in stored) == [
        ("queue_wait", False),
        ("service_level", True),
    ]


async def test_bot_resolution_below_seventy_percent_alerts_from_bot_outcomes(
    server: TestServer, supervisor: ApiClient, connect: Connect
) -> None:
    socket = await connect(server, supervisor.token, "/supervisor")
    outcomes = server.app[DATABASE]["bot_outcomes"]
    now = utcnow()
    await outcomes.insert_many(
        [
            {
                "conversation_id": f"conv{i}",
                "customer_id": "c",
                "intent": intent,
                "outcome": outcome,
                "channel": "webchat",
                "at": now,
            }
            for i, (intent, outcome) in enumerate(
                [
                    ("order_status", "resolved"),
                    ("order_status", "resolved"),
                    ("order_status", "handed_off"),
                    ("complaint", "handed_off"),
                ]
            )
        ]
        + [
            {
                "conversation_id": "old",
                "customer_id": "c",
                "intent": "faq",
                "outcome": "resolved",
                "channel": "webchat",
                "at": now - dt.timedelta(days=2),
            }
        ]
    )
    alert = await socket.next("alert", within=4)
    assert (alert["rule"], alert["subject"], alert["value"], alert["threshold"]) == (
        "bot_resolution",
        "bot",
        0.5,
        0.7,
    )
    board = await board_where(socket, lambda board: board["bot"]["rate"] is not None, within=2)
    by_intent = board["bot"].pop("by_intent")
    assert board["bot"] == {"resolved": 2, "handed_off": 2, "abandoned": 0, "rate": 0.5}
    # per intent, most conversations first, named in both languages by the NLU's catalogue
    assert [(row["intent"], row["label"]["zh"], row["resolved"], row["handed_off"]) for row in by_intent] == [
        ("order_status", "订单状态查询", 2, 1),
        ("complaint", by_intent[1]["label"]["zh"], 0, 1),
    ]
    assert by_intent[0]["rate"] == 2 / 3 and by_intent[1]["rate"] == 0.0
    assert by_intent[1]["label"]["en"] != "complaint" and by_intent[1]["label"]["zh"] != "complaint"


async def test_supervisor_forces_an_agent_onto_a_break_and_it_is_audited(
    server: TestServer, supervisor: ApiClient, admin: ApiClient, http: ApiClient, connect: Connect
) -> None:
    await make_queue(server)
    agent, agent_token = await make_agent(server, "forced_agent", {"after_sales": 1})
    agent_socket = await connect(server, agent_token)
    socket = await connect(server, supervisor.token, "/supervisor")

    ack = await socket.call("force_state", {"user_id": agent.id, "state": "break", "reason": "meeting"})
    assert (ack["ok"]["state"], ack["ok"]["reason"]) == ("break", "meeting")
    pushed = await agent_socket.next("agent.state")
    assert pushed["state"] == "break"
    assert (await socket.call("force_state", {"user_id": agent.id, "state": "asleep"}))["error"][
        "code"
    ] == "validation_failed"
    assert (await socket.call("force_state", {"user_id": "nobody", "state": "available"}))["error"][
        "code"
    ] == "user_not_found"

    agent_api = ApiClient(http.session, http.base, agent_token)
    path = f"/api/desktop/agents/{agent.id}/state"
    assert (await agent_api.request("PUT", path, json={"state": "available"}))[0] == 403
    status, body, _ = await supervisor.request("PUT", path, json={"state": "available"})
    assert status == 200 and body["state"] == "available"

    _, entries, _ = await admin.request("GET", "/api/audit", params={"limit": 50})
    forced = [e for e in entries if e["action"] in ("force_agent_state",)]
    assert [(e["status"], e["actor"]["username"]) for e in forced][::-1] == [
        (200, "supervisor"),
        (400, "supervisor"),
        (404, "supervisor"),
        (403, "forced_agent"),
        (200, "supervisor"),
    ]
    assert forced[-1]["target"] == f"agent:{agent.id}"


async def test_two_web_nodes_store_and_send_one_alert_and_each_feeds_its_own_supervisors(
    server: TestServer, second_node: TestServer, supervisor: ApiClient, connect: Connect
) -> None:
    await make_queue(server)
    await supervisor.request("PATCH", "/api/desktop/wallboard/config", json={"max_wait_seconds": 0.5})
    on_a = await connect(server, supervisor.token, "/supervisor")
    on_b = await connect(second_node, supervisor.token, "/supervisor")
    await waiting_contact(server)

    for socket in (on_a, on_b):
        alert = await socket.next("alert", within=4)
        assert (alert["rule"], alert["subject"]) == ("queue_wait", "after_sales")
        await board_where(socket, lambda board: board["queues"][0]["waiting"] == 1, within=1.5)
    await asyncio.sleep(2.5)  # both nodes evaluate the rule several times meanwhile
    assert await server.app[DATABASE]["alerts"].count_documents({}) == 1
    assert on_a.events["alert"].empty() and on_b.events["alert"].empty()
