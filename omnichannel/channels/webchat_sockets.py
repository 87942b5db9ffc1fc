"""Web chat's Socket.IO server for visitors: the second ``socketio.AsyncServer`` (``/chat/socket.io/``,
namespace ``/visitor``) that ``omnichannel.channels.webchat`` describes, and its relay of timeline events to
the visitors connected to this web node.

Only the web process serves visitors (``webchat_http``); telephony workers and the Celery worker, which
import ``webchat`` to write to visitors, do not load python-socketio (~6 MB with the client it pulls in).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from typing import Any

import socketio
from aiohttp import web
from pydantic import ValidationError

from core.bus import EventBus
from core.db import utcnow
from core.errors import HuiliuError, Invalid
from omnichannel import Channel
from omnichannel.channels.webchat import (
    BOT_ACTOR,
    SOCKET_PATH,
    VISITOR_KINDS,
    VISITOR_NS,
    VisitorMessage,
    WebChatService,
    conversation_room,
)
from omnichannel.models import TimelineEvent


def _problem(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return {"error": {"code": "validation_failed", "detail": detail}}
    if isinstance(exc, HuiliuError):
        return {"error": {"code": exc.code, "detail": exc.detail, **exc.extra}}
    raise exc


class VisitorSockets:
    """The visitors' Socket.IO server (see the module docstring for why it is a second one)."""

    def __init__(
        self, *, redis_url: str | None, channel: str, origins: tuple[str, ...], max_packet_bytes: int
    ) -> None:
        manager = socketio.AsyncRedisManager(redis_url, channel=channel) if redis_url else None
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=manager,
            cors_allowed_origins="*" if "*" in origins else list(origins),
            cors_credentials=False,
            max_http_buffer_size=max_packet_bytes,
            logger=False,
            engineio_logger=False,
        )
        self._service: WebChatService | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self.sio.register_namespace(_VisitorNamespace(self))

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app, socketio_path=SOCKET_PATH)

    @property
    def service(self) -> WebChatService:
        if self._service is None:
            raise RuntimeError("VisitorSockets.start was not called")
        return self._service

    async def start(self, service: WebChatService, bus: EventBus) -> None:
        self._service = service
        if not self.sio.manager_initialized:
            self.sio.manager_initialized = True
            self.sio.manager.initialize()
        for pattern in ("timeline.message.*", "timeline.contact.connected", "webchat.typing"):
            self._unsubscribe.append(bus.subscribe(pattern, self._relay))

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        manager = self.sio.manager
        listener = getattr(manager, "thread", None)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener
        redis = getattr(manager, "redis", None)
        if redis is not None:
            await redis.aclose()
        await self.sio.shutdown()

    async def _relay(self, event: dict[str, Any]) -> None:
        """Every node hears the bus; each emits only to its own visitors (``ignore_queue``)."""
        conversation_id = event.get("conversation_id")
        if not conversation_id:
            return
        room = conversation_room(str(conversation_id))
        if event.get("topic") == "webchat.typing":
            if event.get("who") == "agent":
                data = {"typing": bool(event.get("typing")), "name": event.get("name")}
                await self.sio.emit("typing", data, room=room, namespace=VISITOR_NS, ignore_queue=True)
            return
        if event.get("channel") != Channel.webchat.value or event.get("kind") not in VISITOR_KINDS:
            return
        payload = self.service.payload(TimelineEvent.model_validate(event))
        await self.sio.emit("message", payload, room=room, namespace=VISITOR_NS, ignore_queue=True)


class _VisitorNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, sockets: VisitorSockets) -> None:
        super().__init__(VISITOR_NS)
        self.sockets = sockets

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        service = self.sockets.service
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            visitor_id = service.tokens.verify(token)
        except HuiliuError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                {"code": exc.code, "detail": exc.detail}
            ) from None
        language = auth.get("language") if auth.get("language") in ("zh", "en") else None
        visitor = await service.visitor(visitor_id, language)
        await self.save_session(
            sid, {"visitor_id": visitor_id, "conversation_id": visitor["conversation_id"]}
        )
        await self.enter_room(sid, conversation_room(str(visitor["conversation_id"])))

    async def _visitor(self, sid: str) -> tuple[str, str]:
        session = await self.get_session(sid)
        return session["visitor_id"], session["conversation_id"]

    async def on_message(self, sid: str, data: Any) -> dict[str, Any]:
        visitor_id, conversation_id = await self._visitor(sid)
        try:
            message = VisitorMessage.model_validate(data)
            current = await self.sockets.service.conversation_of_visitor(visitor_id)
            payload, created = await self.sockets.service.receive(visitor_id, message)
        except (ValidationError, HuiliuError) as exc:
            return _problem(exc)
        if current != conversation_id:  # the chat was closed and this message opened a new one
            await self._move(
                sid, conversation_id, await self.sockets.service.conversation_of_visitor(visitor_id)
            )
        return {"ok": payload, "created": created}

    async def on_history(self, sid: str, data: Any = None) -> dict[str, Any]:
        _, conversation_id = await self._visitor(sid)
        after = data.get("after") if isinstance(data, dict) else None
        try:
            events = await self.sockets.service.history(
                conversation_id, after if isinstance(after, str) else None
            )
        except HuiliuError as exc:
            return _problem(exc)
        config = self.sockets.service.config
        limits = {"max_chars": config.max_chars, "max_attachment_bytes": config.max_attachment_bytes}
        return {"ok": events, "conversation_id": conversation_id, "limits": limits}

    async def on_typing(self, sid: str, data: Any = None) -> None:
        visitor_id, conversation_id = await self._visitor(sid)
        typing = bool(data.get("typing")) if isinstance(data, dict) else False
        bus = self.sockets.service.omni.timeline.bus
        if bus is not None:
            await bus.publish(
                "webchat.typing",
                {
                    "id": secrets.token_hex(8),
                    "ts": utcnow(),
                    "conversation_id": conversation_id,
                    "visitor_id": visitor_id,
                    "who": "visitor",
                    "typing": typing,
                },
            )

    async def on_handoff(self, sid: str, data: Any = None) -> dict[str, Any]:
        visitor_id, conversation_id = await self._visitor(sid)
        service = self.sockets.service
        try:
            visitor = await service.visitor(visitor_id)
            reply = await service.bot.hand_off(
                conversation_id,
                str(visitor["customer_id"]),
                Channel.webchat,
                "requested",
                visitor.get("language"),
            )
            if reply.reply:
                await service.say(conversation_id, reply.reply, BOT_ACTOR)
        except HuiliuError as exc:
            return _problem(exc)
        return {"ok": {"handed_off": reply.handed_off, "contact_id": reply.contact_id}}

    async def on_verify_phone(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Send an SMS code to the phone number the visitor gave (to link them to that customer)."""
        visitor_id, _ = await self._visitor(sid)
        service = self.sockets.service
        phone = data.get("phone") if isinstance(data, dict) else None
        try:
            if not isinstance(phone, str) or not phone.strip() or service.linker is None:
                raise Invalid("send {phone: …}", code="phone_required")
            visitor = await service.visitor(visitor_id)
            masked = await service.linker.start(str(visitor["customer_id"]), phone)
        except HuiliuError as exc:
            return _problem(exc)
        return {"ok": {"sent_to": masked}}

    async def on_verify_email(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Email a code to the address the visitor gave (to link them to the customer with that address)."""
        visitor_id, _ = await self._visitor(sid)
        service = self.sockets.service
        address = data.get("email") if isinstance(data, dict) else None
        try:
            if not isinstance(address, str) or not address.strip() or service.linker is None:
                raise Invalid("send {email: …}", code="email_required")
            visitor = await service.visitor(visitor_id)
            masked = await service.linker.start_email(
                str(visitor["customer_id"]), address, visitor.get("language")
            )
        except HuiliuError as exc:
            return _problem(exc)
        return {"ok": {"sent_to": masked}}

    async def on_verify_code(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Check the code sent by ``verify_phone`` or ``verify_email``; right, the visitor is linked."""
        visitor_id, _ = await self._visitor(sid)
        service = self.sockets.service
        code = data.get("code") if isinstance(data, dict) else None
        try:
            if not isinstance(code, str) or service.linker is None:
                raise Invalid("send {code: …}", code="code_required")
            visitor = await service.visitor(visitor_id)
            linked = await service.linker.verify(
                str(visitor["customer_id"]),
                code,
                channel=Channel.webchat,
                conversation_id=str(visitor["conversation_id"]),
            )
        except HuiliuError as exc:
            return _problem(exc)
        return {"ok": {"customer_id": linked.customer_id, "merged": linked.merged}}

    async def on_close(self, sid: str, data: Any = None) -> dict[str, Any]:
        visitor_id, conversation_id = await self._visitor(sid)
        outcome = await self.sockets.service.close(visitor_id)
        fresh = await self.sockets.service.visitor(visitor_id)
        await self._move(sid, conversation_id, str(fresh["conversation_id"]))
        return {"ok": {"outcome": outcome, "conversation_id": str(fresh["conversation_id"])}}

    async def _move(self, sid: str, old: str, new: str | None) -> None:
        if new is None or new == old:
            return
        await self.leave_room(sid, conversation_room(old))
        await self.enter_room(sid, conversation_room(new))
        session = await self.get_session(sid)
        await self.save_session(sid, {**session, "conversation_id": new})
