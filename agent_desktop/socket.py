"""Socket.IO for the desktop: ``/agent`` (offers with the screen-pop, state, accept/decline) and
``/supervisor`` (wallboard and live agent states). A client authenticates on connect with the bearer token
from ``POST /api/auth/login`` as ``auth={"token": …}``; anything else is refused.

Rooms: ``agent:<user id>`` (one agent's tabs), ``queue:<queue id>`` (agents qualified for a queue),
``supervisors``. With Redis configured the server runs python-socketio's ``AsyncRedisManager``, so an emit on
one web node reaches clients connected to any node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import web
from pydantic import BaseModel, ValidationError

from agent_desktop.models import Agent, Contact, ScreenPop, StateChange, WrapUp
from core.auth import Role, User
from core.errors import HuiliuError
from core.log import get_logger

if TYPE_CHECKING:
    from agent_desktop.acd import Acd

log = get_logger(__name__)

TokenResolver = Callable[[str], Awaitable[User]]
AGENT_NS = "/agent"
SUPERVISOR_NS = "/supervisor"
SUPERVISORS_ROOM = "supervisors"


def agent_room(user_id: str) -> str:
    return f"agent:{user_id}"


def queue_room(queue_id: str) -> str:
    return f"queue:{queue_id}"


class ContactRef(BaseModel):
    contact_id: str


class WrapUpRequest(WrapUp):
    contact_id: str


class DesktopSockets:
    """The Socket.IO server and the ``DesktopNotifier`` that emits into it. ``bind`` hands it the token
    resolver and the ACD once the app's services exist (they are created in a cleanup context)."""

    def __init__(self, *, redis_url: str | None, channel: str) -> None:
        manager = socketio.AsyncRedisManager(redis_url, channel=channel) if redis_url else None
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=manager,
            cors_allowed_origins=[],
            logger=False,
            engineio_logger=False,
        )
        self._resolve: TokenResolver | None = None
        self._acd: Acd | None = None
        self.sio.register_namespace(_AgentNamespace(self))
        self.sio.register_namespace(_SupervisorNamespace(self))

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app)

    def bind(self, resolve: TokenResolver, acd: Acd) -> None:
        self._resolve = resolve
        self._acd = acd

    @property
    def acd(self) -> Acd:
        if self._acd is None:
            raise RuntimeError("DesktopSockets.bind was not called")
        return self._acd

    async def start(self) -> None:
        """Start the Redis listener now, not at the first connection: emits from other nodes must arrive."""
        if not self.sio.manager_initialized:
            self.sio.manager_initialized = True
            self.sio.manager.initialize()

    async def stop(self) -> None:
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

    async def authenticate(self, auth: Any, required: Role) -> User:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token or self._resolve is None:
            raise socketio.exceptions.ConnectionRefusedError({"code": "unauthorized"})
        try:
            user = await self._resolve(token)
        except HuiliuError as exc:
            raise socketio.exceptions.ConnectionRefusedError({"code": exc.code}) from None
        if not user.allows(required):
            raise socketio.exceptions.ConnectionRefusedError({"code": "forbidden_role"})
        return user

    # ------------------------------------------------------------------------- DesktopNotifier

    async def offer(self, agent_id: str, pop: ScreenPop) -> None:
        await self.sio.emit(
            "offer", pop.model_dump(mode="json"), room=agent_room(agent_id), namespace=AGENT_NS
        )

    async def offer_withdrawn(self, agent_id: str, contact_id: str, reason: str) -> None:
        await self.sio.emit(
            "offer.withdrawn",
            {"contact_id": contact_id, "reason": reason},
            room=agent_room(agent_id),
            namespace=AGENT_NS,
        )

    async def agent_changed(self, agent: Agent) -> None:
        data = agent.model_dump(mode="json")
        await self.sio.emit("agent.state", data, room=agent_room(agent.user_id), namespace=AGENT_NS)
        await self.sio.emit("agent.state", data, room=SUPERVISORS_ROOM, namespace=SUPERVISOR_NS)

    async def contact_changed(self, contact: Contact) -> None:
        summary = {"contact_id": contact.id, "queue": contact.queue, "status": contact.status.value}
        await self.sio.emit("queue.contact", summary, room=queue_room(contact.queue), namespace=AGENT_NS)
        await self.sio.emit("queue.contact", summary, room=SUPERVISORS_ROOM, namespace=SUPERVISOR_NS)


async def _call(action: Callable[[], Awaitable[BaseModel]]) -> dict[str, Any]:
    """Run a socket command; the ack carries the result or a problem (malformed input never crashes)."""
    try:
        result = await action()
    except ValidationError as exc:
        return {"error": {"code": "validation_failed", "detail": str(exc.errors(include_url=False))}}
    except HuiliuError as exc:
        return {"error": {"code": exc.code, "detail": exc.detail}}
    return {"ok": result.model_dump(mode="json")}


class _AgentNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, sockets: DesktopSockets) -> None:
        super().__init__(AGENT_NS)
        self.sockets = sockets

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        user = await self.sockets.authenticate(auth, Role.agent)
        await self.save_session(sid, {"user": user})
        await self.enter_room(sid, agent_room(user.id))
        await self.sockets.acd.agents.ensure(user)
        for queue_id in await self.sockets.acd.queues_of(user.id):
            await self.enter_room(sid, queue_room(queue_id))

    async def _user(self, sid: str) -> User:
        session = await self.get_session(sid)
        user: User = session["user"]
        return user

    async def on_state(self, sid: str, data: Any) -> dict[str, Any]:
        user = await self._user(sid)
        return await _call(lambda: self.sockets.acd.agents.set_state(user, StateChange.model_validate(data)))

    async def on_accept(self, sid: str, data: Any) -> dict[str, Any]:
        user = await self._user(sid)
        return await _call(lambda: self.sockets.acd.accept(user, ContactRef.model_validate(data).contact_id))

    async def on_decline(self, sid: str, data: Any) -> dict[str, Any]:
        user = await self._user(sid)
        return await _call(lambda: self.sockets.acd.decline(user, ContactRef.model_validate(data).contact_id))

    async def on_wrap_up(self, sid: str, data: Any) -> dict[str, Any]:
        user = await self._user(sid)

        async def wrap() -> Contact:
            request = WrapUpRequest.model_validate(data)
            return await self.sockets.acd.wrap_up(
                user, request.contact_id, WrapUp(codes=request.codes, note=request.note)
            )

        return await _call(wrap)


class _SupervisorNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, sockets: DesktopSockets) -> None:
        super().__init__(SUPERVISOR_NS)
        self.sockets = sockets

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        user = await self.sockets.authenticate(auth, Role.supervisor)
        await self.save_session(sid, {"user": user})
        await self.enter_room(sid, SUPERVISORS_ROOM)

    async def on_wallboard(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await _call(self.sockets.acd.wallboard)
