"""Socket.IO for the desktop: ``/agent`` (offers with the screen-pop, state, accept/decline) and
``/supervisor`` (wallboard and live agent states). A client authenticates on connect with the bearer token
from ``POST /api/auth/login`` as ``auth={"token": …}``; anything else is refused.

Rooms: ``agent:<user id>`` (one agent's tabs), ``queue:<queue id>`` (agents qualified for a queue),
``supervisors``. With Redis configured the server runs python-socketio's ``AsyncRedisManager``, so an emit on
one web node reaches clients connected to any node.

Two emits are deliberately local to a node (``ignore_queue``): the wallboard (each node computes it for the
supervisors connected to it, at most every ``wallboard_interval`` and at once after a change) and
``chat.message`` and ``transcript`` (every node hears the bus, so each relays only to its own clients: nothing
arrives twice).

Agent events: ``offer``, ``offer.withdrawn``, ``agent.state``, ``queue.waiting`` (per queue the agent serves:
how many wait and the longest wait, sent by each node to its own agents when the count changes and every
``QUEUE_STATS_REFRESH`` seconds while someone waits — never per contact: with 1,000 agents in a queue's room a
per-contact broadcast would cost thousands of socket writes per contact), ``chat.message`` (what was
said in a chat the agent serves), ``transcript`` (``transcript.final`` of the agent's call); commands
(acked with ``{"ok": …}`` or ``{"error": {"code", "detail"}}``): ``state``, ``accept``, ``decline``,
``wrap_up``, ``resume`` (after a reconnect: the agent's state, the offer still open for them with its
screen-pop, and the contacts they are serving). Supervisor events: ``wallboard``, ``agent.state``,
``queue.contact``, ``alert``, ``alert.cleared``; commands: ``wallboard``, ``alerts``, ``force_state``. A new
alert is also texted to the supervisors, once, by the node that stored it (``alerting.py``).

Any bad event on either namespace (unknown, more than one argument, malformed, refused) is answered with
the event ``error`` ``{code, message, event}``, and with the ack ``{"error": …}`` when one was asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from agent_desktop.alerting import AlertTexter, alert_texter
from agent_desktop.models import (
    Agent,
    Alert,
    Contact,
    ContactKind,
    ContactStatus,
    ForcedState,
    QueueBoard,
    ScreenPop,
    StateChange,
    WrapUp,
)
from agent_desktop.wallboard import CHANGE_SKEW
from core.aio import stop_tasks
from core.auth import Role, User
from core.db import utcnow
from core.errors import Forbidden, HuiliuError, NotFound
from core.log import get_logger
from ivr_flows.transcript import PARTIAL_TOPIC
from omnichannel.channels.webchat import agent_typing as publish_agent_typing

if TYPE_CHECKING:
    from agent_desktop.acd import Acd
    from agent_desktop.service import Desktop

log = get_logger(__name__)

TokenResolver = Callable[[str], Awaitable[User]]
AGENT_NS = "/agent"
SUPERVISOR_NS = "/supervisor"
SUPERVISORS_ROOM = "supervisors"
QUEUE_STATS_REFRESH = 5.0
AGENTS_REREAD = 60.0
# Published by whoever revokes a login or changes a user ({"id", "ts", "user_id"}): every node then checks
# that user's sockets at once and disconnects those whose token or role no longer holds.
SESSION_TOPICS = ("auth.logged_out", "user.updated")
SUPERVISOR_RECHECK = 2.0  # supervisors' sockets are checked this often even without such an event
END_SESSION_GRACE = 0.1  # the ack and the error event leave before the disconnect
REQUIRED_ROLE = {AGENT_NS: Role.agent, SUPERVISOR_NS: Role.supervisor}
SESSION_ENDED = "your sign-in was revoked or your role changed: sign in again"


def agent_room(user_id: str) -> str:
    return f"agent:{user_id}"


def queue_room(queue_id: str) -> str:
    return f"queue:{queue_id}"


def call_room(call_id: str) -> str:
    """Supervisors following one call's live transcript (``watch_call``)."""
    return f"call:{call_id}"


class ContactRef(BaseModel):
    contact_id: str


class TypingState(BaseModel):
    contact_id: str
    typing: bool


class CallRef(BaseModel):
    call_id: str = Field(min_length=1, max_length=200)


class CallTranscriptSoFar(BaseModel):
    call_id: str
    finals: list[dict[str, Any]]  # transcript.final timeline events of the call, oldest first


class WrapUpRequest(WrapUp):
    contact_id: str


class ResumeState(BaseModel):
    """What a reconnecting desktop needs to carry on."""

    agent: Agent
    offer: ScreenPop | None
    contacts: list[Contact]


class AlertList(BaseModel):
    alerts: list[Alert]


class DesktopSockets:
    """The Socket.IO server and the ``DesktopNotifier`` that emits into it. ``bind`` hands it the token
    resolver and the desktop once the app's services exist (they are created in a cleanup context)."""

    def __init__(
        self,
        *,
        redis_url: str | None,
        channel: str,
        wallboard_interval: float = 0.5,
        alert_interval: float = 2.0,
        agents_refresh: float = 2.5,
    ) -> None:
        manager = socketio.AsyncRedisManager(redis_url, channel=channel) if redis_url else None
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=manager,
            cors_allowed_origins=[],
            logger=False,
            engineio_logger=False,
        )
        self._resolve: TokenResolver | None = None
        self._desktop: Desktop | None = None
        self.wallboard_interval = wallboard_interval
        self.alert_interval = alert_interval
        self.agents_refresh = agents_refresh
        self._board_changed = asyncio.Event()
        # The agents as the wallboard shows them (see _current_agents): changes made on other nodes are read
        # every ``agents_refresh``, this node's own arrive through agent_changed.
        self._agents: dict[str, Agent] | None = None
        self._agents_read_at = self._agents_polled_at = 0.0
        self._agents_changed_at = utcnow()
        self._board_task: asyncio.Task[None] | None = None
        self._queue_stats: dict[str, tuple[int, float]] = {}  # queue → (waiting, monotonic time sent)
        self._unsubscribe: list[Callable[[], None]] = []
        self._supervisors_checked_at = 0.0
        self._app: web.Application | None = None
        self._alert_texter: AlertTexter | None = None
        self._ending: set[asyncio.Task[None]] = set()
        self.sio.register_namespace(_AgentNamespace(self))
        self.sio.register_namespace(_SupervisorNamespace(self))

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app)
        self._app = app

    def bind(self, resolve: TokenResolver, desktop: Desktop) -> None:
        self._resolve = resolve
        self._desktop = desktop

    @property
    def desktop(self) -> Desktop:
        if self._desktop is None:
            raise RuntimeError("DesktopSockets.bind was not called")
        return self._desktop

    @property
    def acd(self) -> Acd:
        return self.desktop.acd

    async def start(self) -> None:
        """Start the Redis listener now, not at the first connection: emits from other nodes must arrive.
        Then the wallboard publisher and the relay of chat messages and live transcripts."""
        if not self.sio.manager_initialized:
            self.sio.manager_initialized = True
            self.sio.manager.initialize()
        bus = self.desktop.acd.omni.timeline.bus
        if bus is not None and not self._unsubscribe:
            self._unsubscribe = [
                bus.subscribe("timeline.message.*", self._relay("chat.message")),
                bus.subscribe("timeline.transcript.final", self._relay("transcript")),
                bus.subscribe("timeline.transcript.final", self._to_call_watchers("transcript")),
                bus.subscribe(PARTIAL_TOPIC, self._relay_partial),
                bus.subscribe("timeline.call.ended", self._call_ended),
                bus.subscribe("timeline.call.consult_started", self._relay_consult),
                bus.subscribe("timeline.call.consult_ended", self._relay_consult),
                bus.subscribe("webchat.typing", self._relay_typing),
                bus.subscribe(PARTIAL_TOPIC, self._to_call_watchers("transcript.partial")),
                *(bus.subscribe(topic, self._session_changed) for topic in SESSION_TOPICS),
            ]
        if self._app is not None and self._alert_texter is None:
            self._alert_texter = alert_texter(self._app)  # the app's channels and tickets exist by now
        if self._board_task is None:
            self._board_task = asyncio.create_task(self._publish_wallboards(), name="wallboard-publisher")

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        manager = self.sio.manager
        # the sessions being ended, the wallboard publisher and python-socketio's Redis listener
        await stop_tasks(*self._ending, self._board_task, getattr(manager, "thread", None))
        self._board_task = None
        redis = getattr(manager, "redis", None)
        if redis is not None:
            await redis.aclose()
        await self.sio.shutdown()

    async def authenticate(self, auth: Any, required: Role) -> dict[str, Any]:
        """The session of a socket connecting with ``auth``: its user and token; refused otherwise."""
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token or self._resolve is None:
            raise socketio.exceptions.ConnectionRefusedError({"code": "unauthorized"})
        try:
            user = await self._resolve(token)
        except HuiliuError as exc:
            raise socketio.exceptions.ConnectionRefusedError({"code": exc.code}) from None
        if not user.allows(required):
            raise socketio.exceptions.ConnectionRefusedError({"code": "forbidden_role"})
        return {"user": user, "token": token}

    # ------------------------------------------------------------------------------------ sessions

    async def recheck(self, sid: str, namespace: str) -> str | None:
        """Whether a socket's sign-in still holds: None (its session's user is refreshed, e.g. a new
        display name), or why not (``invalid_token``: logged out, expired, disabled; ``forbidden_role``)."""
        assert self._resolve is not None
        try:
            session = await self.sio.get_session(sid, namespace=namespace)
        except KeyError:
            return None  # gone already
        try:
            user = await self._resolve(session["token"])
        except HuiliuError as exc:
            return exc.code
        if not user.allows(REQUIRED_ROLE[namespace]):
            return "forbidden_role"
        if user != session["user"]:
            await self.sio.save_session(sid, {**session, "user": user}, namespace=namespace)
        return None

    async def end_session(self, sid: str, namespace: str, code: str) -> None:
        """Tell the socket why (the ``error`` event) and disconnect it."""
        error = {"code": code, "message": SESSION_ENDED, "event": None}
        await self.sio.emit("error", error, to=sid, namespace=namespace, ignore_queue=True)
        await self.sio.disconnect(sid, namespace=namespace, ignore_queue=True)
        log.info("socket.session_ended", sid=sid, namespace=namespace, code=code)

    def end_session_soon(self, sid: str, namespace: str) -> None:
        """Disconnect after the command's answer has left (the command sends the error event itself)."""

        async def end() -> None:
            await asyncio.sleep(END_SESSION_GRACE)
            await self.sio.disconnect(sid, namespace=namespace, ignore_queue=True)
            log.info("socket.session_ended", sid=sid, namespace=namespace)

        task = asyncio.create_task(end(), name=f"end-session-{sid}")
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def recheck_sockets(self, sockets: list[tuple[str, str]]) -> int:
        """Check ``(namespace, sid)`` sockets of this node; disconnect those whose sign-in ended. Returns
        how many were disconnected."""
        ended = 0
        for namespace, sid in sockets:
            code = await self.recheck(sid, namespace)
            if code is not None:
                await self.end_session(sid, namespace, code)
                ended += 1
        return ended

    def _local_sids(self, namespace: str, room: str) -> list[str]:
        return list(self.sio.manager.rooms.get(namespace, {}).get(room, {}))

    async def _session_changed(self, event: dict[str, Any]) -> None:
        """A bus event about a user (logged out, changed): check their sockets on this node now."""
        user_id = event.get("user_id")
        if not isinstance(user_id, str):
            return
        sockets = [(AGENT_NS, sid) for sid in self._local_sids(AGENT_NS, agent_room(user_id))]
        for sid in self._local_sids(SUPERVISOR_NS, SUPERVISORS_ROOM):
            with contextlib.suppress(KeyError):
                if (await self.sio.get_session(sid, namespace=SUPERVISOR_NS))["user"].id == user_id:
                    sockets.append((SUPERVISOR_NS, sid))
        await self.recheck_sockets(sockets)

    async def _recheck_supervisors(self) -> None:
        """Supervisors see every queue and agent: their sockets are checked every ``SUPERVISOR_RECHECK``
        seconds as well, so a demotion nobody announced on the bus still ends their wallboard soon."""
        if time.monotonic() - self._supervisors_checked_at < SUPERVISOR_RECHECK:
            return
        self._supervisors_checked_at = time.monotonic()
        await self.recheck_sockets(
            [(SUPERVISOR_NS, sid) for sid in self._local_sids(SUPERVISOR_NS, SUPERVISORS_ROOM)]
        )

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
        self._board_changed.set()
        if self._agents is not None:
            self._agents[agent.user_id] = agent
        data = agent.model_dump(mode="json")
        await self.sio.emit("agent.state", data, room=agent_room(agent.user_id), namespace=AGENT_NS)
        await self.sio.emit("agent.state", data, room=SUPERVISORS_ROOM, namespace=SUPERVISOR_NS)

    async def contact_changed(self, contact: Contact) -> None:
        self._board_changed.set()
        summary = {"contact_id": contact.id, "queue": contact.queue, "status": contact.status.value}
        await self.sio.emit("queue.contact", summary, room=SUPERVISORS_ROOM, namespace=SUPERVISOR_NS)

    # ------------------------------------------------------------------------------ wallboard, chat

    def watching(self) -> bool:
        """Whether a supervisor is connected to this node."""
        return bool(self.sio.manager.rooms.get(SUPERVISOR_NS, {}).get(SUPERVISORS_ROOM))

    def refresh_wallboard(self) -> None:
        self._board_changed.set()

    def resend_queue_stats(self, queue_id: str) -> None:
        """A desktop joined the queue's room: its ``queue.waiting`` goes out again at the next publish (one
        emit to the room per publish, however many desktops joined meanwhile)."""
        self._queue_stats.pop(queue_id, None)
        self._board_changed.set()

    async def _publish_wallboards(self) -> None:
        """Push the wallboard to this node's supervisors after each change (at most every
        ``wallboard_interval``) and every ``wallboard_interval`` while someone watches, so waits tick on;
        evaluate the alert rules every ``alert_interval`` even when nobody watches."""
        last_alerts = 0.0
        while True:
            interval = self.wallboard_interval if self.watching() else self.alert_interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._board_changed.wait()
            self._board_changed.clear()
            watching = self.watching()
            if not watching and time.monotonic() - last_alerts < self.alert_interval:
                continue
            began = time.monotonic()
            try:
                if watching:
                    await self._recheck_supervisors()
                await self.publish_wallboard(local=watching)
            except Exception as exc:  # a MongoDB hiccup must not stop the wallboard for good
                log.warning("wallboard.publish_failed", error=repr(exc))
                await asyncio.sleep(self.wallboard_interval)
                continue
            last_alerts = time.monotonic()
            # Coalesce bursts of changes, and keep the wallboard to about a quarter of this node's time
            # when it is expensive (1,000 agents): routing comes first.
            await asyncio.sleep(max(self.wallboard_interval / 2, 3 * (last_alerts - began)))

    async def publish_wallboard(self, *, local: bool = True) -> None:
        """Evaluate the alert rules (changes are stored and emitted to every supervisor) and, when ``local``,
        send the whole wallboard to this node's supervisors (agents are read only then: 1,000 agents cost)."""
        service = self.desktop.wallboard
        board = None
        if local:
            board = await service.snapshot(await self._current_agents())
            queues, bot, config = board.queues, board.bot, board.config
        else:
            config = await service.config()
            queues, bot = await service.queue_boards(config), await service.bot(config)
        await self._publish_queue_stats(queues)
        changes = await service.evaluate(queues, bot, config)
        for alert in changes.raised:
            log.info("wallboard.alert", rule=alert.rule, subject=alert.subject, value=alert.value)
            await self.sio.emit(
                "alert", alert.model_dump(mode="json"), room=SUPERVISORS_ROOM, namespace=SUPERVISOR_NS
            )
            await self._text_alert(alert)
        for alert in changes.cleared:
            await self.sio.emit(
                "alert.cleared", alert.model_dump(mode="json"), room=SUPERVISORS_ROOM, namespace=SUPERVISOR_NS
            )
        if board is not None:
            if changes.raised or changes.cleared:
                board = board.model_copy(update={"alerts": await service.active_alerts()})
            await self.sio.emit(
                "wallboard",
                board.model_dump(mode="json"),
                room=SUPERVISORS_ROOM,
                namespace=SUPERVISOR_NS,
                ignore_queue=True,
            )

    async def _text_alert(self, alert: Alert) -> None:
        """SMS the supervisors about a new alert: this node stored it, so only this node sends it."""
        if self._alert_texter is None:
            return
        try:
            await self._alert_texter.send(alert)
        except Exception as exc:  # the wallboard goes on; the alert stays on the wall and in the list
            log.error("wallboard.alert_sms_failed", alert=alert.id, error=repr(exc))

    async def _publish_queue_stats(self, queues: list[QueueBoard]) -> None:
        """``queue.waiting`` to this node's agents in each queue's room: when the count changed, and every
        ``QUEUE_STATS_REFRESH`` seconds while contacts wait (the desktop ticks the longest wait on)."""
        now = time.monotonic()
        for board in queues:
            sent = self._queue_stats.get(board.queue)
            if sent is not None and sent[0] == board.waiting:
                if board.waiting == 0 or now - sent[1] < QUEUE_STATS_REFRESH:
                    continue
            self._queue_stats[board.queue] = (board.waiting, now)
            await self.sio.emit(
                "queue.waiting",
                {
                    "queue": board.queue,
                    "name": board.name,
                    "waiting": board.waiting,
                    "longest_wait_seconds": round(board.longest_wait_seconds, 1),
                },
                room=queue_room(board.queue),
                namespace=AGENT_NS,
                ignore_queue=True,
            )

    async def _current_agents(self) -> list[Agent]:
        """All agents, read whole every ``AGENTS_REREAD`` seconds and otherwise only those written since the
        last look (every ``agents_refresh``: other nodes' changes; this node's arrive via agent_changed)."""
        store = self.desktop.store
        now, mono = utcnow(), time.monotonic()
        if self._agents is None or mono - self._agents_read_at > AGENTS_REREAD:
            self._agents_read_at = self._agents_polled_at = mono
            self._agents = {agent.user_id: agent for agent in await store.all_agents()}
            self._agents_changed_at = now
        elif mono - self._agents_polled_at > self.agents_refresh:
            self._agents_polled_at = mono
            for agent in await store.agents_changed_since(self._agents_changed_at - CHANGE_SKEW):
                self._agents[agent.user_id] = agent
            self._agents_changed_at = now
        return sorted(self._agents.values(), key=lambda agent: agent.username)

    def _relay(self, name: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
        """A bus handler sending timeline events of a conversation to the agent serving it, as ``name``."""

        async def relay(event: dict[str, Any]) -> None:
            conversation_id = event.get("conversation_id")
            if not isinstance(conversation_id, str):
                return
            contact = await self.desktop.chat.serving(conversation_id)
            if contact is None or contact.agent_id is None:
                return
            data = {key: value for key, value in event.items() if key != "topic"}
            await self.sio.emit(
                name,
                {**data, "contact_id": contact.id},
                room=agent_room(contact.agent_id),
                namespace=AGENT_NS,
                ignore_queue=True,
            )

        return relay

    async def _call_ended(self, event: dict[str, Any]) -> None:
        """A call an agent had ended on the phone side: end the contact (every node hears the event, one
        wins the guarded update) and tell the agent's desktop, ``contact.ended`` {contact_id, reason}."""
        body = event.get("body") or {}
        call_id = body.get("call_id")
        if not isinstance(call_id, str):
            return
        cause = str(body.get("cause") or "hung_up")
        contact = await self.acd.call_ended(call_id, cause)
        if contact is None or contact.agent_id is None:
            return
        await self.sio.emit(
            "contact.ended",
            {"contact_id": contact.id, "reason": cause, "call_id": call_id},
            room=agent_room(contact.agent_id),
            namespace=AGENT_NS,
        )

    async def _relay_typing(self, event: dict[str, Any]) -> None:
        """The visitor typing (or stopping) in a chat an agent has: ``chat.typing`` {contact_id, typing}."""
        if event.get("who") != "visitor" or not isinstance(event.get("conversation_id"), str):
            return
        contact = await self.desktop.chat.serving(event["conversation_id"])
        if contact is None or contact.agent_id is None:
            return
        await self.sio.emit(
            "chat.typing",
            {"contact_id": contact.id, "typing": bool(event.get("typing"))},
            room=agent_room(contact.agent_id),
            namespace=AGENT_NS,
            ignore_queue=True,
        )

    async def agent_typing(self, user: User, data: Any) -> TypingState:
        """The agent typing in a chat they have: the visitor's widget shows it."""
        state = TypingState.model_validate(data)
        contact = await self.desktop.store.contact(state.contact_id)
        if contact.agent_id != user.id or contact.status is not ContactStatus.connected:
            raise Forbidden("this chat is not yours", code="not_your_contact")
        bus = self.acd.omni.timeline.bus
        if bus is not None and contact.kind is ContactKind.chat and contact.conversation_id is not None:
            await publish_agent_typing(bus, contact.conversation_id, state.typing, user.display_name)
        return state

    async def _relay_partial(self, event: dict[str, Any]) -> None:
        """A partial transcript (not on the timeline: it is replaced by the next one) to the agent who has
        the call or chat it belongs to, as ``transcript.partial``."""
        conversation_id, call_id = event.get("conversation_id"), event.get("call_id")
        if isinstance(conversation_id, str):
            contact = await self.desktop.chat.serving(conversation_id)
        elif isinstance(call_id, str):
            contact = await self.desktop.store.connected_call(call_id)
        else:
            return
        if contact is None or contact.agent_id is None:
            return
        data = {key: value for key, value in event.items() if key != "topic"}
        await self.sio.emit(
            "transcript.partial",
            {**data, "contact_id": contact.id},
            room=agent_room(contact.agent_id),
            namespace=AGENT_NS,
            ignore_queue=True,
        )

    async def _relay_consult(self, event: dict[str, Any]) -> None:
        """A consultation on a call (attended transfer) starting or ending, to the agent who has the call:
        ``call.consult`` {contact_id, call_id, kind, target, outcome} — the desktop learns the target hung
        up."""
        body = event.get("body") or {}
        call_id = body.get("call_id")
        if not isinstance(call_id, str):
            return
        contact = await self.desktop.store.connected_call(call_id)
        if contact is None or contact.agent_id is None:
            return
        await self.sio.emit(
            "call.consult",
            {
                "contact_id": contact.id,
                "call_id": call_id,
                "kind": event.get("kind"),
                "target": body.get("target"),
                "outcome": body.get("outcome"),
            },
            room=agent_room(contact.agent_id),
            namespace=AGENT_NS,
        )

    def _to_call_watchers(self, name: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
        """A bus handler sending a call's transcript (finals and partials) to the supervisors who watch it."""

        async def relay(event: dict[str, Any]) -> None:
            call_id = event.get("call_id") or event.get("body", {}).get("call_id")
            if not isinstance(call_id, str):
                return
            room = call_room(call_id)
            if not self.sio.manager.rooms.get(SUPERVISOR_NS, {}).get(room):
                return  # nobody here watches it
            data = {key: value for key, value in event.items() if key != "topic"}
            await self.sio.emit(name, data, room=room, namespace=SUPERVISOR_NS, ignore_queue=True)

        return relay

    async def call_transcript(self, call_id: str) -> CallTranscriptSoFar:
        """What the caller has said so far on ``call_id`` (its ``transcript.final`` events)."""
        call = await self.desktop.store.contacts.database["calls"].find_one({"_id": call_id})
        if call is None:
            raise NotFound(f"no call {call_id!r}", code="call_not_found")
        finals: list[dict[str, Any]] = []
        if call.get("customer_id"):
            page = await self.acd.omni.timeline.page(
                str(call["customer_id"]), limit=100, kinds=["transcript.final"]
            )
            finals = [
                event.model_dump(mode="json")
                for event in reversed(page.events)
                if event.body.get("call_id") == call_id
            ]
        return CallTranscriptSoFar(call_id=call_id, finals=finals)

    async def resume(self, user: User) -> ResumeState:
        desktop = self.desktop
        agent = await desktop.agents.ensure(user)
        pop = None
        if agent.offer is not None:
            contact = await desktop.store.contact(agent.offer)
            if contact.status is ContactStatus.offered and user.id in contact.offered_to:
                pop = await desktop.acd.screenpop.build(contact, time.time())
        return ResumeState(agent=agent, offer=pop, contacts=await desktop.chat.my_contacts(user))

    async def force_state(self, supervisor: User, data: Any) -> Agent:
        """A supervisor's state change for an agent, from the wallboard; audited like the REST route."""
        fields = data if isinstance(data, dict) else {}
        details = {key: str(fields[key])[:100] for key in ("user_id", "state", "reason") if key in fields}
        status = 200
        target = None
        try:
            change = ForcedState.model_validate(data)
            target = change.user_id
            return await self.desktop.force_state(
                supervisor, change.user_id, StateChange(state=change.state, reason=change.reason)
            )
        except ValidationError:
            status = 400
            raise
        except HuiliuError as exc:
            status = exc.status
            raise
        finally:
            await self.desktop.audit.record(
                actor={"id": supervisor.id, "username": supervisor.username, "role": supervisor.role.value},
                action="force_agent_state",
                target=f"agent:{target}" if target else None,
                status=status,
                details={"via": "socket", **details},
            )


async def socket_ack(action: Callable[[], Awaitable[BaseModel]]) -> dict[str, Any]:
    """Run a socket command; the ack carries the result or a problem (malformed input never crashes)."""
    try:
        result = await action()
    except ValidationError as exc:
        return _problem("validation_failed", str(exc.errors(include_url=False)))
    except HuiliuError as exc:
        return _problem(exc.code, exc.detail)
    return {"ok": result.model_dump(mode="json")}


def _problem(code: str, detail: str) -> dict[str, Any]:
    return {"error": {"code": code, "detail": detail}}


class _DesktopNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """What ``/agent`` and ``/supervisor`` share: the user in the session, and commands that always answer.

    A command is an ``on_<event>(sid, data)`` coroutine returning its ack. A bad event — unknown, with more
    than one argument, malformed data, refused, or failing — gets the ``error`` event ``{code, message,
    event}`` (whether or not the client asked for an ack) and, when it asked, the ack ``{"error": {code,
    detail}}``; the connection stays."""

    def __init__(self, namespace: str, sockets: DesktopSockets) -> None:
        super().__init__(namespace)
        self.sockets = sockets

    async def trigger_event(self, event: Any, *args: Any) -> Any:
        if event == "disconnect":
            return None  # nothing to clean up: rooms and sessions go with the socket
        if (
            event == "connect"
            and len(args) == 3
            and args[1] is self.server.get_environ(args[0], self.namespace)
        ):
            return await super().trigger_event(event, *args)  # the handshake, not a client's "connect" event
        sid, data = args[0], args[1:]
        command = self._command(event)
        if command is None:
            known = ", ".join(
                name[3:] for name in dir(self) if name.startswith("on_") and self._command(name[3:])
            )
            reply = _problem(
                "unknown_event", f"{str(event)[:64]!r} is not an event of {self.namespace}: {known}"
            )
        elif len(data) > 1:
            reply = _problem(
                "too_many_arguments", f"send one object with {event!r}, not {len(data)} arguments"
            )
        else:
            try:
                # The sign-in is checked again for every command: a token logged out or a role taken away
                # since the socket connected ends it here.
                ended = await self.sockets.recheck(sid, self.namespace)
                if ended is not None:
                    reply = _problem(ended, SESSION_ENDED)
                    self.sockets.end_session_soon(sid, self.namespace)
                else:
                    reply = await command(sid, data[0] if data else None)
            except Exception as exc:  # a bug or an outage: the client hears about it, the socket stays
                log.exception("socket.command_failed", event=event, namespace=self.namespace, error=repr(exc))
                reply = _problem("internal_error", "the command failed; try again")
        error = reply.get("error") if isinstance(reply, dict) else None
        if error is not None:
            message = {"code": error["code"], "message": error["detail"], "event": str(event)[:64]}
            await self.emit("error", message, to=sid, ignore_queue=True)
        return reply

    def _command(self, event: Any) -> Callable[[str, Any], Awaitable[dict[str, Any]]] | None:
        if not isinstance(event, str) or not event.isidentifier() or event in ("connect", "disconnect"):
            return None
        command: Callable[[str, Any], Awaitable[dict[str, Any]]] | None = getattr(self, f"on_{event}", None)
        return command

    async def _user(self, sid: str) -> User:
        session = await self.get_session(sid)
        user: User = session["user"]
        return user


class _AgentNamespace(_DesktopNamespace):
    def __init__(self, sockets: DesktopSockets) -> None:
        super().__init__(AGENT_NS, sockets)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        session = await self.sockets.authenticate(auth, Role.agent)
        await self.save_session(sid, session)
        user: User = session["user"]
        await self.enter_room(sid, agent_room(user.id))
        await self.sockets.acd.agents.ensure(user)
        for queue_id in await self.sockets.acd.queues_of(user.id):
            await self.enter_room(sid, queue_room(queue_id))
            self.sockets.resend_queue_stats(queue_id)

    async def on_state(self, sid: str, data: Any = None) -> dict[str, Any]:
        user = await self._user(sid)
        return await socket_ack(
            lambda: self.sockets.acd.agents.set_state(user, StateChange.model_validate(data))
        )

    async def on_accept(self, sid: str, data: Any = None) -> dict[str, Any]:
        user = await self._user(sid)
        return await socket_ack(
            lambda: self.sockets.acd.accept(user, ContactRef.model_validate(data).contact_id)
        )

    async def on_decline(self, sid: str, data: Any = None) -> dict[str, Any]:
        user = await self._user(sid)
        return await socket_ack(
            lambda: self.sockets.acd.decline(user, ContactRef.model_validate(data).contact_id)
        )

    async def on_resume(self, sid: str, data: Any = None) -> dict[str, Any]:
        user = await self._user(sid)
        return await socket_ack(lambda: self.sockets.resume(user))

    async def on_typing(self, sid: str, data: Any = None) -> dict[str, Any]:
        user = await self._user(sid)
        return await socket_ack(lambda: self.sockets.agent_typing(user, data))

    async def on_wrap_up(self, sid: str, data: Any = None) -> dict[str, Any]:
        user = await self._user(sid)

        async def wrap() -> Contact:
            request = WrapUpRequest.model_validate(data)
            return await self.sockets.acd.wrap_up(
                user, request.contact_id, WrapUp(codes=request.codes, note=request.note)
            )

        return await socket_ack(wrap)


class _SupervisorNamespace(_DesktopNamespace):
    def __init__(self, sockets: DesktopSockets) -> None:
        super().__init__(SUPERVISOR_NS, sockets)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await self.save_session(sid, await self.sockets.authenticate(auth, Role.supervisor))
        await self.enter_room(sid, SUPERVISORS_ROOM)
        self.sockets.refresh_wallboard()

    async def on_wallboard(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await socket_ack(self.sockets.desktop.wallboard.snapshot)

    async def on_alerts(self, sid: str, data: Any = None) -> dict[str, Any]:
        async def alerts() -> AlertList:
            return AlertList(alerts=await self.sockets.desktop.wallboard.recent_alerts())

        return await socket_ack(alerts)

    async def on_force_state(self, sid: str, data: Any = None) -> dict[str, Any]:
        user = await self._user(sid)
        return await socket_ack(lambda: self.sockets.force_state(user, data))

    async def on_watch_call(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Follow a call's live transcript: ``transcript`` (finals) and ``transcript.partial`` events until
        ``unwatch_call``; the ack carries what was said so far."""

        async def watch() -> CallTranscriptSoFar:
            call_id = CallRef.model_validate(data).call_id
            so_far = await self.sockets.call_transcript(call_id)
            await self.enter_room(sid, call_room(call_id))
            return so_far

        return await socket_ack(watch)

    async def on_unwatch_call(self, sid: str, data: Any = None) -> dict[str, Any]:
        async def unwatch() -> CallRef:
            ref = CallRef.model_validate(data)
            await self.leave_room(sid, call_room(ref.call_id))
            return ref

        return await socket_ack(unwatch)
