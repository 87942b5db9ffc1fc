"""Malformed socket commands get an error in their ack and the ``error`` event, and the connection keeps
working: missing data, wrong types, unknown contacts, unknown events, extra arguments — from a real
python-socketio client."""

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


async def test_every_bad_agent_event_gets_an_error_event_with_or_without_an_ack(
    server: TestServer, agent: ApiClient, connect: Connect
) -> None:
    desk = await connect(server, agent.token)
    namespace = desk.namespace

    reply = await desk.call("dance", {"steps": 3})
    assert reply["error"]["code"] == "unknown_event", reply
    error = await desk.next("error")
    assert (error["code"], error["event"]) == ("unknown_event", "dance") and "accept" in error["message"]

    await desk.client.emit("accept", "not-an-object", namespace=namespace)  # no ack asked
    error = await desk.next("error")
    assert (error["code"], error["event"]) == ("validation_failed", "accept") and error["message"]

    reply = await desk.client.call("accept", ({"contact_id": "x"}, "extra"), namespace=namespace, timeout=5)
    assert reply["error"]["code"] == "too_many_arguments", reply
    assert (await desk.next("error"))["code"] == "too_many_arguments"

    await desk.client.emit("connect", ({}, {"token": agent.token}), namespace=namespace)
    assert (await desk.next("error"))["code"] == "unknown_event"
    await desk.client.emit("offer.withdrawn", None, namespace=namespace)
    assert (await desk.next("error"))["code"] == "unknown_event"

    reply = await desk.call("decline", {"contact_id": "ffffffffffffffffffffffff"})
    assert reply["error"]["code"] == "offer_gone"
    assert (await desk.next("error"))["code"] == "offer_gone"

    assert (await desk.call("state", {"state": "available"}))["ok"]["presence"] == "available"
    assert desk.events["error"].empty()  # a good command raises no error


async def test_a_bad_supervisor_event_gets_an_error_event(
    server: TestServer, supervisor: ApiClient, connect: Connect
) -> None:
    board = await connect(server, supervisor.token, "/supervisor")
    await board.client.emit("barge_everyone", None, namespace=board.namespace)
    error = await board.next("error")
    assert error["code"] == "unknown_event" and "force_state" in error["message"]
    await board.client.emit("force_state", {"user_id": "nobody"}, namespace=board.namespace)
    assert (await board.next("error"))["code"] == "validation_failed"
    assert "ok" in await board.call("wallboard")
