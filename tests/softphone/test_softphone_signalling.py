"""Who may attach a softphone to which call, through real Socket.IO clients against the real app: refusals
come back as a precise error in the ack, before any media is set up, and the socket stays usable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import ApiClient

# a syntactically complete audio offer, as a browser would send it (never used for media here)
OFFER_SDP = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "c=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n"
)

Open = Callable[[ApiClient, str], Awaitable[socketio.AsyncClient]]


@pytest.fixture
async def open_socket(server: TestServer) -> AsyncIterator[Open]:
    clients: list[socketio.AsyncClient] = []

    async def connect(user: ApiClient, namespace: str) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        clients.append(client)
        await client.connect(
            str(server.make_url("/")),
            namespaces=[namespace],
            auth={"token": user.token},
            transports=["websocket"],
            wait_timeout=5,
        )
        return client

    yield connect
    for client in clients:
        await client.disconnect()


async def ask(client: socketio.AsyncClient, namespace: str, event: str, data: Any) -> dict[str, Any]:
    reply: dict[str, Any] = await client.call(event, data, namespace=namespace, timeout=10)
    return reply


async def test_an_agent_cannot_attach_to_a_call_that_is_not_connected_to_them(
    open_socket: Open, agent: ApiClient
) -> None:
    socket = await open_socket(agent, "/agent")
    offer = {"call_id": "someone-elses-call", "sdp": OFFER_SDP, "type": "offer"}
    reply = await ask(socket, "/agent", "softphone_offer", offer)
    assert reply["error"]["code"] == "not_your_call"
    assert "accept its offer first" in reply["error"]["detail"]
    # the connection is still good for the next command
    assert (await ask(socket, "/agent", "softphone_hangup", {"call_id": "someone-elses-call"})) == {
        "ok": {"call_id": "someone-elses-call", "active": False, "mode": None}
    }


async def test_an_agent_cannot_listen_whisper_or_barge(open_socket: Open, agent: ApiClient) -> None:
    socket = await open_socket(agent, "/agent")
    offer = {"call_id": "a-call", "sdp": OFFER_SDP, "type": "offer", "mode": "barge"}
    reply = await ask(socket, "/agent", "softphone_offer", offer)
    assert reply["error"]["code"] == "forbidden_role"
    # and the supervisors' namespace refuses agents outright
    with pytest.raises(socketio.exceptions.ConnectionError):
        await open_socket(agent, "/supervisor")


async def test_malformed_offers_get_a_validation_error(open_socket: Open, agent: ApiClient) -> None:
    socket = await open_socket(agent, "/agent")
    for bad in (
        None,
        "sdp",
        {"call_id": "x", "type": "offer"},
        {"call_id": "x", "sdp": OFFER_SDP, "type": "answer"},
    ):
        reply = await ask(socket, "/agent", "softphone_offer", bad)
        assert reply["error"]["code"] == "validation_failed", bad


async def test_a_supervisor_can_only_supervise_live_calls(open_socket: Open, supervisor: ApiClient) -> None:
    socket = await open_socket(supervisor, "/supervisor")
    offer = {"call_id": "no-such-call", "sdp": OFFER_SDP, "type": "offer", "mode": "listen"}
    reply = await ask(socket, "/supervisor", "softphone_offer", offer)
    assert reply["error"]["code"] == "call_not_live"
    change = await ask(socket, "/supervisor", "softphone_mode", {"call_id": "no-such-call", "mode": "barge"})
    assert change["error"]["code"] == "not_supervising"
    bad_mode = await ask(
        socket, "/supervisor", "softphone_mode", {"call_id": "no-such-call", "mode": "shout"}
    )
    assert bad_mode["error"]["code"] == "validation_failed"


async def test_agents_control_only_their_own_calls_over_rest(agent: ApiClient, supervisor: ApiClient) -> None:
    for action, body in (("hangup", None), ("transfer", {"target": "1000"}), ("hold", {"on": True})):
        status, problem, _ = await agent.request("POST", f"/api/calls/not-mine/{action}", json=body)
        assert (status, problem["code"]) == (403, "not_your_call"), (action, problem)
    # nor list everyone's calls: that is the supervisors' live-call list
    status, problem, _ = await agent.request("GET", "/api/calls")
    assert (status, problem["code"]) == (403, "forbidden_role"), problem
    status, calls, _ = await supervisor.request("GET", "/api/calls")
    assert (status, calls) == (200, [])
    # a supervisor may act on any call; this one does not exist
    status, problem, _ = await supervisor.request("POST", "/api/calls/no-such-call/hold", json={"on": True})
    assert (status, problem["code"]) == (404, "call_not_found"), problem
    status, problem, _ = await supervisor.request(
        "POST", "/api/calls/no-such-call/hold", json={"on": "maybe"}
    )
    assert status == 400, problem
