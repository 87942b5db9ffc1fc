"""THREAD BOUNDARY — the only module that touches pjsua2.

One dedicated thread (``PjsuaThread``) creates the pjsua2 ``Endpoint`` (``threadCnt=0``,
``mainThreadOnly``, null audio device), then loops: ``libHandleEvents``, run queued commands, release what
finished. Every pjsua2 object is created, used and destroyed on that thread.

* asyncio → pjsua2: ``await thread.submit(fn)`` queues ``fn(engine)``, rings a doorbell so the thread
  wakes at once, and resolves with ``fn``'s result (or its exception) on the event loop. The doorbell is a
  CRLF keep-alive datagram (RFC 5626) sent to the endpoint's own SIP UDP port: pjsip consumes it silently,
  and it is the only way to wake the ``select`` inside ``libHandleEvents`` early.
* pjsua2 → asyncio: callbacks copy plain values into the frozen dataclasses below and hand them to the
  loop with ``loop.call_soon_threadsafe``. SIP callbacks run on this thread; media callbacks (audio frames,
  a player reaching its end) run on pjmedia's clock thread and only copy bytes or ids.
* Nothing returned to asyncio is a pjsua2 object: calls, players, recorders and taps are named by integer
  handles that mean something only to ``Engine``.

The wheel (PyPI ``pjsua2-python``) silently caps a process at a few concurrent calls; ``Engine`` measures
the real cap at start (``EndpointFacts.max_calls``) instead of trusting ``UaConfig.maxCalls``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pjsua2 as pj

from core.log import get_logger
from telephony.api import FRAME_BYTES, SAMPLE_RATE, CallError, DtmfMethod

log = get_logger(__name__)

T = TypeVar("T")

_PJ_ETOOMANY = 70010
_DOORBELL = b"\r\n\r\n"
_CODEC_PRIORITY = {"G722": 200, "PCMA": 190, "PCMU": 189}
# libHandleEvents returns at the latest after this long (commands ring the doorbell, SIP wakes it anyway);
# with calls up it also bounds how late jobs pjsua2 posts from the media thread run
_POLL_MS = 20
_IDLE_POLL_MS = 200
# how long a disconnected player or tap lives on (a media clock tick is 20 ms; see Engine._graves)
GRAVE_SECONDS = 0.5


# ------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class SipCredential:
    """Digest credentials used when a server challenges us (401/407): trunk, registrar, PBX."""

    realm: str
    username: str
    password: str


@dataclass(frozen=True)
class EndpointConfig:
    bind_address: str = "127.0.0.1"
    sip_port: int = 0  # 0: any free port (tests)
    transports: tuple[str, ...] = ("udp", "tcp")
    public_address: str | None = None  # put in Contact/SDP instead of bind_address (NAT)
    rtp_port: int = 20000
    rtp_port_count: int = 100
    max_calls: int = 256  # asked for; the wheel clamps it, the probe tells what we got
    user: str = "huiliu"
    user_agent: str = "Huiliu telephony"
    outbound_proxy: str | None = None  # e.g. "sip:127.0.0.1:5060;lr" — out-of-dialog requests go there
    credentials: tuple[SipCredential, ...] = ()
    registrar: str | None = None  # register the account there (SIP trunk / PBX that expects it)
    register_contact: str | None = None  # Contact to register instead of ours (the SIP front's address)
    log_level: int = 1  # pjsip log level passed to our logger (0-6)
    prompt_dir: Path | None = None  # where PCM prompts are written as WAV files


@dataclass(frozen=True)
class EndpointFacts:
    """What the endpoint really got: measured call capacity and the bound SIP port."""

    max_calls: int
    sip_port: int
    version: str


# ------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class IncomingCall:
    handle: int
    call_id: str
    remote_uri: str
    local_uri: str
    source: str  # "ip:port" the INVITE came from
    invite: str  # the whole INVITE as received


@dataclass(frozen=True)
class CallStateChanged:
    handle: int
    state: str  # calling | incoming | early | connecting | confirmed | disconnected
    status: int  # last SIP status code
    reason: str
    connect_seconds: float
    total_seconds: float
    sent: str = ""  # the message we sent that caused the change (our 200 OK, with our To-tag)


@dataclass(frozen=True)
class MediaStateChanged:
    handle: int
    active: bool
    held: bool


@dataclass(frozen=True)
class DtmfReceived:
    handle: int
    digit: str
    method: DtmfMethod


@dataclass(frozen=True)
class PlaybackEnded:
    handle: int
    player: int


@dataclass(frozen=True)
class TransferProgress:
    handle: int
    status: int
    reason: str
    final: bool


@dataclass(frozen=True)
class IncomingRejected:
    """pjsua refused an INVITE itself (typically 486: this process is at its call cap)."""

    call_id: str
    status: int
    reason: str


EndpointEvent = (
    IncomingCall
    | CallStateChanged
    | MediaStateChanged
    | DtmfReceived
    | PlaybackEnded
    | TransferProgress
    | IncomingRejected
)
EventListener = Callable[[EndpointEvent], None]


# ------------------------------------------------------------------------------------ media sinks


def _vector_bytes_slow(vector: Any) -> bytes:
    return bytes(vector)


def _vector_bytes_direct(vector: Any) -> bytes:
    """The bytes of a SWIG ``ByteVector`` read straight from its storage (libstdc++ ``std::vector`` starts
    with its begin and end pointers): ~2 µs for a 20 ms frame, where ``bytes(vector)`` iterates element by
    element through SWIG (~250 µs) — too slow to tap every call."""
    begin, end = ctypes.cast(int(vector.this), ctypes.POINTER(ctypes.c_void_p * 2)).contents
    if not begin or not end:
        return b""
    return ctypes.string_at(begin, end - begin)


def _choose_vector_bytes() -> Callable[[Any], bytes]:
    probe = os.urandom(FRAME_BYTES)
    try:
        if (
            _vector_bytes_direct(pj.ByteVector(probe)) == probe
            and _vector_bytes_direct(pj.ByteVector()) == b""
        ):
            return _vector_bytes_direct
    except Exception:
        pass
    log.warning("pjsua.slow_frame_copy", reason="ByteVector layout not recognised")
    return _vector_bytes_slow


vector_bytes = _choose_vector_bytes()


class FrameSink:
    """Plain-Python audio exchange between a call's tap port (media thread) and asyncio.

    ``deliver`` is called on the media thread with each received 20 ms frame and hands them to the event
    loop ``batch`` at a time (one thread hop per 100 ms instead of per 20 ms: with a tap on every call the
    hops were most of the cost); ``take_pending`` gives the rest to the loop's thread when the call ends.
    ``next_outgoing`` is called there for
    each frame to send. Neither touches pjsua2; ``deque`` appends/pops are atomic.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_frames: Callable[[list[bytes]], None], batch: int = 5
    ) -> None:
        self._loop = loop
        self._on_frames = on_frames
        self._batch = batch
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self.outgoing: collections.deque[bytes] = collections.deque()

    def deliver(self, frame: bytes) -> None:
        with self._lock:
            self._pending.append(frame)
            if len(self._pending) < self._batch:
                return
            frames, self._pending = self._pending, []
        self._hand_over(frames)

    def take_pending(self) -> list[bytes]:
        with self._lock:
            frames, self._pending = self._pending, []
        return frames

    def _hand_over(self, frames: list[bytes]) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._on_frames, frames)

    def next_outgoing(self) -> bytes | None:
        try:
            return self.outgoing.popleft()
        except IndexError:
            return None

    def queue_pcm(self, pcm: bytes) -> None:
        for start in range(0, len(pcm), FRAME_BYTES):
            chunk = pcm[start : start + FRAME_BYTES]
            self.outgoing.append(chunk.ljust(FRAME_BYTES, b"\0"))


# ------------------------------------------------------------------------- pjsua2 subclasses


class _LogWriter(pj.LogWriter):  # type: ignore[misc]
    def write(self, entry: Any) -> None:
        try:
            message = str(entry.msg).rstrip()
            if entry.level <= 1:
                log.error("pjsip", message=message)
            elif entry.level == 2:
                log.warning("pjsip", message=message)
            else:
                log.debug("pjsip", message=message)
        except Exception:  # never let an exception cross into C++
            pass


class _Account(pj.Account):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def onIncomingCall(self, prm: Any) -> None:
        try:
            self.engine._incoming(self, prm)
        except Exception:
            log.exception("pjsua.incoming_failed")

    def onRegState(self, prm: Any) -> None:
        try:
            log.info(
                "sip.registration", status=int(prm.code), reason=str(prm.reason), expiration=prm.expiration
            )
        except Exception:
            pass


class _Endpoint(pj.Endpoint):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def onRejectedIncomingCall(self, prm: Any) -> None:
        try:
            self.engine.post(IncomingRejected(str(prm.callId), int(prm.statusCode), str(prm.reason)))
        except Exception:
            pass


class _Call(pj.Call):  # type: ignore[misc]
    def __init__(self, engine: Engine, handle: int, account: Any, call_id: int = -1) -> None:
        if call_id == -1:
            super().__init__(account)
        else:
            super().__init__(account, call_id)
        self.engine = engine
        self.handle = handle
        self.audio: Any = None  # the call's AudioMedia while media is active
        self.players: dict[int, _Player] = {}
        self.recorders: dict[int, Any] = {}
        self.taps: dict[int, _TapPort] = {}
        self.bridged: set[int] = set()

    def onCallState(self, prm: Any) -> None:
        try:
            info = self.getInfo()
            state = _STATE_NAMES.get(info.state, "unknown")
            sent = ""
            if state == "connecting" and info.role == pj.PJSIP_ROLE_UAS:
                cause = prm.e  # our 200 OK going out
                if (
                    cause.type == pj.PJSIP_EVENT_TSX_STATE
                    and cause.body.tsxState.type == pj.PJSIP_EVENT_TX_MSG
                ):
                    sent = str(cause.body.tsxState.src.tdata.wholeMsg)
            event = CallStateChanged(
                self.handle,
                state,
                int(info.lastStatusCode),
                str(info.lastReason),
                info.connectDuration.sec + info.connectDuration.msec / 1000,
                info.totalDuration.sec + info.totalDuration.msec / 1000,
                sent,
            )
            if state == "disconnected":
                self.engine._ended(self)
            self.engine.post(event)
        except Exception:
            log.exception("pjsua.call_state_failed", handle=self.handle)

    def onCallMediaState(self, prm: Any) -> None:
        try:
            self.engine._media_changed(self)
        except Exception:
            log.exception("pjsua.media_state_failed", handle=self.handle)

    def onDtmfDigit(self, prm: Any) -> None:
        try:
            method = (
                DtmfMethod.sip_info if prm.method == pj.PJSUA_DTMF_METHOD_SIP_INFO else DtmfMethod.rfc2833
            )
            self.engine.post(DtmfReceived(self.handle, str(prm.digit).upper(), method))
        except Exception:
            log.exception("pjsua.dtmf_failed", handle=self.handle)

    def onCallTransferStatus(self, prm: Any) -> None:
        try:
            final = bool(prm.finalNotify) or int(prm.statusCode) >= 200
            self.engine.post(TransferProgress(self.handle, int(prm.statusCode), str(prm.reason), final))
            if final:
                prm.cont = False
        except Exception:
            log.exception("pjsua.transfer_status_failed", handle=self.handle)


class _Player(pj.AudioMediaPlayer):  # type: ignore[misc]
    def __init__(self, engine: Engine, handle: int, player: int) -> None:
        super().__init__()
        self.engine = engine
        self.handle = handle
        self.player = player
        self.cleanup: Path | None = None

    def onEof2(self) -> None:
        # media thread: only note it; the pjsua thread stops and destroys the player
        try:
            self.engine.finished_players.append((self.handle, self.player))
        except Exception:
            pass


class _TapPort(pj.AudioMediaPort):  # type: ignore[misc]
    """A conference port whose audio goes to, and comes from, a ``FrameSink``.

    A tap is never destroyed while the endpoint runs; it is reused (``Engine._spare_taps``). pjsua2 2.15's
    ``~AudioMediaPort`` only *queues* the port's removal from the conference bridge (done by the clock
    thread on its next tick) and frees the port at once, and the bridge calls every port, connected or
    not, each 20 ms: the clock thread then called into a freed object, which corrupted the Python heap
    (workers died with SIGSEGV in libpython). An idle tap costs one empty callback per tick."""

    def __init__(self) -> None:
        super().__init__()
        self.sink: FrameSink | None = None
        self.receiving = False
        self.sending = False

    def onFrameReceived(self, frame: Any) -> None:
        # media thread
        try:
            sink = self.sink
            if sink is not None and frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size:
                sink.deliver(vector_bytes(frame.buf))
        except Exception:
            pass

    def onFrameRequested(self, frame: Any) -> None:
        # media thread
        try:
            sink = self.sink
            pcm = None if sink is None else sink.next_outgoing()
            if pcm is None:
                frame.type = pj.PJMEDIA_FRAME_TYPE_NONE
                frame.size = 0
                return
            frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            frame.buf = pj.ByteVector(pcm)
            frame.size = len(pcm)
        except Exception:
            pass


_STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "null",
    pj.PJSIP_INV_STATE_CALLING: "calling",
    pj.PJSIP_INV_STATE_INCOMING: "incoming",
    pj.PJSIP_INV_STATE_EARLY: "early",
    pj.PJSIP_INV_STATE_CONNECTING: "connecting",
    pj.PJSIP_INV_STATE_CONFIRMED: "confirmed",
    pj.PJSIP_INV_STATE_DISCONNECTED: "disconnected",
}


def _error(exc: Exception) -> CallError:
    """A plain exception for asyncio: pjsua2's ``Error`` must not leave this thread."""
    if isinstance(exc, pj.Error):
        return CallError(f"{exc.title}: {exc.reason} ({exc.status})")
    if isinstance(exc, CallError):
        return exc
    return CallError(f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------------------ engine


class Engine:
    """The pjsua2 endpoint and everything attached to it. Its methods run on the pjsua thread only —
    asyncio reaches them through ``PjsuaThread.submit``."""

    def __init__(self, config: EndpointConfig, post: Callable[[EndpointEvent], None]) -> None:
        self.config = config
        self.post = post
        self.ep: Any = None
        self.account: Any = None
        self.calls: dict[int, _Call] = {}
        self.finished_players: collections.deque[tuple[int, int]] = collections.deque()
        self._graveyard: list[Any] = []  # recorders of ended calls, destroyed by the next reap()
        # Players (pjmedia calls their onEof2 from its media thread) die GRAVE_SECONDS after they were
        # disconnected, never at once: a callback already running when the port left the bridge must not
        # find its object freed (pjproject #4059). Taps go back to _spare_taps after the same wait.
        self._graves: collections.deque[tuple[float, Any]] = collections.deque()
        self._spare_taps: list[_TapPort] = []  # see _TapPort: never destroyed while the endpoint runs
        self.taps_made = 0
        self._stale_files: list[Path] = []
        self._next_handle = 0
        self._log_writer = _LogWriter()
        self.udp_port = 0

    # -- life cycle

    def start(self) -> EndpointFacts:
        config = self.config
        self.ep = _Endpoint(self)
        self.ep.libCreate()
        ep_cfg = pj.EpConfig()
        ua = ep_cfg.uaConfig
        ua.threadCnt = 0
        ua.mainThreadOnly = True
        ua.maxCalls = config.max_calls
        ua.userAgent = config.user_agent
        if config.outbound_proxy:
            ua.outboundProxies.append(config.outbound_proxy)
        ep_cfg.logConfig.level = config.log_level
        ep_cfg.logConfig.consoleLevel = 0
        ep_cfg.logConfig.msgLogging = 0
        ep_cfg.logConfig.writer = self._log_writer
        med = ep_cfg.medConfig
        med.clockRate = SAMPLE_RATE
        med.sndClockRate = SAMPLE_RATE
        med.channelCount = 1
        med.audioFramePtime = 20
        med.ecTailLen = 0  # no echo canceller: nothing here plays into a microphone
        med.noVad = True
        med.quality = 4  # resampler quality: cheap enough for many calls, fine for telephone audio
        # RTP shares the SIP sockets' ioqueue, polled by this thread's libHandleEvents: no media worker thread
        # waking 100 times a second in every idle worker (a third of an idle pool's CPU)
        med.hasIoqueue = False
        med.threadCnt = 0
        self.ep.libInit(ep_cfg)
        self.ep.audDevManager().setNullDev()
        for codec in self.ep.codecEnum2():
            # telephone codecs first (cheap; G.722 is wideband for ASR); the rest only if the caller insists
            fallback = 1 if codec.priority else 0
            self.ep.codecSetPriority(
                codec.codecId, _CODEC_PRIORITY.get(codec.codecId.split("/")[0], fallback)
            )

        transports = []
        for name in config.transports:
            kind = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP}[name]
            tcfg = pj.TransportConfig()
            tcfg.boundAddress = config.bind_address
            tcfg.port = self.udp_port or config.sip_port  # TCP takes the port UDP got
            if config.public_address:
                tcfg.publicAddress = config.public_address
            transport_id = self.ep.transportCreate(kind, tcfg)
            transports.append(transport_id)
            if name == "udp" or not self.udp_port:
                self.udp_port = int(str(self.ep.transportGetInfo(transport_id).localName).rsplit(":", 1)[1])
        self.ep.libStart()

        acfg = pj.AccountConfig()
        host = config.public_address or config.bind_address
        acfg.idUri = f"sip:{config.user}@{host}:{self.udp_port}"
        acfg.mediaConfig.transportConfig.port = config.rtp_port
        acfg.mediaConfig.transportConfig.portRange = config.rtp_port_count
        acfg.mediaConfig.transportConfig.boundAddress = config.bind_address
        if config.public_address:
            acfg.mediaConfig.transportConfig.publicAddress = config.public_address
        for credential in config.credentials:
            acfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", credential.realm, credential.username, 0, credential.password)
            )
        if config.registrar:
            acfg.regConfig.registrarUri = config.registrar
            acfg.regConfig.registerOnAdd = True
            if config.register_contact:
                acfg.sipConfig.contactForced = config.register_contact
        else:
            acfg.regConfig.registerOnAdd = False
        self.account = _Account(self)
        self.account.create(acfg, True)
        max_calls = self._probe_capacity()
        return EndpointFacts(max_calls, self.udp_port, str(self.ep.libVersion().full))

    def _probe_capacity(self) -> int:
        """Place calls to a closed local TCP port until pjsua refuses (PJ_ETOOMANY); hang them up."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
            closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting to it is refused at once
            port = closed.getsockname()[1]
            transport = "tcp" if "tcp" in self.config.transports else "udp"
            uri = f"sip:capacity-probe@127.0.0.1:{port};transport={transport}"
            probes: list[Any] = []
            try:
                while len(probes) < self.config.max_calls:
                    probe = pj.Call(self.account)
                    probe.makeCall(uri, pj.CallOpParam(True))
                    probes.append(probe)
            except pj.Error as exc:
                if exc.status != _PJ_ETOOMANY:
                    raise
            for probe in probes:
                with contextlib.suppress(pj.Error):
                    probe.hangup(pj.CallOpParam(True))
            deadline = time.monotonic() + 5
            while any(probe.isActive() for probe in probes) and time.monotonic() < deadline:
                self.ep.libHandleEvents(10)
        count = len(probes)
        del probes
        return count

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.ep.hangupAllCalls()
            deadline = time.monotonic() + 2
            while self.calls and time.monotonic() < deadline:
                self.ep.libHandleEvents(20)
                self.reap()
        taps = [port for _, port in self._graves if isinstance(port, _TapPort)] + self._spare_taps
        taps += [tap for call in self.calls.values() for tap in call.taps.values()]
        self.calls.clear()
        self._graveyard.clear()
        self._graves.clear()
        self.account = None
        with contextlib.suppress(Exception):
            self.ep.libDestroy()
        for tap in taps:  # the bridge is gone: deleting one now would trip pjmedia's asserts, so they stay
            tap.thisown = False
        self._spare_taps.clear()

    def reap(self) -> None:
        """Stop players that reached their end; destroy what ended calls left (outside any callback)."""
        if not (self.finished_players or self._graveyard or self._graves or self._stale_files):
            return  # the common case: the loop comes round hundreds of times a second
        while self.finished_players:
            handle, player = self.finished_players.popleft()
            call = self.calls.get(handle)
            if call is not None:
                self._drop_player(call, player)
                self.post(PlaybackEnded(handle, player))
        if self._graveyard:
            self._graveyard.clear()  # recorders are destroyed here, on this thread
        cutoff = time.monotonic() - GRAVE_SECONDS
        while self._graves and self._graves[0][0] <= cutoff:
            _, port = self._graves.popleft()  # players die, once no callback can be running in them
            if isinstance(port, _TapPort):
                self._spare_taps.append(port)  # taps wait for the next call (see _TapPort)
        while self._stale_files:
            self._stale_files.pop().unlink(missing_ok=True)

    # -- callbacks (pjsua thread)

    def _new_handle(self) -> int:
        self._next_handle += 1
        return self._next_handle

    def _incoming(self, account: Any, prm: Any) -> None:
        handle = self._new_handle()
        call = _Call(self, handle, account, prm.callId)
        self.calls[handle] = call
        info = call.getInfo()
        self.post(
            IncomingCall(
                handle,
                str(info.callIdString),
                str(info.remoteUri),
                str(info.localUri),
                str(prm.rdata.srcAddress),
                str(prm.rdata.wholeMsg),
            )
        )

    def _ended(self, call: _Call) -> None:
        """In the call's DISCONNECTED callback. pjsua can give this call's id to the next INVITE before the
        thread comes round again, and a ``Call`` object destroyed after that hangs the new call up (its
        destructor hangs up "its" id: a 603 to a stranger). So the object goes with this callback; what
        was attached to it is released by ``reap``, outside any callback."""
        for player in call.players.values():
            if player.cleanup is not None:
                self._stale_files.append(player.cleanup)
        self._graveyard.extend(call.recorders.values())
        self._bury(*call.players.values())
        self._retire_taps(*call.taps.values())
        call.players.clear()
        call.recorders.clear()
        call.taps.clear()
        call.bridged.clear()
        call.audio = None
        self.calls.pop(call.handle, None)

    def _media_changed(self, call: _Call) -> None:
        info = call.getInfo()
        audio = None
        held = False
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if media.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                audio = call.getAudioMedia(index)
            held = media.status in (pj.PJSUA_CALL_MEDIA_LOCAL_HOLD, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD)
            break
        call.audio = audio
        if audio is not None:
            self._connect_all(call)
        self.post(MediaStateChanged(call.handle, audio is not None, held))

    def _connect_all(self, call: _Call) -> None:
        """(Re)connect everything attached to the call; a re-INVITE can give it a new conference slot."""
        audio = call.audio
        for player in call.players.values():
            player.startTransmit(audio)
        for recorder in call.recorders.values():
            audio.startTransmit(recorder)
        for tap in call.taps.values():
            if tap.receiving:
                audio.startTransmit(tap)
            if tap.sending:
                tap.startTransmit(audio)
        for other_handle in call.bridged:
            other = self.calls.get(other_handle)
            if other is not None and other.audio is not None:
                audio.startTransmit(other.audio)
                other.audio.startTransmit(audio)

    # -- commands (pjsua thread, called through PjsuaThread.submit)

    def _call(self, handle: int) -> _Call:
        call = self.calls.get(handle)
        if call is None:
            raise CallError(f"no call {handle} on this endpoint")
        return call

    def answer(self, handle: int, status: int = 200) -> None:
        prm = pj.CallOpParam(True)
        prm.statusCode = status
        self._call(handle).answer(prm)

    def hangup(self, handle: int, status: int = 0) -> None:
        call = self.calls.get(handle)
        if call is None or not call.isActive():
            return
        prm = pj.CallOpParam(True)
        if status:
            prm.statusCode = status
        call.hangup(prm)

    def make_call(self, uri: str, headers: dict[str, str]) -> tuple[int, str]:
        handle = self._new_handle()
        call = _Call(self, handle, self.account)
        prm = pj.CallOpParam(True)
        for name, value in headers.items():
            header = pj.SipHeader()
            header.hName = name
            header.hValue = value
            prm.txOption.headers.append(header)
        self.calls[handle] = call
        try:
            call.makeCall(uri, prm)
        except Exception:
            self.calls.pop(handle, None)
            raise
        return handle, str(call.getInfo().callIdString)

    def play(self, handle: int, path: Path, cleanup: bool = False) -> int:
        call = self._call(handle)
        player_id = self._new_handle()
        player = _Player(self, handle, player_id)
        player.createPlayer(str(path), pj.PJMEDIA_FILE_NO_LOOP)
        if cleanup:
            player.cleanup = path
        call.players[player_id] = player
        if call.audio is not None:
            player.startTransmit(call.audio)
        return player_id

    def stop_player(self, handle: int, player: int) -> bool:
        call = self.calls.get(handle)
        return call is not None and self._drop_player(call, player)

    def _drop_player(self, call: _Call, player_id: int) -> bool:
        player = call.players.pop(player_id, None)
        if player is None:
            return False
        if call.audio is not None:
            with contextlib.suppress(pj.Error):
                player.stopTransmit(call.audio)
        if player.cleanup is not None:
            player.cleanup.unlink(missing_ok=True)
        self._bury(player)
        return True

    def _bury(self, *ports: Any) -> None:
        now = time.monotonic()
        self._graves.extend((now, port) for port in ports)

    def start_recording(self, handle: int, path: Path) -> int:
        call = self._call(handle)
        recorder_id = self._new_handle()
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(str(path))
        call.recorders[recorder_id] = recorder
        if call.audio is not None:
            call.audio.startTransmit(recorder)
        return recorder_id

    def stop_recording(self, handle: int, recorder_id: int) -> None:
        call = self.calls.get(handle)
        if call is None:
            return
        recorder = call.recorders.pop(recorder_id, None)
        if recorder is not None and call.audio is not None:
            with contextlib.suppress(pj.Error):
                call.audio.stopTransmit(recorder)
        # the recorder's destructor (here, on this thread) finalizes the WAV header
        del recorder

    def attach_tap(self, handle: int, sink: FrameSink, *, receive: bool, send: bool) -> int:
        call = self._call(handle)
        tap_id = self._new_handle()
        tap = self._take_tap()
        tap.sink = sink
        tap.receiving = receive
        tap.sending = send
        call.taps[tap_id] = tap
        if call.audio is not None:
            self._connect_all(call)
        return tap_id

    def detach_tap(self, handle: int, tap_id: int) -> None:
        call = self.calls.get(handle)
        if call is None:
            return
        tap = call.taps.pop(tap_id, None)
        if tap is not None and call.audio is not None:
            # separately: a tap that only received must still stop, and one that only sent must too
            with contextlib.suppress(pj.Error):
                call.audio.stopTransmit(tap)
            with contextlib.suppress(pj.Error):
                tap.stopTransmit(call.audio)
        if tap is not None:
            self._retire_taps(tap)

    def _retire_taps(self, *taps: _TapPort) -> None:
        for tap in taps:
            tap.sink = None  # a frame the bridge is still handling goes nowhere
        self._bury(*taps)  # spare again once the bridge has processed the disconnects (reap)

    def _take_tap(self) -> _TapPort:
        if self._spare_taps:
            return self._spare_taps.pop()
        tap = _TapPort()
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.init(pj.PJMEDIA_FORMAT_PCM, SAMPLE_RATE, 1, 20_000, 16)
        self.taps_made += 1
        tap.createPort(f"tap{self.taps_made}", fmt)
        return tap

    def bridge(self, handle: int, other_handle: int) -> None:
        call, other = self._call(handle), self._call(other_handle)
        call.bridged.add(other_handle)
        other.bridged.add(handle)
        if call.audio is not None and other.audio is not None:
            call.audio.startTransmit(other.audio)
            other.audio.startTransmit(call.audio)

    def transfer(self, handle: int, target: str) -> None:
        self._call(handle).xfer(target, pj.CallOpParam(True))

    def transfer_replaces(self, handle: int, consult_handle: int) -> None:
        self._call(handle).xferReplaces(self._call(consult_handle), pj.CallOpParam(True))

    def hold(self, handle: int) -> None:
        self._call(handle).setHold(pj.CallOpParam(True))

    def unhold(self, handle: int) -> None:
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        self._call(handle).reinvite(prm)

    def send_dtmf(self, handle: int, digits: str, method: DtmfMethod) -> None:
        call = self._call(handle)
        if method is DtmfMethod.rfc2833:
            call.dialDtmf(digits)
            return
        prm = pj.CallSendDtmfParam()
        prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
        prm.digits = digits
        call.sendDtmf(prm)

    def active_calls(self) -> int:
        return len(self.calls)


# ------------------------------------------------------------------------------------------ thread


@dataclass
class _Command:
    fn: Callable[[Engine], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop = field(repr=False)


class PjsuaThread:
    """Owns the pjsua2 thread. ``start``/``submit``/``stop`` are called from the event loop."""

    def __init__(self, config: EndpointConfig, listener: EventListener) -> None:
        self.config = config
        self._listener = listener
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._doorbell = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._doorbell.setblocking(False)
        self._doorbell_address: tuple[str, int] | None = None
        self.facts: EndpointFacts | None = None

    async def start(self) -> EndpointFacts:
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[EndpointFacts] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="pjsua", daemon=True)
        self._thread.start()
        self.facts = await ready
        host = self.config.bind_address
        self._doorbell_address = ("127.0.0.1" if host in ("0.0.0.0", "") else host, self.facts.sip_port)
        return self.facts

    async def submit(self, fn: Callable[[Engine], T]) -> T:
        """Run ``fn(engine)`` on the pjsua thread; its exceptions come back as ``CallError``."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            raise CallError("the telephony engine is not running")
        future: asyncio.Future[T] = self._loop.create_future()
        self._commands.put(_Command(fn, future, self._loop))
        self._ring()
        return await future

    def _ring(self) -> None:
        if self._doorbell_address is not None:
            with contextlib.suppress(OSError):
                self._doorbell.sendto(_DOORBELL, self._doorbell_address)

    async def stop(self) -> None:
        self._stopping.set()
        self._ring()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        self._doorbell.close()

    def _post(self, event: EndpointEvent) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._listener, event)

    def _run(self, ready: asyncio.Future[EndpointFacts]) -> None:
        assert self._loop is not None
        loop = self._loop
        engine = Engine(self.config, self._post)
        try:
            facts = engine.start()
        except Exception as exc:
            error = _error(exc)
            loop.call_soon_threadsafe(_settle, ready, None, error)
            with contextlib.suppress(Exception):
                engine.shutdown()
            return
        loop.call_soon_threadsafe(_settle, ready, facts, None)
        try:
            while not self._stopping.is_set():
                engine.ep.libHandleEvents(_POLL_MS if engine.calls else _IDLE_POLL_MS)
                engine.reap()
                self._drain(engine)
        finally:
            self._drain(engine)
            engine.shutdown()
            self._refuse_pending()

    def _refuse_pending(self) -> None:
        """Commands that arrived while the endpoint was shutting down fail instead of waiting forever."""
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            error = CallError("the telephony engine has stopped")
            with contextlib.suppress(RuntimeError):
                command.loop.call_soon_threadsafe(_settle, command.future, None, error)

    def _drain(self, engine: Engine) -> None:
        if self._commands.empty():
            return  # the common case, without raising and catching queue.Empty every time round
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                result = command.fn(engine)
            except Exception as exc:
                command.loop.call_soon_threadsafe(_settle, command.future, None, _error(exc))
            else:
                command.loop.call_soon_threadsafe(_settle, command.future, result, None)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
