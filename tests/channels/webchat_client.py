"""A web-chat visitor as the widget is one: a real python-socketio client on ``/visitor`` (path
``/chat/socket.io``) with a token from ``POST /api/webchat/visitors``."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import socketio
from aiohttp.test_utils import TestServer

from tests.conftest import ApiClient


async def new_visitor_token(http: ApiClient) -> str:
    status, body, _ = await http.request("POST", "/api/webchat/visitors")
    assert status == 201, body
    token: str = body["token"]
    return token


class Visitor:
    def __init__(self, server: TestServer, token: str | None, language: str = "zh") -> None:
        self.base = str(server.make_url("/"))
        self.token = token
        self.language = language
        self.client = socketio.AsyncClient(reconnection=False)
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.typing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []

        async def on_message(data: dict[str, Any]) -> None:
            self.seen.append(data)
            self.inbox.put_nowait(data)

        async def on_typing(data: dict[str, Any]) -> None:
            self.typing.put_nowait(data)

        self.client.on("message", on_message, namespace="/visitor")
        self.client.on("typing", on_typing, namespace="/visitor")

    async def connect(self) -> None:
        auth: dict[str, Any] | None = (
            {"token": self.token, "language": self.language} if self.token is not None else None
        )
        await self.client.connect(
            self.base,
            namespaces=["/visitor"],
            socketio_path="chat/socket.io",
            auth=auth,
            transports=["websocket"],
            wait_timeout=5,
        )

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.client.call(event, data, namespace="/visitor", timeout=10)

    async def say(self, text: str, client_id: str | None = None, **extra: Any) -> dict[str, Any]:
        ack: dict[str, Any] = await self.call(
            "message", {"client_id": client_id or uuid.uuid4().hex, "text": text, **extra}
        )
        return ack

    async def next_reply(self, within: float = 10.0) -> dict[str, Any]:
        """The next message not written by the visitor."""
        async with asyncio.timeout(within):
            while True:
                message = await self.inbox.get()
                if message["direction"] == "out":
                    return message

    async def disconnect(self) -> None:
        await self.client.disconnect()
