"""Chats on the desktop and agents whose socket drops: replies land on the conversation's timeline (and the
bus) once, the customer's messages reach the serving agent, and a reconnecting desktop resumes its offer,
its state and its contacts — or the ACD moves on when it does not come back in time."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestServer

from agent_desktop import ContactKind, Desktop, NewContact
from agent_desktop.http import DESKTOP
from core.app import BUS, withdraw_ended_calls
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, NewEvent
from telephony.http import TELEPHONY_STORE
from tests.conftest import ApiClient
from tests.desktop.conftest import Connect, caller_with_history, make_agent, make_queue, queue_request


async def chat_waiting(server: TestServer, visitor: str = "visitor-1") -> tuple[str, str, str]:
    """A web visitor handed off by the bot; returns (customer id, conversation id, contact id)."""
    desktop: Desktop = server.app[DESKTOP]
    omni = desktop.acd.omni
    customer, _ = await omni.customers.resolve([Identity(kind=IdentityKind.web_visitor, value=visitor)])
    conversation, _ = await omni.conversations.open(
        customer.id, NewConversation(channel=Channel.webchat, external_ref=f"chat-{visitor}")
    )
    await omni.timeline.append(
        customer.id,
        NewEvent(
            kind="message.in",
            channel=Channel.webchat,
            conversation_id=conversation.id,
            body={"text": "我想退货"},
        ),
        Actor(type="customer"),
    )
    contact = await desktop.acd.add(
        NewContact(
            queue="after_sales",
            kind=ContactKind.chat,
            customer_id=customer.id,
            conversation_id=conversation.id,
            external_ref=f"chat-{visitor}",
        )
    )
    return customer.id, conversation.id, contact.id


async def test_agent_replies_in_a_chat_and_sees_the_visitor_answer(
    server: TestServer, http: ApiClient, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    agent, token = await make_agent(server, "chat_agent", {"after_sales": 1})
    _, other_token = await make_agent(server, "other_agent", {"after_sales": 1}, available=False)
    socket = await connect(server, token)
    published: list[dict[str, Any]] = []
    heard = asyncio.Event()

    async def on_sent(event: dict[str, Any]) -> None:
        published.append(event)
        heard.set()

    unsubscribe = server.app[BUS].subscribe("timeline.message.sent", on_sent)
    try:
        customer_id, conversation_id, contact_id = await chat_waiting(server)
        pop = await socket.next("offer")
        assert pop["contact"]["kind"] == "chat"
        assert (await socket.call("accept", {"contact_id": contact_id}))["ok"]["status"] == "connected"

        api = ApiClient(http.session, http.base, token)
        path = f"/api/desktop/contacts/{contact_id}/messages"
        reply = {"text": "您好，请提供订单号", "client_id": "m1"}
        status, first, _ = await api.request("POST", path, json=reply)
        assert status == 201 and first["created"] is True
        event = first["event"]
        assert (event["kind"], event["channel"], event["conversation_id"]) == (
            "message.sent",
            "webchat",
            conversation_id,
        )
        assert event["actor"]["type"] == "agent" and event["actor"]["id"] == agent.id
        assert event["body"] == {"text": "您好，请提供订单号", "contact_id": contact_id}
        status, again, _ = await api.request("POST", path, json=reply)
        assert status == 200 and again["event"]["id"] == event["id"]  # a retry is stored once
        echoed = await socket.next("chat.message")
        assert echoed["id"] == event["id"] and echoed["contact_id"] == contact_id

        await asyncio.wait_for(heard.wait(), 3)
        assert [e["id"] for e in published] == [event["id"]]

        await desktop.acd.omni.timeline.append(
            customer_id,
            NewEvent(
                kind="message.in",
                channel=Channel.webchat,
                conversation_id=conversation_id,
                body={"text": "订单号 12345"},
            ),
            Actor(type="customer"),
        )
        incoming = await socket.next("chat.message")
        assert incoming["body"]["text"] == "订单号 12345" and incoming["contact_id"] == contact_id
        assert socket.events["chat.message"].empty()  # one delivery each, not one per bus listener

        other = ApiClient(http.session, http.base, other_token)
        assert (await other.request("POST", path, json={"text": "hi"}))[1]["code"] == "not_your_contact"
        assert (await api.request("POST", path, json={"text": ""}))[1]["code"] == "validation_failed"
        assert (await api.request("POST", path, json={"text": "x", "client_id": "bad id!"}))[0] == 400
        status, contacts, _ = await api.request("GET", "/api/desktop/me/contacts")
        assert status == 200 and [c["id"] for c in contacts] == [contact_id]
        assert (await api.request("POST", f"/api/desktop/contacts/{contact_id}/end"))[0] == 200
        assert (await api.request("POST", path, json={"text": "late"}))[1]["code"] == "not_connected"
    finally:
        unsubscribe()


async def test_agent_whose_socket_drops_mid_offer_gets_the_offer_again_and_resumes(
    server: TestServer, http: ApiClient, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, offer_timeout_seconds=20)
    agent, token = await make_agent(server, "flaky", {"after_sales": 1})
    first = await connect(server, token)
    customer_id, call_id = await caller_with_history(server)
    await desktop.gateway.enqueue(queue_request(call_id))
    offered = await first.next("offer")
    await first.client.disconnect()

    second = await connect(server, token)
    resumed = (await second.call("resume"))["ok"]
    assert resumed["offer"]["contact"]["id"] == offered["contact"]["id"]
    assert resumed["offer"]["customer"]["id"] == customer_id
    assert [e["body"]["text"] for e in resumed["offer"]["transcript"]] == ["我要退货", "订单号 12345"]
    assert resumed["agent"]["offer"] == offered["contact"]["id"]
    accepted = await second.call("accept", {"contact_id": offered["contact"]["id"]})
    assert accepted["ok"]["agent_id"] == agent.id
    await second.client.disconnect()

    third = await connect(server, token)
    resumed = (await third.call("resume"))["ok"]
    assert resumed["offer"] is None
    assert resumed["agent"]["state"] == "on_call"
    assert [c["id"] for c in resumed["contacts"]] == [offered["contact"]["id"]]
    contact = await desktop.store.contact(offered["contact"]["id"])
    assert contact.status.value == "connected"  # the call kept going while the desktop was away

    assert contact.conversation_id is not None
    await desktop.acd.omni.timeline.append(
        customer_id,
        NewEvent(
            kind="transcript.final",
            channel=Channel.voice,
            conversation_id=contact.conversation_id,
            body={"text": "快递盒子破了"},
        ),
        Actor(type="customer"),
    )
    said = await third.next("transcript")  # the live transcript goes on on the resumed desktop
    assert said["body"]["text"] == "快递盒子破了" and said["contact_id"] == contact.id


async def test_an_offer_whose_agent_does_not_come_back_moves_on_after_the_timeout(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, offer_timeout_seconds=0.6)
    gone, gone_token = await make_agent(server, "gone", {"after_sales": 1})
    await asyncio.sleep(0.05)
    _, backup_token = await make_agent(server, "backup", {"after_sales": 1})
    gone_socket = await connect(server, gone_token)
    backup_socket = await connect(server, backup_token)
    _, call_id = await caller_with_history(server)
    await desktop.gateway.enqueue(queue_request(call_id))
    offered = await gone_socket.next("offer")
    await gone_socket.client.disconnect()

    moved = await backup_socket.next("offer", within=4)
    assert moved["contact"]["id"] == offered["contact"]["id"]
    back = await connect(server, gone_token)
    resumed = (await back.call("resume"))["ok"]
    assert resumed["offer"] is None and resumed["contacts"] == []
    assert (resumed["agent"]["state"], resumed["agent"]["reason"]) == ("break", "missed_offer")
    assert (await back.call("accept", {"contact_id": offered["contact"]["id"]}))["error"][
        "code"
    ] == "offer_gone"
    assert gone.id not in (await desktop.store.contact(offered["contact"]["id"])).offered_to


async def test_a_queued_call_that_ended_while_no_web_process_listened_is_withdrawn_at_start(
    server: TestServer,
) -> None:
    """Its telephony node died and a restarted node swept it while every web process was down: the
    ``call.ended`` event went by unheard, so the web start reconciles (no agent is offered a dead call)."""
    desktop: Desktop = server.app[DESKTOP]
    store = server.app[TELEPHONY_STORE]
    await make_queue(server)
    customer_id, _ = await caller_with_history(server)
    for call_id, status in (("call-lost", "ended"), ("call-live", "active")):
        await store.calls.insert_one({"_id": call_id, "status": status, "cause": "node_lost"})
        await desktop.store.add_contact(
            NewContact(
                queue="after_sales", kind=ContactKind.call, customer_id=customer_id, external_ref=call_id
            ),
            {"after_sales": 1},
        )

    assert await withdraw_ended_calls(store, desktop) == 1

    lost, live = (
        await desktop.store.contact_by_ref("call-lost"),
        await desktop.store.contact_by_ref("call-live"),
    )
    assert lost is not None and lost.status.value == "withdrawn"
    assert live is not None and live.status.value == "waiting"
    assert await withdraw_ended_calls(store, desktop) == 0  # nothing twice
