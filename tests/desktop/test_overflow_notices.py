"""A chat that overflows is told so on its channel, and a callback left by an overflow waits where the
queue's agents can see and take it. Real app, real bus."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestServer

from agent_desktop import ContactKind, Desktop, NewContact
from agent_desktop.http import DESKTOP
from core.app import BUS
from omnichannel import Channel, Identity, IdentityKind, NewConversation
from tests.conftest import ApiClient
from tests.desktop.conftest import make_agent, make_queue


async def web_chat_waiting(server: TestServer, visitor: str) -> tuple[str, str]:
    """A web visitor handed to the queue; returns (conversation id, contact id)."""
    desktop: Desktop = server.app[DESKTOP]
    omni = desktop.acd.omni
    customer, _ = await omni.customers.resolve([Identity(kind=IdentityKind.web_visitor, value=visitor)])
    conversation, _ = await omni.conversations.open(
        customer.id, NewConversation(channel=Channel.webchat, external_ref=f"chat-{visitor}")
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
    return conversation.id, contact.id


async def overflowed(desktop: Desktop, contact_id: str, within: float = 8.0) -> None:
    for _ in range(int(within / 0.1)):
        if (await desktop.store.contact(contact_id)).status.value == "overflowed":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"contact {contact_id} did not overflow within {within} s")


async def test_a_chat_overflowing_to_a_callback_is_told_so_on_its_channel_once(server: TestServer) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, max_wait_seconds=1.0, overflow={"to": "callback"})
    await make_agent(server, "away", {"after_sales": 1}, available=False)
    sent: list[dict[str, Any]] = []

    async def on_sent(event: dict[str, Any]) -> None:
        sent.append(event)

    unsubscribe = server.app[BUS].subscribe("timeline.message.sent", on_sent)
    try:
        conversation_id, contact_id = await web_chat_waiting(server, "visitor-overflow")
        await overflowed(desktop, contact_id)
        await asyncio.sleep(1.0)  # more routing passes: still one notice
    finally:
        unsubscribe()

    contact = await desktop.store.contact(contact_id)
    page = await desktop.acd.omni.timeline.page(contact.customer_id, kinds=["message.sent"])
    [notice] = page.events
    assert contact.overflow_notice == notice.id
    assert (notice.channel, notice.conversation_id, notice.actor.type) == (
        "webchat",
        conversation_id,
        "system",
    )
    assert notice.body["notice"] == "overflow.callback"
    assert "稍后会联系您" in notice.body["text"] and "get back to you" in notice.body["text"]
    assert [event["id"] for event in sent] == [notice.id]  # announced for the web chat to deliver


async def test_agents_of_the_queue_see_a_pending_callback_and_one_of_them_takes_it(
    server: TestServer, http: ApiClient, supervisor: ApiClient
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, max_wait_seconds=1.0, overflow={"to": "callback"})
    _, first_token = await make_agent(server, "calls_back", {"after_sales": 1}, available=False)
    _, second_token = await make_agent(server, "also_after_sales", {"after_sales": 2}, available=False)
    _, outsider_token = await make_agent(server, "billing_only", {"billing": 1}, available=False)
    first, second, outsider = (
        ApiClient(http.session, http.base, token) for token in (first_token, second_token, outsider_token)
    )
    _, contact_id = await web_chat_waiting(server, "visitor-callback")
    await overflowed(desktop, contact_id)

    for reader in (first, second, supervisor):
        status, pending, _ = await reader.request("GET", "/api/desktop/callbacks")
        assert status == 200 and [contact["id"] for contact in pending] == [contact_id]
    status, pending, _ = await outsider.request("GET", "/api/desktop/callbacks")
    assert status == 200 and pending == []

    take = f"/api/desktop/callbacks/{contact_id}/take"
    status, problem, _ = await outsider.request("POST", take)
    assert status == 403 and problem["code"] == "not_your_queue"
    status, taken, _ = await first.request("POST", take)
    assert status == 200 and taken["callback_by"] is not None
    status, problem, _ = await second.request("POST", take)
    assert status == 409 and problem["code"] == "callback_taken"
    status, pending, _ = await second.request("GET", "/api/desktop/callbacks")
    assert status == 200 and pending == []
