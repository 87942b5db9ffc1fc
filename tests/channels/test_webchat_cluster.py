"""Web chat on two web nodes (one MongoDB, one Redis): what is said on one node reaches a visitor connected
to the other exactly once; the visitor's own controls (handoff button, typing) work wherever they connect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from core.app import build_app
from core.settings import Settings
from omnichannel import Actor
from omnichannel.channels.http import CHANNELS
from tests.channels.webchat_client import Visitor, new_visitor_token
from tests.conftest import ApiClient, wait_until_ready


@pytest.fixture
async def second_node(server: TestServer, settings: Settings) -> AsyncIterator[TestServer]:
    node = TestServer(build_app(settings.model_copy(update={"demo": True})), host="127.0.0.1")
    await node.start_server()
    await wait_until_ready(str(node.make_url("/")))
    yield node
    await node.close()


async def test_an_agent_message_written_on_node_a_reaches_a_visitor_on_node_b_once(
    server: TestServer, second_node: TestServer, http: ApiClient
) -> None:
    token = await new_visitor_token(http)
    visitor = Visitor(second_node, token)  # a token minted by node A works on node B: same secret
    await visitor.connect()
    try:
        webchat = server.app[CHANNELS].webchat
        assert webchat is not None
        conversation_id = await webchat.conversation_of_visitor(token.split(".")[0])
        assert conversation_id is not None
        sent = await webchat.send_to_visitor(
            conversation_id, "节点 A 的消息", Actor(type="agent", name="李娜")
        )
        received = await visitor.next_reply()
        assert received["id"] == sent.id and received["text"] == "节点 A 的消息"
        await asyncio.sleep(1.0)
        assert visitor.inbox.empty()
    finally:
        await visitor.disconnect()


async def test_the_handoff_button_and_typing_reach_the_desk(server: TestServer, http: ApiClient) -> None:
    webchat = server.app[CHANNELS].webchat
    assert webchat is not None and webchat.omni.timeline.bus is not None
    bus = webchat.omni.timeline.bus
    typing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def heard(event: dict[str, Any]) -> None:
        typing.put_nowait(event)

    unsubscribe = bus.subscribe("webchat.typing", heard)
    visitor = Visitor(server, await new_visitor_token(http), language="en")
    await visitor.connect()
    try:
        await visitor.call("typing", {"typing": True})
        async with asyncio.timeout(5):
            event = await typing.get()
        assert event["who"] == "visitor" and event["typing"] is True and event["conversation_id"]

        ack = await visitor.call("handoff")
        assert ack["ok"]["handed_off"] is True and ack["ok"]["contact_id"]
        said = await visitor.next_reply()
        assert "connecting you to an agent" in said["text"]
        again = await visitor.call("handoff")
        assert again["ok"]["contact_id"] == ack["ok"]["contact_id"]
    finally:
        unsubscribe()
        await visitor.disconnect()
