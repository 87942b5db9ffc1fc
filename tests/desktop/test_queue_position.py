"""What a waiting caller is told: their place in line and the expected wait, read through the ACD's queue
gateway (the IVR says it during the hold music). Real app, real MongoDB."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from agent_desktop import Desktop
from agent_desktop.http import DESKTOP
from tests.desktop.conftest import make_agent, make_queue, queue_request


async def test_waiting_callers_learn_their_place_and_it_moves_up_when_someone_ahead_leaves(
    server: TestServer,
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    await make_queue(server)
    busy, _ = await make_agent(server, "busy_agent", {"after_sales": 1})
    await desktop.store.agents.update_one({"_id": busy.id}, {"$set": {"presence": "wrap_up"}})
    await desktop.gateway.enqueue(queue_request("call-first", caller="13800138001"))
    await desktop.gateway.enqueue(queue_request("call-second", caller="13800138002"))

    first = await desktop.gateway.position("call-first")
    second = await desktop.gateway.position("call-second")
    assert first is not None and first.position == 1
    assert second is not None and second.position == 2
    # one agent staffed: the second caller waits about two handle times, the first about one
    assert second.expected_wait_seconds == 2 * first.expected_wait_seconds > 0

    await desktop.gateway.withdraw("call-first", "hung_up")
    assert await desktop.gateway.position("call-first") is None
    moved = await desktop.gateway.position("call-second")
    assert moved is not None and moved.position == 1
    assert await desktop.gateway.position("call-never-queued") is None
