"""The web softphone's media: a browser (WebRTC) ⇄ aiortc in the web process ⇄ the call's audio in the
telephony worker that owns the call (``telephony.media_relay``: 16 kHz PCM over Redis pub/sub, one channel
per side of the call).

Signalling rides on the user's Socket.IO connection. The page sends ``softphone_offer``
``{call_id, sdp, type: "offer"}`` (with every ICE candidate in it — aiortc does not trickle, so the page waits
for gathering to complete) and gets ``{ok: {sdp, type: "answer"}}``; ``softphone_hangup {call_id}`` closes
the leg (the call itself goes on: the agent may reconnect and attach again).

* On ``/agent`` the leg is the agent's: only the agent the call is connected to in the ACD may attach. The
  agent hears the caller (and a supervisor who whispers or barges); the caller hears the agent.
* On ``/supervisor`` the offer carries ``mode``: ``listen`` (hear both sides, say nothing), ``whisper``
  (the agent hears the supervisor, the caller does not) or ``barge`` (both hear the supervisor);
  ``softphone_mode {call_id, mode}`` switches without renegotiating. The agent is told (``supervision``
  event) and every start and change is in the audit log.

One leg per user and namespace: a new offer replaces the previous leg.

aioice gathers host candidates from every interface except loopback. ``use_host_addresses`` names them
instead (setting ``webrtc_host_addresses``): a server with several interfaces picks the one agents reach,
and the tests keep media on 127.0.0.1 inside a network namespace that has only ``lo``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import redis.asyncio as aioredis
import socketio
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from agent_desktop.models import Contact
from agent_desktop.socket import socket_ack
from core.auth import Role, User
from core.errors import Conflict, Forbidden, HuiliuError
from core.log import get_logger
from telephony.media_relay import Side, media_channel, valid_pcm

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import MediaStreamTrack

    from agent_desktop.softphone_media import CallAudioTrack

log = get_logger(__name__)


Mode = Literal["agent", "listen", "whisper", "barge"]
SupervisorMode = Literal["listen", "whisper", "barge"]

HEARS: dict[Mode, tuple[Side, ...]] = {
    "agent": ("caller", "whisper", "barge"),
    "listen": ("caller", "agent"),
    "whisper": ("caller", "agent"),
    "barge": ("caller", "agent"),
}
SPEAKS: dict[Mode, Side | None] = {"agent": "agent", "listen": None, "whisper": "whisper", "barge": "barge"}


class Authorize(Protocol):
    async def __call__(self, user: User, call_id: str, mode: Mode) -> str | None:
        """Raise (``Forbidden``…) unless ``user`` may carry the call's audio in ``mode``; make sure the
        call's worker relays its audio; return the id of the agent on the call (for supervision notices)."""


Notify = Callable[[str, dict[str, Any]], Awaitable[None]]
"""(agent user id, payload) → tell the agent's desktop about supervision."""

Audit = Callable[[User, str, str, dict[str, Any]], Awaitable[None]]
"""(actor, action, call id, details) → the audit trail."""


class SoftphoneError(HuiliuError):
    status = 400
    code = "softphone_failed"
    title = "The softphone could not connect"


class SoftphoneOffer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_id: str = Field(min_length=1, max_length=256)
    sdp: str = Field(min_length=10, max_length=20_000)
    type: Literal["offer"]
    mode: SupervisorMode | None = Field(default=None, description="Supervisors only; default listen")


class SoftphoneAnswer(BaseModel):
    sdp: str
    type: str = "answer"
    mode: Mode


class SoftphoneCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_id: str = Field(min_length=1, max_length=256)


class SoftphoneModeChange(SoftphoneCall):
    mode: SupervisorMode


class SoftphoneLegState(BaseModel):
    call_id: str
    active: bool
    mode: Mode | None = None


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Make aioice offer exactly these host candidates (empty: its own interface discovery)."""
    if not addresses:
        return
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [
            address
            for address in chosen
            if (":" in address and use_ipv6) or (":" not in address and use_ipv4)
        ]

    import aioice.ice

    aioice.ice.get_host_addresses = host_addresses


@dataclass
class _Leg:
    key: tuple[str, str]
    user: User
    call_id: str
    mode: Mode
    pc: RTCPeerConnection
    track: CallAudioTrack
    agent_id: str | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    frames_heard: int = 0
    frames_spoken: int = 0


class _Contacts(Protocol):
    contacts: Any

    async def connected_call(self, call_id: str) -> Contact | None: ...


class _Calls(Protocol):
    async def call(self, call_id: str) -> dict[str, Any] | None: ...


class _Control(Protocol):
    async def attach_media(self, call_id: str, *, wait: float = 5.0) -> None: ...


async def _connected_agent(contacts: _Contacts, call_id: str) -> str | None:
    connected = await contacts.connected_call(call_id)
    return connected.agent_id if connected is not None else None


def agents_own_their_calls(contacts: _Contacts) -> Callable[[User, str], Awaitable[None]]:
    """Who may act on a call (hang up, transfer, hold): a supervisor on any, an agent only on the call
    the ACD connected to them."""

    async def check(user: User, call_id: str) -> None:
        if user.allows(Role.supervisor) or await _connected_agent(contacts, call_id) == user.id:
            return
        mine = {"external_ref": call_id, "kind": "call", "agent_id": user.id, "status": "ended"}
        if await contacts.contacts.find_one(mine) is not None:  # it was theirs: say what happened
            raise Conflict(f"call {call_id} has ended", code="call_ended")
        raise Forbidden(f"call {call_id} is not connected to you", code="not_your_call")

    return check


def call_access(contacts: _Contacts, calls: _Calls, control: _Control) -> Authorize:
    """Agents: the call must be connected to them in the ACD. Supervisors: any live call. Then the call's
    worker is asked to relay its audio."""

    async def authorize(user: User, call_id: str, mode: Mode) -> str | None:
        agent_id = await _connected_agent(contacts, call_id)
        if mode == "agent":
            if agent_id != user.id:
                raise Forbidden(
                    f"call {call_id} is not connected to you; accept its offer first", code="not_your_call"
                )
        else:
            if not user.allows(Role.supervisor):
                raise Forbidden("listening to calls needs the supervisor role", code="forbidden_role")
            call = await calls.call(call_id)
            if call is None or call.get("status") != "active":
                raise Forbidden(f"call {call_id} is not live", code="call_not_live")
        await control.attach_media(call_id)
        return agent_id

    return authorize


class Softphone:
    """The web process's softphone legs."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        db_name: str,
        authorize: Authorize,
        notify: Notify | None = None,
        audit: Audit | None = None,
    ) -> None:
        self.redis = redis
        self.db_name = db_name
        self.authorize = authorize
        self.notify = notify
        self.audit = audit
        self._legs: dict[tuple[str, str], _Leg] = {}

    def attach(
        self, sio: socketio.AsyncServer, *, agent_ns: str = "/agent", supervisor_ns: str = "/supervisor"
    ) -> None:
        """Serve the softphone events on both namespaces (explicit handlers run before the namespace
        classes, whose ``on_connect`` has put the authenticated user in the session)."""
        for namespace in (agent_ns, supervisor_ns):
            self._serve(sio, namespace, supervising=namespace == supervisor_ns)

    def _serve(self, sio: socketio.AsyncServer, namespace: str, *, supervising: bool) -> None:
        async def user_of(sid: str) -> User:
            session = await sio.get_session(sid, namespace=namespace)
            user: User = session["user"]
            return user

        async def on_offer(sid: str, data: Any = None) -> dict[str, Any]:
            async def run() -> BaseModel:
                offer = SoftphoneOffer.model_validate(data)
                if not supervising and offer.mode is not None:
                    raise Forbidden("listen, whisper and barge are for supervisors", code="forbidden_role")
                mode: Mode = (offer.mode or "listen") if supervising else "agent"
                return await self.answer(await user_of(sid), namespace, offer, mode)

            return await socket_ack(run)

        async def on_mode(sid: str, data: Any = None) -> dict[str, Any]:
            async def run() -> BaseModel:
                change = SoftphoneModeChange.model_validate(data)
                return await self.change_mode(await user_of(sid), namespace, change.call_id, change.mode)

            return await socket_ack(run)

        async def on_hangup(sid: str, data: Any = None) -> dict[str, Any]:
            async def run() -> BaseModel:
                request = SoftphoneCall.model_validate(data)
                return await self.hangup(await user_of(sid), namespace, request.call_id)

            return await socket_ack(run)

        sio.on("softphone_offer", on_offer, namespace=namespace)
        sio.on("softphone_hangup", on_hangup, namespace=namespace)
        if supervising:
            sio.on("softphone_mode", on_mode, namespace=namespace)

    def leg(self, user_id: str, namespace: str) -> _Leg | None:
        return self._legs.get((user_id, namespace))

    async def answer(self, user: User, namespace: str, offer: SoftphoneOffer, mode: Mode) -> SoftphoneAnswer:
        agent_id = await self.authorize(user, offer.call_id, mode)
        key = (user.id, namespace)
        if (previous := self._legs.get(key)) is not None:
            await self._close(previous)
        from agent_desktop import softphone_media  # aiortc only once someone uses the softphone

        pc = softphone_media.new_peer()
        leg = _Leg(key, user, offer.call_id, mode, pc, softphone_media.CallAudioTrack(), agent_id)
        self._legs[key] = leg

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                leg.tasks.append(asyncio.create_task(self._speak(leg, track), name="softphone-speak"))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("softphone.state", call_id=leg.call_id, user_id=user.id, state=pc.connectionState)
            if pc.connectionState in ("failed", "closed") and self._legs.get(key) is leg:
                await self._close(leg)

        try:
            pc.addTrack(leg.track)
            await pc.setRemoteDescription(softphone_media.offer(offer.sdp))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError and friends for SDP it cannot use
            await self._close(leg)
            raise SoftphoneError(f"the offer could not be used: {exc}") from None
        leg.tasks.append(asyncio.create_task(self._hear(leg), name="softphone-hear"))
        log.info("softphone.attached", call_id=offer.call_id, user_id=user.id, mode=mode)
        if mode != "agent":
            await self._supervision(leg, "supervise_call")
        description = pc.localDescription
        return SoftphoneAnswer(sdp=description.sdp, type=description.type, mode=mode)

    async def change_mode(
        self, user: User, namespace: str, call_id: str, mode: SupervisorMode
    ) -> SoftphoneLegState:
        leg = self._legs.get((user.id, namespace))
        if leg is None or leg.call_id != call_id or leg.mode == "agent":
            raise Forbidden(f"you are not supervising call {call_id}", code="not_supervising")
        leg.mode = mode
        await self._supervision(leg, "supervise_call_mode")
        return SoftphoneLegState(call_id=call_id, active=True, mode=mode)

    async def hangup(self, user: User, namespace: str, call_id: str | None = None) -> SoftphoneLegState:
        """Close the user's leg (only if it carries ``call_id`` when one is given)."""
        leg = self._legs.get((user.id, namespace))
        if leg is None or (call_id is not None and leg.call_id != call_id):
            return SoftphoneLegState(call_id=call_id or "", active=False)
        await self._close(leg)
        if leg.mode != "agent":
            await self._supervision(leg, "supervise_call_end", ended=True)
        return SoftphoneLegState(call_id=leg.call_id, active=False, mode=leg.mode)

    async def close(self) -> None:
        for leg in list(self._legs.values()):
            await self._close(leg)

    async def _supervision(self, leg: _Leg, action: str, *, ended: bool = False) -> None:
        details = {"mode": leg.mode, "agent_id": leg.agent_id}
        if self.audit is not None:
            await self.audit(leg.user, action, leg.call_id, details)
        if self.notify is not None and leg.agent_id is not None:
            payload = {
                "call_id": leg.call_id,
                "mode": None if ended else leg.mode,
                "supervisor": leg.user.display_name or leg.user.username,
            }
            with contextlib.suppress(Exception):  # a notice that did not go out never breaks the call
                await self.notify(leg.agent_id, payload)

    async def _close(self, leg: _Leg) -> None:
        if self._legs.get(leg.key) is leg:
            del self._legs[leg.key]
        for task in leg.tasks:
            task.cancel()
        for task in leg.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        leg.track.stop()
        await leg.pc.close()
        log.info(
            "softphone.closed",
            call_id=leg.call_id,
            user_id=leg.user.id,
            mode=leg.mode,
            frames_heard=leg.frames_heard,
            frames_spoken=leg.frames_spoken,
        )

    async def _hear(self, leg: _Leg) -> None:
        """Feed the leg's track from the sides its mode hears."""
        channels = {media_channel(self.db_name, leg.call_id, side).encode(): side for side in HEARS[leg.mode]}
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*channels)
            while True:
                try:
                    message = await pubsub.get_message(timeout=1.0)
                except (RedisError, OSError) as exc:
                    log.warning("softphone.media_lost", call_id=leg.call_id, error=str(exc))
                    await asyncio.sleep(0.5)
                    continue
                pcm = valid_pcm(message.get("data")) if message else None
                side = channels.get(message.get("channel", b"")) if message else None
                if pcm is not None and side is not None:
                    leg.frames_heard += 1
                    leg.track.feed(side, pcm)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _speak(self, leg: _Leg, track: MediaStreamTrack) -> None:
        """The browser's microphone, as 16 kHz mono frames, onto the side the leg's mode speaks on."""
        from agent_desktop import softphone_media

        async for chunk in softphone_media.microphone_frames(track):
            side = SPEAKS[leg.mode]  # read per frame: a supervisor may switch listen → whisper → barge
            if side is None:
                continue
            leg.frames_spoken += 1
            with contextlib.suppress(RedisError, OSError):
                await self.redis.publish(media_channel(self.db_name, leg.call_id, side), chunk)
