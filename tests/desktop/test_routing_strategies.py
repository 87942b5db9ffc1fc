"""Who gets a contact, and when: best level first, sticky to the customer's last agent (for a while), a call
blocking chats or not, timed wrap-up running out, and the most urgent queue and contact first. Real
Socket.IO clients on the real app."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from aiohttp.test_utils import TestServer

from agent_desktop import AgentSkills, ContactKind, Desktop, NewContact, StateChange
from agent_desktop.http import DESKTOP
from core.db import utcnow
from omnichannel import Identity, IdentityKind
from tests.desktop.conftest import Connect, caller_with_history, make_agent, make_queue, queue_request


async def chat(desktop: Desktop, visitor: str, queue: str = "after_sales", priority: str = "normal") -> str:
    customer, _ = await desktop.acd.omni.customers.resolve(
        [Identity(kind=IdentityKind.web_visitor, value=visitor)]
    )
    contact = await desktop.acd.add(
        NewContact.model_validate(
            {
                "queue": queue,
                "kind": ContactKind.chat,
                "customer_id": customer.id,
                "external_ref": f"chat-{visitor}",
                "priority": priority,
            }
        )
    )
    return contact.id


async def test_best_level_first_offers_the_expert_before_a_longer_idle_novice(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, strategy="skills_best_level")
    _, novice_token = await make_agent(server, "novice", {"after_sales": 1})
    await asyncio.sleep(0.05)
    _, expert_token = await make_agent(server, "expert", {"after_sales": 5})
    novice = await connect(server, novice_token)
    expert = await connect(server, expert_token)
    _, call_id = await caller_with_history(server)

    await desktop.gateway.enqueue(queue_request(call_id))

    assert (await expert.next("offer"))["contact"]["external_ref"] == call_id
    assert novice.events["offer"].empty()


async def test_sticky_offers_the_customers_last_agent_and_falls_back_after_sticky_seconds(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, strategy="sticky", sticky_seconds=2.0, wrap_up_seconds=0)
    regular, regular_token = await make_agent(server, "regular", {"after_sales": 1})
    other, other_token = await make_agent(server, "other", {"after_sales": 1}, available=False)
    regular_desk = await connect(server, regular_token)
    other_desk = await connect(server, other_token)
    phone = "13800138009"
    await caller_with_history(server, phone)

    async def served_by_regular(call_id: str) -> None:
        await desktop.gateway.enqueue(queue_request(call_id, caller=phone))
        contact_id = (await regular_desk.next("offer"))["contact"]["id"]
        await desktop.acd.accept(regular, contact_id)
        await desktop.acd.end(regular, contact_id)

    await served_by_regular("call-first")
    await desktop.agents.set_state(other, StateChange(state="available"))
    await desktop.store.agents.update_one(  # the other agent has waited far longer
        {"_id": other.id}, {"$set": {"idle_since": utcnow() - dt.timedelta(hours=1)}}
    )
    await served_by_regular("call-second")  # the customer's last agent, not the longest idle
    assert other_desk.events["offer"].empty()

    await desktop.agents.set_state(regular, StateChange(state="break", reason="coffee"))
    queued = time.monotonic()
    await desktop.gateway.enqueue(queue_request("call-third", caller=phone))
    pop = await other_desk.next("offer", within=5)  # after waiting sticky_seconds for the regular
    assert pop["contact"]["external_ref"] == "call-third"
    assert time.monotonic() - queued >= 1.8


@pytest.mark.parametrize("blocks", [True, False])
async def test_a_call_blocks_chats_only_when_the_agent_is_set_so(
    server: TestServer, connect: Connect, blocks: bool
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    agent, token = await make_agent(server, "multitasker", {"after_sales": 1})
    await desktop.agents.set_skills(
        agent.id, AgentSkills(skills={"after_sales": 1}, max_chats=2, call_blocks_chats=blocks)
    )
    desk = await connect(server, token)
    _, call_id = await caller_with_history(server)
    await desktop.gateway.enqueue(queue_request(call_id))
    await desktop.acd.accept(agent, (await desk.next("offer"))["contact"]["id"])

    chat_id = await chat(desktop, "visitor-during-call")

    if blocks:
        await asyncio.sleep(1.5)  # several routing passes
        assert desk.events["offer"].empty()
        assert (await desktop.store.contact(chat_id)).status.value == "waiting"
    else:
        assert (await desk.next("offer", within=3))["contact"]["id"] == chat_id


async def test_timed_wrap_up_runs_out_and_the_agent_takes_the_next_call(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, wrap_up_seconds=1.0)
    agent, token = await make_agent(server, "wraps_up", {"after_sales": 1})
    desk = await connect(server, token)
    _, call_id = await caller_with_history(server)
    await desktop.gateway.enqueue(queue_request(call_id))
    contact_id = (await desk.next("offer"))["contact"]["id"]
    await desktop.acd.accept(agent, contact_id)

    await desktop.acd.end(agent, contact_id)
    ended = time.monotonic()
    assert (await desktop.store.agent(agent.id)).state.value == "wrap_up"
    await desktop.gateway.enqueue(queue_request("call-next", caller="13800138001"))

    pop = await desk.next("offer", within=5)  # not during the wrap-up: once it ran out, without codes
    assert pop["contact"]["external_ref"] == "call-next"
    assert time.monotonic() - ended >= 0.9
    history = await desktop.store.state_history(agent.id, limit=3)
    assert [entry.state for entry in reversed(history.states)] == ["on_call", "wrap_up", "available"]


async def test_the_higher_priority_queue_then_the_more_urgent_contact_is_offered_first(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    await make_queue(server, id="vip_line", priority=10)
    agent, token = await make_agent(server, "one_at_a_time", {"after_sales": 1}, available=False, max_chats=1)
    desk = await connect(server, token)
    oldest = await chat(desktop, "waited-longest")
    await asyncio.sleep(0.02)
    vip = await chat(desktop, "vip-queue", queue="vip_line")
    await asyncio.sleep(0.02)
    urgent = await chat(desktop, "urgent-one", priority="urgent")

    await desktop.agents.set_state(agent, StateChange(state="available"))
    offered = []
    for _ in range(3):
        contact_id = (await desk.next("offer"))["contact"]["id"]
        offered.append(contact_id)
        await desktop.acd.accept(agent, contact_id)
        await desktop.acd.end(agent, contact_id)  # a chat frees its slot at once

    assert offered == [vip, urgent, oldest]
