"""Malformed socket commands get an error in their ack and the connection keeps working: missing data,
wrong types, unknown contacts — from a real python-socketio client."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from tests.conftest import ApiClient
from tests.desktop.conftest import Connect


async def test_agent_commands_without_or_with_bad_data_are_refused_in_the_ack(
    server: TestServer, agent: ApiClient, connect: Connect
) -> None:
    desk = await connect(server, agent.token)
    for event, data in (
        ("state", None),
        ("state", {"state": "dancing"}),
        ("accept", None),
        ("accept", "not-an-object"),
        ("decline", {"contact": 1}),
        ("wrap_up", {"contact_id": "x"}),
    ):
        reply = await desk.call(event, data)
        assert reply["error"]["code"] == "validation_failed", (event, data, reply)
    reply = await desk.call("accept", {"contact_id": "ffffffffffffffffffffffff"})
    assert reply["error"]["code"] == "contact_not_found", reply
    # still connected and answering
    reply = await desk.call("state", {"state": "available"})
    assert reply["ok"]["presence"] == "available"


async def test_supervisor_commands_with_bad_data_are_refused_in_the_ack(
    server: TestServer, supervisor: ApiClient, connect: Connect
) -> None:
    board = await connect(server, supervisor.token, "/supervisor")
    for data in (None, {"user_id": "nobody"}, {"state": "break"}):
        reply = await board.call("force_state", data)
        assert "error" in reply and reply["error"]["code"] in ("validation_failed", "agent_not_found"), reply
    assert "ok" in await board.call("wallboard")
