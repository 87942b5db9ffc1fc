"""Signing out on the web, or an admin changing a user, reaches that user's open sockets at once: the REST
handlers announce it on the bus (``auth.logged_out``, ``user.updated``) and every node checks that user's
sockets, without waiting for their next command or the periodic supervisor check."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from core.auth import NewUser, Role
from core.http import USERS
from tests.conftest import ApiClient
from tests.desktop.conftest import Connect, make_agent
from tests.desktop.test_socket_sessions import disconnected


async def test_signing_out_on_the_web_closes_the_agents_desktop_socket_at_once(
    server: TestServer, http: ApiClient, connect: Connect
) -> None:
    _, token = await make_agent(server, "signs_out", {"after_sales": 1})
    _, other_token = await make_agent(server, "stays", {"after_sales": 1})
    desk = await connect(server, token)
    other = await connect(server, other_token)

    status, _, _ = await ApiClient(http.session, http.base, token).request("POST", "/api/auth/logout")
    assert status == 204

    assert await disconnected(desk, within=1.0)  # no command sent: the announcement did it
    assert (await desk.next("error"))["code"] == "invalid_token"
    assert "ok" in await other.call("resume")


async def test_a_disabled_agent_loses_the_desktop_socket_at_once(
    server: TestServer, admin: ApiClient, connect: Connect
) -> None:
    users = server.app[USERS]
    leaver = await users.create(NewUser(username="leaver", password="leaver-password", role=Role.agent))
    token, _ = await users.login("leaver", "leaver-password")
    desk = await connect(server, token)

    status, _, _ = await admin.request("PATCH", f"/api/users/{leaver.id}", json={"disabled": True})
    assert status == 200
    assert await disconnected(desk, within=1.0)
