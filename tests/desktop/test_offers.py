"""Offers that do not end in an answer: declined by everyone, or left behind by an agent who goes offline or
on a break while it rings. The contact is never stranded. Real Socket.IO clients on the real app."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestServer

from agent_desktop import Desktop
from agent_desktop.http import DESKTOP
from tests.desktop.conftest import Connect, caller_with_history, make_agent, make_queue, queue_request


async def test_a_call_every_agent_declined_is_offered_to_them_again_after_a_cool_down(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, offer_timeout_seconds=1.0)
    _, first_token = await make_agent(server, "declines_first", {"after_sales": 1})
    _, second_token = await make_agent(server, "declines_second", {"after_sales": 1})
    first = await connect(server, first_token)
    second = await connect(server, second_token)
    _, call_id = await caller_with_history(server)

    await desktop.gateway.enqueue(queue_request(call_id))

    contact_id = (await first.next("offer"))["contact"]["id"]
    assert "ok" in await first.call("decline", {"contact_id": contact_id})
    assert (await second.next("offer"))["contact"]["id"] == contact_id
    assert "ok" in await second.call("decline", {"contact_id": contact_id})
    last_declined = time.monotonic()

    again = await first.next("offer", within=5)
    assert again["contact"]["id"] == contact_id
    assert time.monotonic() - last_declined >= 0.9  # not at once: after the queue's offer timeout
    assert (await desktop.store.contact(contact_id)).declined_by == []
    assert "ok" in await first.call("accept", {"contact_id": contact_id})


async def test_a_call_declined_in_one_queue_may_be_offered_to_the_same_agent_after_overflow(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, id="escalations", offer_timeout_seconds=60.0)
    await make_queue(
        server,
        max_wait_seconds=1.0,
        offer_timeout_seconds=60.0,
        overflow={"to": "queue", "queue": "escalations"},
    )
    _, token = await make_agent(server, "only_one", {"after_sales": 1})
    desk = await connect(server, token)
    _, call_id = await caller_with_history(server)

    await desktop.gateway.enqueue(queue_request(call_id))
    contact_id = (await desk.next("offer"))["contact"]["id"]
    assert "ok" in await desk.call("decline", {"contact_id": contact_id})

    # long before the 60 s cool-down: the escalations queue starts with a clean slate
    again = await desk.next("offer", within=5)
    assert again["contact"]["id"] == contact_id and again["contact"]["queue"] == "escalations"
    assert again["contact"]["declined_by"] == []


@pytest.mark.parametrize("leaves_to", ["offline", "break"])
async def test_an_agent_who_leaves_while_an_offer_rings_gives_it_to_the_next_agent_at_once(
    server: TestServer, connect: Connect, leaves_to: str
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, offer_timeout_seconds=30.0)
    leaving, leaving_token = await make_agent(server, "leaving", {"after_sales": 1})
    staying, staying_token = await make_agent(server, "staying", {"after_sales": 1})
    leaving_desk = await connect(server, leaving_token)
    staying_desk = await connect(server, staying_token)
    _, call_id = await caller_with_history(server)

    await desktop.gateway.enqueue(queue_request(call_id))
    contact_id = (await leaving_desk.next("offer"))["contact"]["id"]
    reply = await leaving_desk.call("state", {"state": leaves_to, "reason": "lunch"})
    assert reply["ok"]["presence"] == leaves_to and reply["ok"]["offer"] is None

    withdrawn = await leaving_desk.next("offer.withdrawn")
    assert withdrawn == {"contact_id": contact_id, "reason": f"agent_{leaves_to}"}
    # long before the 30 s offer timeout
    assert (await staying_desk.next("offer", within=3))["contact"]["id"] == contact_id
    assert (await leaving_desk.call("accept", {"contact_id": contact_id}))["error"]["code"] == "offer_gone"
    agent = await desktop.store.agent(leaving.id)
    assert (agent.presence.value, agent.offer) == (leaves_to, None)
    assert agent.reason == ("lunch" if leaves_to == "break" else None)  # not missed_offer
    contact = await desktop.store.contact(contact_id)
    assert contact.declined_by == [] and contact.offered_to == [staying.id]
