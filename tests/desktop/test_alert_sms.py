"""Wallboard alerts are sent, not only shown: each new alert episode reaches the supervisors' phones by SMS
once (zh and en), however many web nodes evaluate the rules. Real app on two nodes, the SMS dev sink."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from agent_desktop import ContactKind, Desktop, NewContact
from agent_desktop.http import DESKTOP
from agent_desktop.models import WallboardConfigPatch
from core.auth import NewUser, Role
from core.http import USERS
from core.settings import Settings
from omnichannel import Identity, IdentityKind
from omnichannel.channels.http import CHANNELS
from tests.desktop.conftest import make_queue
from tickets.http import TICKETS
from tickets.models import StaffInput

SUPERVISOR_PHONE = "+8613800138111"
AGENT_PHONE = "+8613800138222"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sms_delivery": "inline"})  # the web process delivers to the sink


async def staff(server: TestServer, username: str, role: Role, **profile: object) -> None:
    user = await server.app[USERS].create(NewUser(username=username, password=f"{username}-pw", role=role))
    await server.app[TICKETS].put_staff(user, StaffInput.model_validate(profile))


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, f"waited {within} s for {what}"
        await asyncio.sleep(0.1)


async def test_each_alert_episode_is_texted_once_to_each_supervisor_with_a_phone(
    server: TestServer, second_node: TestServer
) -> None:
    desktop: Desktop = server.app[DESKTOP]
    sms = server.app[CHANNELS].sms
    await make_queue(server)
    # alert on a 1 s wait; no service-level alerts (the abandoned chat below would raise one)
    await desktop.wallboard.update_config(WallboardConfigPatch(max_wait_seconds=1.0, sl_target=0.0))
    await staff(server, "night_supervisor", Role.supervisor, phone=SUPERVISOR_PHONE, supervisor_of=["*"])
    await staff(server, "no_phone_supervisor", Role.supervisor, supervisor_of=["*"])
    await staff(server, "agent_with_phone", Role.agent, phone=AGENT_PHONE)
    customer, _ = await desktop.acd.omni.customers.resolve(
        [Identity(kind=IdentityKind.phone, value="13900000001")]
    )

    async def wait_in_queue(ref: str) -> str:
        contact = await desktop.acd.add(
            NewContact(queue="after_sales", kind=ContactKind.chat, customer_id=customer.id, external_ref=ref)
        )
        return contact.id

    async def texts() -> list[str]:
        return [entry.text for entry in await sms.sink_entries(to=SUPERVISOR_PHONE)]

    first = await wait_in_queue("chat-1")  # nobody staffs the queue: it waits past the 1 s alert threshold
    await eventually(lambda: _count(texts, 1), "the first alert's SMS")
    [text] = await texts()
    assert (
        "【汇流告警】队列 after_sales 最长等待" in text
        and "Huiliu alert: queue after_sales longest wait" in text
    )
    await asyncio.sleep(4)  # both nodes evaluate the rules every 2 s meanwhile: the alert holds, no new SMS
    assert len(await texts()) == 1

    await desktop.acd.withdraw(first, "abandoned")
    await eventually(lambda: _none_active(desktop), "the alert to clear")
    await wait_in_queue("chat-2")  # a new episode
    await eventually(lambda: _count(texts, 2), "the second alert's SMS")
    await asyncio.sleep(3)
    assert len(await texts()) == 2
    assert await sms.sink_entries(to=AGENT_PHONE) == []


async def _count(texts: Callable[[], Awaitable[list[str]]], expected: int) -> bool:
    return len(await texts()) >= expected


async def _none_active(desktop: Desktop) -> bool:
    return not await desktop.wallboard.active_alerts()
