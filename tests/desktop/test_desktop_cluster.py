"""Two web nodes on one MongoDB and one Redis: offers reach agents on the other node, and concurrent
routing never offers one contact to two agents nor one agent two contacts."""

from __future__ import annotations

import asyncio
import collections

import pytest
from aiohttp.test_utils import TestServer

from agent_desktop import (
    ContactKind,
    ContactStatus,
    Desktop,
    NewContact,
    RecordingNotifier,
    StateChange,
)
from agent_desktop.http import DESKTOP
from agent_desktop.models import AgentSkills, QueueConfig
from core.auth import User, UserService
from core.db import Database, utcnow
from core.settings import Settings
from ivr_flows import CallbackRequest
from omnichannel import Identity, IdentityKind, Omnichannel
from tests.desktop.conftest import Connect, caller_with_history, make_agent, make_queue, queue_request
from tickets import create_service


@pytest.fixture
def omni(db: Database) -> Omnichannel:
    return Omnichannel.create(db, None)


@pytest.fixture
def desktop(db: Database, omni: Omnichannel, settings: Settings) -> Desktop:
    """One web node's desktop services, with a notifier that records what agents were sent."""
    return Desktop.create(db, omni, create_service(db, omni, settings), UserService(db), RecordingNotifier())


async def test_an_offer_routed_on_node_a_reaches_an_agent_connected_to_node_b(
    server: TestServer, second_node: TestServer, connect: Connect
) -> None:
    # Node B does not route, so the offer can only come from node A through Redis.
    await second_node.app[DESKTOP].acd.stop()
    await make_queue(server)
    _, token = await make_agent(server, "remote_agent", {"after_sales": 2})
    socket_on_b = await connect(second_node, token)
    customer_id, call_id = await caller_with_history(server)

    await server.app[DESKTOP].gateway.enqueue(queue_request(call_id))

    pop = await socket_on_b.next("offer")
    assert pop["customer"]["id"] == customer_id and pop["transcript"]


async def test_concurrent_routing_on_two_nodes_offers_each_contact_to_exactly_one_agent(
    db: Database, settings: Settings
) -> None:
    nodes = []
    for _ in range(2):
        omni = Omnichannel.create(db, None)
        nodes.append(
            (
                Desktop.create(
                    db, omni, create_service(db, omni, settings), UserService(db), RecordingNotifier()
                ),
                omni,
            )
        )
    desktop, omni = nodes[0]
    await desktop.store.create_queue(QueueConfig(id="after_sales", skills={"after_sales": 1}))
    for number in range(20):
        user = User(
            id=f"agent{number:02d}",
            username=f"agent{number:02d}",
            display_name="",
            role="agent",
            created_at=utcnow(),
        )
        await desktop.agents.ensure(user)
        await desktop.agents.set_skills(user.id, AgentSkills(skills={"after_sales": 1}))
        await desktop.agents.set_state(user, StateChange(state="available"))
    contacts = []
    for number in range(50):
        customer, _ = await omni.customers.resolve(
            [Identity(kind=IdentityKind.phone, value=f"1380013{number:04d}")]
        )
        contacts.append(
            await desktop.acd.add(
                NewContact(queue="after_sales", kind=ContactKind.call, customer_id=customer.id)
            )
        )

    await asyncio.gather(*(node.acd.route_waiting() for node, _ in nodes for _ in range(4)))

    offered = await desktop.store.contacts_with_status(ContactStatus.offered)
    assert len(offered) == 20
    assert all(len(contact.offered_to) == 1 for contact in offered)
    per_agent = collections.Counter(contact.offered_to[0] for contact in offered)
    assert set(per_agent.values()) == {1}
    agents = await desktop.store.all_agents()
    assert sorted(agent.offer for agent in agents if agent.offer) == sorted(contact.id for contact in offered)
    notified = [agent_id for node, _ in nodes for agent_id, _ in node.acd.notifier.offers]  # type: ignore[attr-defined]
    assert sorted(notified) == sorted(per_agent)
    assert len(await desktop.store.contacts_with_status(ContactStatus.waiting)) == 30


async def test_a_chat_agent_takes_several_chats_but_not_more_than_configured(
    desktop: Desktop, omni: Omnichannel
) -> None:
    await desktop.store.create_queue(QueueConfig(id="web", skills={"chat": 1}))
    user = User(id="chatter", username="chatter", display_name="", role="agent", created_at=utcnow())
    await desktop.agents.ensure(user)
    await desktop.agents.set_skills(user.id, AgentSkills(skills={"chat": 1}, max_chats=2))
    await desktop.agents.set_state(user, StateChange(state="available"))
    ids = []
    for number in range(3):
        customer, _ = await omni.customers.resolve(
            [Identity(kind=IdentityKind.phone, value=f"1390013{number:04d}")]
        )
        ids.append(
            (
                await desktop.acd.add(NewContact(queue="web", kind=ContactKind.chat, customer_id=customer.id))
            ).id
        )
        await desktop.acd.route_waiting()
        contact = await desktop.store.contact(ids[-1])
        if contact.status is ContactStatus.offered:
            await desktop.acd.accept(user, contact.id)
    agent = await desktop.store.agent(user.id)
    assert agent.state.value == "in_chat" and len(agent.chats) == 2
    assert (await desktop.store.contact(ids[2])).status is ContactStatus.waiting
    position = await desktop.acd.position(ids[2])
    assert position.position == 1 and position.expected_wait_seconds and position.expected_wait_seconds > 0
    await desktop.acd.end(user, ids[0])
    await desktop.acd.route_waiting()
    assert (await desktop.store.contact(ids[2])).status is ContactStatus.offered


async def test_a_contact_overflows_to_voicemail_after_the_queue_max_wait(
    desktop: Desktop, omni: Omnichannel
) -> None:
    await desktop.store.create_queue(
        QueueConfig(
            id="busy", skills={"x": 1}, max_wait_seconds=0.2, overflow={"to": "queue", "queue": "backup"}
        )
    )
    await desktop.store.create_queue(
        QueueConfig(id="backup", max_wait_seconds=0.2, overflow={"to": "voicemail"})
    )
    customer, _ = await omni.customers.resolve([Identity(kind=IdentityKind.phone, value="13700137000")])
    contact = await desktop.acd.add(NewContact(queue="busy", kind=ContactKind.call, customer_id=customer.id))
    await asyncio.sleep(0.3)
    await desktop.acd.overflow()
    assert (await desktop.store.contact(contact.id)).queue == "backup"
    await asyncio.sleep(0.3)
    await desktop.acd.overflow()
    moved = await desktop.store.contact(contact.id)
    assert (moved.status, moved.overflow) == (ContactStatus.overflowed, "voicemail")


async def test_the_ivr_hears_unavailable_when_nobody_is_logged_in_and_can_leave_a_callback(
    desktop: Desktop,
) -> None:
    await desktop.store.create_queue(QueueConfig(id="after_sales", skills={"after_sales": 1}))
    request = queue_request("call-nobody", caller="13600136000")
    await desktop.gateway.enqueue(request)
    await desktop.gateway.enqueue(request)  # a retried enqueue does not queue the call twice
    assert len(await desktop.store.contacts_with_status(ContactStatus.waiting)) == 1
    assert await desktop.gateway.wait("call-nobody", 0.5) == "unavailable"
    contact = await desktop.store.contact_by_ref("call-nobody")
    assert contact is not None and (await desktop.acd.position(contact.id)).position == 1
    await desktop.gateway.request_callback(
        CallbackRequest(
            call_id="call-nobody", number="+8613600136000", queue="after_sales", context=request.context
        )
    )
    marked = await desktop.store.contact(contact.id)
    assert (marked.status, marked.overflow) == (ContactStatus.overflowed, "callback")


async def test_a_call_queued_again_after_leaving_a_queue_waits_in_the_new_one(desktop: Desktop) -> None:
    # A flow whose queue overflows to another queue: the call leaves the first (withdrawn) and must wait
    # in the second, not be handed its old, withdrawn contact back (which the IVR would hear as a timeout).
    await desktop.store.create_queue(QueueConfig(id="after_sales", skills={"after_sales": 1}))
    await desktop.store.create_queue(QueueConfig(id="general", skills={"general": 1}))
    await desktop.gateway.enqueue(queue_request("call-moved", queue="after_sales"))
    await desktop.gateway.withdraw("call-moved", "timeout")
    again = queue_request("call-moved", queue="general")
    await desktop.gateway.enqueue(again)
    await desktop.gateway.enqueue(again)  # a retry still queues it once
    waiting = await desktop.store.contacts_with_status(ContactStatus.waiting)
    assert [(contact.queue, contact.external_ref) for contact in waiting] == [("general", "call-moved")]
    latest = await desktop.store.contact_by_ref("call-moved")
    assert latest is not None and latest.queue == "general"
    await desktop.gateway.withdraw("call-moved", "hung_up")
    assert (await desktop.store.contact(latest.id)).status == ContactStatus.withdrawn
