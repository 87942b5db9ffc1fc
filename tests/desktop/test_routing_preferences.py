"""Preferred skills (the caller's language, the chat's channel, VIP…): the best agent first, a short wait for
them while they are busy, and never a contact stranded because nobody at work has them. Real Socket.IO
clients on the real app."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer

from agent_desktop import Desktop
from agent_desktop.http import DESKTOP
from ivr_flows import QueueRequest
from omnichannel import Identity, IdentityKind
from tests.desktop.conftest import Connect, caller_with_history, make_agent, make_queue, queue_request


def english_call(call_id: str) -> QueueRequest:
    """A call whose caller chose English in the IVR."""
    request = queue_request(call_id)
    return request.model_copy(update={"context": request.context.model_copy(update={"language": "en"})})


async def test_a_call_goes_to_an_agent_who_speaks_the_callers_language_before_a_longer_idle_one(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    _, idle_token = await make_agent(server, "idle_longest", {"after_sales": 3, "lang_zh": 3})
    await asyncio.sleep(0.05)
    _, english_token = await make_agent(server, "speaks_english", {"after_sales": 1, "lang_en": 2})
    idle_socket = await connect(server, idle_token)
    english_socket = await connect(server, english_token)
    customer_id, call_id = await caller_with_history(server)

    await desktop.gateway.enqueue(english_call(call_id))

    pop = await english_socket.next("offer")
    assert pop["customer"]["id"] == customer_id
    assert pop["contact"]["preferred_skills"] == {"lang_en": 1}
    assert idle_socket.events["offer"].empty()


async def test_a_call_waits_for_a_busy_agent_with_its_language_then_goes_to_anyone(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, preference_seconds=2.0)
    english, _ = await make_agent(server, "busy_english", {"after_sales": 1, "lang_en": 1})
    await desktop.store.agents.update_one({"_id": english.id}, {"$set": {"presence": "wrap_up"}})
    _, other_token = await make_agent(server, "chinese_only", {"after_sales": 1, "lang_zh": 1})
    other_socket = await connect(server, other_token)
    _, call_id = await caller_with_history(server)

    await desktop.gateway.enqueue(english_call(call_id))

    # within the preference window the free agent without English is not offered the call…
    await asyncio.sleep(1.2)
    assert other_socket.events["offer"].empty()
    contact = await desktop.store.contact_by_ref(call_id)
    assert contact is not None and contact.status.value == "waiting"
    # …after it, they are: the caller is not kept waiting for ever
    pop = await other_socket.next("offer", within=5.0)
    assert pop["contact"]["external_ref"] == call_id


async def test_nobody_at_work_with_the_preferred_skills_means_no_wait(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, preference_seconds=60.0)
    on_break, _ = await make_agent(server, "english_on_break", {"after_sales": 1, "lang_en": 1})
    await desktop.store.agents.update_one({"_id": on_break.id}, {"$set": {"presence": "break"}})
    _, other_token = await make_agent(server, "chinese_only", {"after_sales": 1})
    other_socket = await connect(server, other_token)
    _, call_id = await caller_with_history(server)

    await desktop.gateway.enqueue(english_call(call_id))

    # well inside the 60 s preference window: nobody at work speaks English, so there is nothing to wait for
    pop = await other_socket.next("offer", within=10.0)
    assert pop["contact"]["external_ref"] == call_id


async def test_a_contacts_own_required_skills_are_kept(server: TestServer, connect: Connect) -> None:
    """``NewContact.skills`` raise the queue's: an agent without them is never offered the contact."""
    from agent_desktop import ContactKind, NewContact

    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    _, plain_token = await make_agent(server, "plain", {"after_sales": 5})
    await asyncio.sleep(0.05)
    _, vip_token = await make_agent(server, "vip_desk", {"after_sales": 1, "vip": 2})
    plain_socket = await connect(server, plain_token)
    vip_socket = await connect(server, vip_token)
    customer_id, _ = await caller_with_history(server)

    contact = await desktop.acd.add(
        NewContact(
            queue="after_sales",
            kind=ContactKind.call,
            customer_id=customer_id,
            external_ref="vip-call",
            skills={"vip": 2},
        )
    )

    assert contact.skills == {"after_sales": 1, "vip": 2}
    assert (await vip_socket.next("offer"))["contact"]["id"] == contact.id
    assert plain_socket.events["offer"].empty()


async def test_a_call_queued_with_its_recorded_customer_pops_that_customer_and_prefers_vip_agents(
    server: TestServer, connect: Connect
) -> None:
    """The telephony worker hands the ACD the customer and conversation its call journal recorded as the
    call started: the offer pops that customer and conversation (not whatever the number would resolve to
    now), and a VIP customer prefers a VIP agent."""
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    _, plain_token = await make_agent(server, "plain", {"after_sales": 5, "lang_zh": 1})
    await asyncio.sleep(0.05)
    _, vip_token = await make_agent(server, "vip_desk", {"after_sales": 1, "lang_zh": 1, "vip": 1})
    plain_socket = await connect(server, plain_token)
    vip_socket = await connect(server, vip_token)
    customer_id, call_id = await caller_with_history(server)
    conversation = (await desktop.acd.omni.conversations.of_customer(customer_id))[0]
    request = queue_request(call_id).model_copy(
        update={
            "caller": "+8613900000000",  # another number: the recorded customer wins
            "customer_id": customer_id,
            "conversation_id": conversation.id,
            "vip": True,
        }
    )

    await desktop.gateway.enqueue(request)

    pop = await vip_socket.next("offer")
    assert pop["customer"]["id"] == customer_id
    assert pop["contact"]["conversation_id"] == conversation.id
    assert pop["contact"]["preferred_skills"] == {"lang_zh": 1, "vip": 1}
    assert plain_socket.events["offer"].empty()
    assert (
        await desktop.acd.omni.customers.find_by_identity(
            Identity(kind=IdentityKind.phone, value="+8613900000000")
        )
        is None
    )
