"""What the agent's desktop hears without asking: the caller hanging up ends the call on the desktop and
starts wrap-up (``contact.ended``), and typing shows both ways in a web chat (``chat.typing`` to the agent,
``typing`` to the visitor). Real Socket.IO clients on the real app; the call's end comes the way the
telephony ledger writes it (``call.ended`` on the timeline, announced on the bus)."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestServer

from agent_desktop import Desktop
from agent_desktop.http import DESKTOP
from omnichannel import Actor, Channel, NewEvent
from tests.channels.webchat_client import Visitor, new_visitor_token
from tests.conftest import ApiClient
from tests.desktop.conftest import Connect, caller_with_history, make_agent, make_queue, queue_request


async def test_the_caller_hanging_up_ends_the_call_on_the_agents_desktop_and_starts_wrap_up(
    server: TestServer, connect: Connect
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server, wrap_up_seconds=30)
    _, token = await make_agent(server, "talking", {"after_sales": 1})
    desk = await connect(server, token)
    customer_id, call_id = await caller_with_history(server)
    await desktop.gateway.enqueue(queue_request(call_id))
    offer = await desk.next("offer")
    contact_id = offer["contact"]["id"]
    assert (await desk.call("accept", {"contact_id": contact_id}))["ok"]["status"] == "connected"

    await desktop.acd.omni.timeline.append(
        customer_id,
        NewEvent(
            kind="call.ended",
            channel=Channel.voice,
            conversation_id=offer["contact"]["conversation_id"],
            body={"call_id": call_id, "cause": "hung_up"},
        ),
        Actor(type="system", name="telephony"),
    )

    ended = await desk.next("contact.ended")
    assert ended == {"contact_id": contact_id, "reason": "hung_up", "call_id": call_id}
    contact = await desktop.store.contact(contact_id)
    assert contact.status.value == "ended"
    state = (await desk.call("resume"))["ok"]["agent"]
    assert state["presence"] == "wrap_up" and state["call"] is None
    # wrap-up codes still go on the ended call
    wrapped = await desk.call("wrap_up", {"contact_id": contact_id, "codes": ["resolved"]})
    assert wrapped["ok"]["wrap_up_codes"] == ["resolved"]
    assert (await desk.call("resume"))["ok"]["agent"]["presence"] == "available"


async def test_typing_shows_both_ways_in_a_web_chat_the_agent_has(
    server: TestServer, http: ApiClient, connect: Connect
) -> None:
    _, token = await make_agent(server, "chatter", {"webchat": 1, "lang_zh": 1})
    desk = await connect(server, token)
    visitor = Visitor(server, await new_visitor_token(http))
    await visitor.connect()
    try:
        await visitor.call("handoff")
        offer = await desk.next("offer", within=10)
        contact_id = offer["contact"]["id"]
        assert (await desk.call("accept", {"contact_id": contact_id}))["ok"]["status"] == "connected"

        await visitor.call("typing", {"typing": True})
        assert await desk.next("chat.typing") == {"contact_id": contact_id, "typing": True}

        assert (await desk.call("typing", {"contact_id": contact_id, "typing": True}))["ok"]["typing"] is True
        async with asyncio.timeout(5):
            shown = await visitor.typing.get()
        assert shown["typing"] is True and shown["name"] == "chatter"

        other = await desk.call("typing", {"contact_id": "0" * 24, "typing": True})
        assert other["error"]["code"] in ("contact_not_found", "not_your_contact")
    finally:
        await visitor.disconnect()
