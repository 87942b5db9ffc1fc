"""An open socket does not outlive its sign-in: a logged-out agent, or a supervisor demoted to agent, is
disconnected with an ``error`` event saying why — at once when the change is announced on the bus (on every
web node; the REST routes announce, see test_socket_logout_http.py), and otherwise at their next command, and
within seconds for supervisors in any case. Real python-socketio clients on the real app."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp.test_utils import TestServer

from core.app import BUS
from core.auth import NewUser, Role, UserPatch
from core.db import utcnow
from core.http import USERS
from tests.conftest import ApiClient
from tests.desktop.conftest import AgentSocket, Connect, make_agent


async def disconnected(socket: AgentSocket, within: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if socket.namespace not in socket.client.namespaces:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_token_revoked_unannounced_ends_the_agents_socket_at_its_next_command(
    server: TestServer, connect: Connect
) -> None:
    _, token = await make_agent(server, "leaves_a_tab_open", {"after_sales": 1})
    desk = await connect(server, token)
    assert "ok" in await desk.call("state", {"state": "available"})

    await server.app[USERS].logout(token)  # revoked, and nobody told the sockets

    reply = await desk.call("state", {"state": "break", "reason": "lunch"})
    assert reply["error"]["code"] == "invalid_token"
    assert (await desk.next("error"))["code"] == "invalid_token"
    assert await disconnected(desk, within=2)


async def test_a_supervisor_demoted_unannounced_loses_the_supervisor_socket_within_seconds(
    server: TestServer, connect: Connect
) -> None:
    users = server.app[USERS]
    demoted = await users.create(
        NewUser(username="sup_demoted", password="sup-password", role=Role.supervisor)
    )
    token, _ = await users.login("sup_demoted", "sup-password")
    board = await connect(server, token, "/supervisor")
    assert "ok" in await board.call("wallboard")

    await users.update(demoted.id, UserPatch(role=Role.agent))  # nobody told the sockets

    # no command from the wallboard either: the node checks its supervisors' sockets by itself
    assert await disconnected(board, within=5)
    assert (await board.next("error"))["code"] == "forbidden_role"
    desk = await connect(server, token)  # still an agent with a valid token
    assert "ok" in await desk.call("resume")


async def test_a_logout_announced_on_the_bus_disconnects_the_agent_on_every_node_at_once(
    server: TestServer, second_node: TestServer, http: ApiClient, connect: Connect
) -> None:
    agent, token = await make_agent(server, "two_tabs", {"after_sales": 1})
    colleague, colleague_token = await make_agent(server, "colleague", {"after_sales": 1})
    on_first = await connect(server, token)
    on_second = await connect(second_node, token)
    colleague_desk = await connect(second_node, colleague_token)

    await server.app[USERS].logout(token)
    for user_id in (agent.id, colleague.id):  # what the logout announces (the colleague's is harmless)
        await server.app[BUS].publish(
            "auth.logged_out", {"id": uuid.uuid4().hex, "ts": utcnow(), "user_id": user_id}
        )

    assert await disconnected(on_first, within=2)
    assert await disconnected(on_second, within=2)
    assert (await on_second.next("error"))["code"] == "invalid_token"
    assert "ok" in await colleague_desk.call("resume")
