"""The agent desktop as agents and supervisors meet it: real Socket.IO clients on the real app."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import socketio
from aiohttp.test_utils import TestServer

from agent_desktop import Desktop
from agent_desktop.http import DESKTOP
from core.db import utcnow
from tests.conftest import ApiClient
from tests.desktop.conftest import Connect, caller_with_history, make_agent, make_queue, queue_request


async def test_offer_pops_customer_history_to_the_longest_idle_agent(
    server: TestServer, http: ApiClient, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    longest_idle, idle_token = await make_agent(server, "li_na", {"after_sales": 3})
    await asyncio.sleep(0.05)
    _, recent_token = await make_agent(server, "alex", {"after_sales": 5})
    idle_socket = await connect(server, idle_token)
    recent_socket = await connect(server, recent_token)
    customer_id, call_id = await caller_with_history(server)

    await desktop.gateway.enqueue(queue_request(call_id))

    pop = await idle_socket.next("offer")
    assert pop["customer"]["id"] == customer_id
    assert {event["channel"] for event in pop["history"]} >= {"wechat", "voice"}
    assert [event["body"]["text"] for event in pop["transcript"]] == ["我要退货", "订单号 12345"]
    assert pop["bot_summary"] == "退货，订单 12345"
    assert pop["ivr"]["variables"] == {"order_number": "12345"}
    assert pop["ivr"]["path"][0]["node"] == "greeting"
    assert pop["open_tickets"] == []
    assert recent_socket.events["offer"].empty()

    agent = ApiClient(http.session, http.base, idle_token)
    contact_id = pop["contact"]["id"]
    status, contact, _ = await agent.request("POST", f"/api/desktop/offers/{contact_id}/accept")
    assert status == 200 and contact["status"] == "connected" and contact["agent_id"] == longest_idle.id
    assert (await desktop.gateway.wait(call_id, 1.0)) == "connected"
    _, me, _ = await agent.request("GET", "/api/desktop/me")
    assert me["state"] == "on_call"

    status, wrapped, _ = await agent.request(
        "POST", f"/api/desktop/contacts/{contact_id}/wrap-up", json={"codes": ["return_explained"]}
    )
    assert status == 200 and wrapped["status"] == "ended" and wrapped["wrap_up_codes"] == ["return_explained"]
    _, me, _ = await agent.request("GET", "/api/desktop/me")
    assert me["state"] == "available"
    page = await desktop.acd.omni.timeline.page(customer_id, limit=10)
    kinds = [event.kind for event in page.events]
    assert kinds.index("contact.wrapped_up") < kinds.index("contact.connected")
    history = await desktop.store.state_history(longest_idle.id)
    assert [entry.state for entry in reversed(history.states)][-3:] == ["on_call", "wrap_up", "available"]


async def test_unanswered_offer_goes_to_the_next_agent_and_the_first_is_not_ready(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, offer_timeout_seconds=0.5)
    first, first_token = await make_agent(server, "first", {"after_sales": 1})
    await asyncio.sleep(0.05)
    _, second_token = await make_agent(server, "second", {"after_sales": 1})
    first_socket = await connect(server, first_token)
    second_socket = await connect(server, second_token)
    _, call_id = await caller_with_history(server)

    await desktop.gateway.enqueue(queue_request(call_id))

    offered = await first_socket.next("offer")
    withdrawn = await first_socket.next("offer.withdrawn", within=3)
    assert withdrawn == {"contact_id": offered["contact"]["id"], "reason": "timeout"}
    again = await second_socket.next("offer", within=3)
    assert again["contact"]["id"] == offered["contact"]["id"]
    state = await desktop.store.agent(first.id)
    assert (state.state.value, state.reason) == ("break", "missed_offer")


async def test_declined_offer_is_routed_to_another_agent(server: TestServer, connect: Connect) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    _, first_token = await make_agent(server, "first", {"after_sales": 1})
    await asyncio.sleep(0.05)
    _, second_token = await make_agent(server, "second", {"after_sales": 1})
    first_socket = await connect(server, first_token)
    second_socket = await connect(server, second_token)
    _, call_id = await caller_with_history(server)
    await desktop.gateway.enqueue(queue_request(call_id))

    offered = await first_socket.next("offer")
    ack = await first_socket.call("decline", {"contact_id": offered["contact"]["id"]})
    assert ack["ok"]["declined_by"]
    assert (await second_socket.next("offer", within=3))["contact"]["id"] == offered["contact"]["id"]
    assert (await first_socket.call("accept", {"contact_id": offered["contact"]["id"]}))["error"][
        "code"
    ] == "offer_gone"
    assert (await first_socket.call("accept", {"nope": 1}))["error"]["code"] == "validation_failed"


async def test_ring_all_offers_everyone_and_the_first_to_accept_wins(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, strategy="ring_all")
    sockets = []
    for name in ("ring_a", "ring_b", "ring_c"):
        _, token = await make_agent(server, name, {"after_sales": 1})
        sockets.append(await connect(server, token))
    _, call_id = await caller_with_history(server)
    await desktop.gateway.enqueue(queue_request(call_id))

    pops = [await socket.next("offer") for socket in sockets]
    contact_id = pops[0]["contact"]["id"]
    assert (await sockets[1].call("accept", {"contact_id": contact_id}))["ok"]["status"] == "connected"
    for loser in (sockets[0], sockets[2]):
        assert (await loser.next("offer.withdrawn"))["reason"] == "taken"


async def test_sticky_queue_offers_the_customer_to_the_agent_who_served_them_last(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, strategy="sticky", sticky_seconds=10, wrap_up_seconds=0)
    _, idle_token = await make_agent(server, "idle_longest", {"after_sales": 1})
    await asyncio.sleep(0.05)
    last, last_token = await make_agent(server, "served_last", {"after_sales": 1})
    idle_socket = await connect(server, idle_token)
    last_socket = await connect(server, last_token)
    customer_id, call_id = await caller_with_history(server)
    served = utcnow() - dt.timedelta(hours=1)
    await desktop.store.contacts.insert_one(
        {
            "customer_id": customer_id,
            "agent_id": last.id,
            "connected_at": served,
            "ended_at": served,
            "enqueued_at": served,
            "queue": "after_sales",
            "status": "ended",
            "kind": "call",
            "priority": "normal",
        }
    )
    await desktop.gateway.enqueue(queue_request(call_id))
    assert (await last_socket.next("offer"))["customer"]["id"] == customer_id
    assert idle_socket.events["offer"].empty()


async def test_sockets_without_or_with_a_bad_token_are_refused(server: TestServer, connect: Connect) -> None:
    for token in (None, "not-a-real-token"):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await connect(server, token)


async def test_only_supervisors_may_open_the_supervisor_namespace(
    server: TestServer, connect: Connect, http: ApiClient
) -> None:
    _, agent_token = await make_agent(server, "plain_agent", {"after_sales": 1})
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(server, agent_token, "/supervisor")
    supervisor = await http.as_user("supervisor", "supervisor-demo")
    socket = await connect(server, supervisor.token, "/supervisor")
    await make_queue(server)
    board = (await socket.call("wallboard"))["ok"]
    assert board["agents_by_state"]["available"] == 1
    assert [queue["queue"] for queue in board["queues"]] == ["after_sales"]


async def test_queue_admin_and_wallboard_respect_roles(
    admin: ApiClient, supervisor: ApiClient, agent: ApiClient, server: TestServer
) -> None:
    queue = {
        "id": "vip",
        "skills": {"after_sales": 4},
        "strategy": "skills_best_level",
        "priority": 10,
        "max_wait_seconds": 120,
        "overflow": {"to": "voicemail"},
    }
    assert (await agent.request("POST", "/api/desktop/queues", json=queue))[0] == 403
    status, created, _ = await admin.request("POST", "/api/desktop/queues", json=queue)
    assert status == 201 and created["strategy"] == "skills_best_level"
    assert (await admin.request("POST", "/api/desktop/queues", json=queue))[1]["code"] == "queue_exists"
    bad = await admin.request("POST", "/api/desktop/queues", json={**queue, "id": "x", "skills": {"a": 9}})
    assert bad[0] == 400
    status, patched, _ = await admin.request("PATCH", "/api/desktop/queues/vip", json={"priority": 20})
    assert status == 200 and patched["priority"] == 20
    _, me, _ = await agent.request("GET", "/api/desktop/me")
    status, skilled, _ = await admin.request(
        "PUT",
        f"/api/desktop/agents/{me['user_id']}/skills",
        json={"skills": {"after_sales": 4}, "max_chats": 2},
    )
    assert status == 200 and skilled["skills"] == {"after_sales": 4}
    assert (await agent.request("PUT", "/api/desktop/me/state", json={"state": "break", "reason": "lunch"}))[
        1
    ]["state"] == "break"
    assert (await agent.request("GET", "/api/desktop/wallboard"))[0] == 403
    status, board, _ = await supervisor.request("GET", "/api/desktop/wallboard")
    assert status == 200 and board["agents_by_state"]["break"] == 1 and board["queues"][0]["queue"] == "vip"
    assert (await admin.request("DELETE", "/api/desktop/queues/vip"))[0] == 204
