"""Fixtures for the desktop: real Socket.IO clients against the real app, agents with skills, a queue, and a
caller whose history spans channels."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestServer

from agent_desktop import AgentSkills, Desktop, QueueConfig, StateChange
from agent_desktop.http import DESKTOP
from core.app import build_app
from core.auth import NewUser, Role, User
from core.http import USERS
from core.settings import Settings
from ivr_flows import CallContext, QueueRequest, StepRecord
from omnichannel import Actor, Channel, Identity, IdentityKind, NewConversation, NewEvent
from tests.conftest import wait_until_ready


class AgentSocket:
    """One Socket.IO client with every event it received queued by name."""

    def __init__(self, client: socketio.AsyncClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.events: dict[str, asyncio.Queue[Any]] = {}
        for name in (
            "offer",
            "offer.withdrawn",
            "agent.state",
            "queue.contact",
            "chat.message",
            "transcript",
            "transcript.partial",
            "contact.ended",
            "call.consult",
            "chat.typing",
            "wallboard",
            "alert",
            "alert.cleared",
            "error",
        ):
            queue: asyncio.Queue[Any] = asyncio.Queue()
            self.events[name] = queue
            client.on(name, _put(queue), namespace=namespace)

    async def next(self, event: str, within: float = 5.0) -> Any:
        async with asyncio.timeout(within):
            return await self.events[event].get()

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.client.call(event, data, namespace=self.namespace, timeout=5)


def _put(queue: asyncio.Queue[Any]) -> Callable[[Any], Awaitable[None]]:
    async def handler(data: Any) -> None:
        queue.put_nowait(data)

    return handler


Connect = Callable[..., Awaitable[AgentSocket]]


@pytest.fixture
async def second_node(server: TestServer, settings: Settings) -> AsyncIterator[TestServer]:
    """Another web process on the same database and Redis as ``server``."""
    node = TestServer(build_app(settings.model_copy(update={"demo": True})), host="127.0.0.1")
    await node.start_server()
    await wait_until_ready(str(node.make_url("/")))
    yield node
    await node.close()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    clients: list[socketio.AsyncClient] = []

    async def open_socket(server: TestServer, token: str | None, namespace: str = "/agent") -> AgentSocket:
        client = socketio.AsyncClient(reconnection=False)
        clients.append(client)
        wrapped = AgentSocket(client, namespace)
        await client.connect(
            str(server.make_url("/")),
            namespaces=[namespace],
            auth={"token": token} if token is not None else None,
            transports=["websocket"],
            wait_timeout=5,
        )
        return wrapped

    yield open_socket
    await asyncio.gather(*(client.disconnect() for client in clients), return_exceptions=True)


async def make_agent(
    server: TestServer, username: str, skills: dict[str, int], *, available: bool = True, max_chats: int = 3
) -> tuple[User, str]:
    """A user with the agent role, their skills set and (by default) available; returns (user, token)."""
    users = server.app[USERS]
    user = await users.create(NewUser(username=username, password=f"{username}-password", role=Role.agent))
    token, _ = await users.login(username, f"{username}-password")
    desktop: Desktop = server.app[DESKTOP]
    await desktop.agents.ensure(user)
    await desktop.agents.set_skills(user.id, AgentSkills(skills=skills, max_chats=max_chats))
    if available:
        await desktop.agents.set_state(user, StateChange(state="available"))
    return user, token


async def make_queue(server: TestServer, **config: Any) -> QueueConfig:
    queue = QueueConfig.model_validate({"id": "after_sales", "skills": {"after_sales": 1}, **config})
    return await server.app[DESKTOP].store.create_queue(queue)


async def caller_with_history(server: TestServer, phone: str = "13800138000") -> tuple[str, str]:
    """A customer who wrote on WeChat yesterday and calls now; returns (customer id, call id)."""
    desktop: Desktop = server.app[DESKTOP]
    omni = desktop.acd.omni
    customer, _ = await omni.customers.resolve([Identity(kind=IdentityKind.phone, value=phone)])
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    await omni.timeline.append(
        customer.id,
        NewEvent(kind="message.in", channel=Channel.wechat, ts=yesterday, body={"text": "我的订单还没到"}),
        Actor(type="customer"),
    )
    call_id = f"call-{phone}"
    conversation, _ = await omni.conversations.open(
        customer.id, NewConversation(channel=Channel.voice, external_ref=call_id)
    )
    for text in ("我要退货", "订单号 12345"):
        await omni.timeline.append(
            customer.id,
            NewEvent(
                kind="transcript.final",
                channel=Channel.voice,
                conversation_id=conversation.id,
                body={"text": text},
            ),
            Actor(type="customer"),
        )
    await omni.timeline.append(
        customer.id,
        NewEvent(
            kind="bot.summary",
            channel=Channel.voice,
            conversation_id=conversation.id,
            body={"summary": "退货，订单 12345"},
        ),
        Actor(type="bot"),
    )
    return customer.id, call_id


def queue_request(call_id: str, caller: str = "13800138000", queue: str = "after_sales") -> QueueRequest:
    now = dt.datetime.now(dt.UTC)
    context = CallContext(
        call_id=call_id,
        caller=caller,
        called="4008001234",
        flow="main",
        version=1,
        language="zh",
        started_at=now,
        path=[StepRecord(step=1, node="greeting", type="menu", input="2", result="after_sales", at=now)],
        variables={"order_number": "12345"},
        queue=queue,
    )
    return QueueRequest(
        call_id=call_id,
        caller=caller,
        queue=queue,
        skills=["after_sales"],
        priority="normal",
        max_wait=60,
        context=context,
    )
