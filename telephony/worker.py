"""A telephony worker process: one pjsua2 endpoint on its own SIP port, as many calls as it can hold.

``python -m telephony.worker --name w0 --sip-port 5070 --rtp-port 20000 --rtp-count 200`` (started by
``huiliu telephony``, see ``telephony.pool``). It

* answers every inbound INVITE with the handler the router picks for the dialed number (404 if none),
  turning each call step into timeline facts (``telephony.ledger``);
* heartbeats every ``telephony_heartbeat_seconds``: under a pool it writes its state to a status file and
  the pool writes all its workers' heartbeat documents in one command; alone (or orphaned) it writes its
  own. When the heartbeats stop (the process died or hangs), any node's sweeper — or any web process's,
  when the whole node died — ends this worker's calls with cause ``node_lost``;
* takes commands for its calls (hang up, transfer, hold, DTMF, media for a web softphone) and places the
  calls agents dial, from its Redis list ``huiliu:telephony:commands:<id>`` (``telephony.control.CallControl``
  sends them);
* on SIGTERM refuses new calls (503: the SIP front tries another worker), lets the calls it has finish for
  up to ``telephony_drain_seconds``, then hangs up the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import faulthandler
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.aio import stop_tasks
from core.bus import EventBus, connect_redis
from core.db import Database, utcnow
from core.log import configure_logging, get_logger
from core.settings import Settings, load_settings
from omnichannel import Omnichannel
from telephony.api import CallEnded, CallHandler, CallRouter, Direction, HangupCause
from telephony.calls import PjsuaCall, UnrecordedCall
from telephony.consult import Consultations, ConsultError
from telephony.control import COMMANDS_KEY
from telephony.ledger import CallFacts, CallLedger
from telephony.media_relay import relay_call_audio
from telephony.pjsua_thread import (
    CallStateChanged,
    EndpointConfig,
    EndpointEvent,
    EndpointFacts,
    IncomingCall,
    IncomingRejected,
    PjsuaThread,
    SipCredential,
)
from telephony.routing import ManagedRouter, RouterServices, load_router
from telephony.sip import ANONYMOUS_USERS, display_number, invite_parties, uri_user
from telephony.status import write_status
from telephony.store import TelephonyStore, heartbeat_interval

log = get_logger(__name__)

# a handler still running this long after its call ended is cancelled
HANDLER_GRACE_SECONDS = 30.0
# MongoDB connections per worker process (each carries a few calls; see small_pool)
MONGO_POOL_SIZE = 4
# beyond draining, how long stopping may take (ledger flush, pjsua, last heartbeat) before a forced exit
STOP_GRACE_SECONDS = 20.0
# events for handles nobody claimed yet (an outbound call's first events race its creation)
UNCLAIMED_EVENT_HANDLES = 256
# an agent's outbound call nobody answered is given up after this long
AGENT_DIAL_RING_SECONDS = 60.0
# how long placing an agent's call waits for its call document (MongoDB slow or away: the call goes on)
AGENT_DIAL_RECORDED_SECONDS = 3.0


@dataclass(frozen=True)
class WorkerOptions:
    name: str
    node: str
    recordings_dir: Path
    prompt_dir: Path
    front_host: str  # the SIP front (Kamailio) that numbers are dialed through
    front_port: int
    default_region: str = "CN"
    heartbeat_seconds: float = 1.0
    node_timeout_seconds: float = 5.0
    worker_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    db_name: str = "huiliu"  # names the Redis media channels of its calls (telephony.media_relay)
    # under a pool: the file the worker's state goes to every heartbeat; the pool writes the heartbeats of
    # all its workers to MongoDB at once (telephony.pool), the worker itself only while it has no pool
    status_file: Path | None = None


class TelephonyWorker:
    def __init__(
        self,
        engine: PjsuaThread,
        ledger: CallLedger,
        store: TelephonyStore,
        router: CallRouter,
        options: WorkerOptions,
        redis: aioredis.Redis | None = None,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.store = store
        self.router = router
        self.options = options
        self.redis = redis
        self.calls: dict[int, PjsuaCall] = {}
        self.by_call_id: dict[str, PjsuaCall] = {}
        self.facts: EndpointFacts | None = None
        self.draining = False
        self.rejected_busy = 0
        self._unclaimed: collections.OrderedDict[int, list[EndpointEvent]] = collections.OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._relays: dict[str, asyncio.Task[None]] = {}  # customer call id → the relay of its agent audio
        self._media_wanted: set[str] = set()  # calls a web softphone asked the audio of
        self.consultations = Consultations(self.consult, self._carry_agent_audio, self.target_uri)
        self._background: list[asyncio.Task[None]] = []
        self._started_at = utcnow()
        self._parent = os.getppid()
        self._no_calls = asyncio.Event()
        self._no_calls.set()

    @property
    def worker_id(self) -> str:
        return self.options.worker_id

    async def start(self) -> EndpointFacts:
        self.facts = await self.engine.start()
        await self._beat()  # the heartbeat exists before the first call does
        self._background.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
        if self.redis is not None:
            self._background.append(asyncio.create_task(self._commands(), name="commands"))
        log.info(
            "telephony.worker_ready",
            worker=self.options.name,
            sip_port=self.facts.sip_port,
            max_calls=self.facts.max_calls,
            pjsip=self.facts.version,
        )
        return self.facts

    # -- events from the pjsua thread (on the event loop)

    def on_event(self, event: EndpointEvent) -> None:
        if isinstance(event, IncomingCall):
            try:
                self._incoming(event)
            except Exception:  # an INVITE we cannot make sense of must not hold a call slot
                log.exception("call.incoming_failed", call_id=event.call_id, source=event.source)
                self._reject(event.handle, 500)
            return
        if isinstance(event, IncomingRejected):
            if event.status == 486:
                self.rejected_busy += 1
            log.warning(
                "call.refused_by_pjsua", call_id=event.call_id, status=event.status, reason=event.reason
            )
            return
        call = self.calls.get(event.handle)
        if call is None:
            self._unclaimed.setdefault(event.handle, []).append(event)
            while len(self._unclaimed) > UNCLAIMED_EVENT_HANDLES:
                self._unclaimed.popitem(last=False)
            return
        call.handle_event(event)
        if isinstance(event, CallStateChanged) and event.state == "disconnected":
            self._forget(call)

    def _claim(self, call: PjsuaCall) -> None:
        self._no_calls.clear()
        self.calls[call.handle] = call
        self.by_call_id[call.call_id] = call
        for event in self._unclaimed.pop(call.handle, []):
            self.on_event(event)

    def _forget(self, call: PjsuaCall) -> None:
        self.calls.pop(call.handle, None)
        if self.by_call_id.get(call.call_id) is call:
            del self.by_call_id[call.call_id]
        if not self.calls:
            self._no_calls.set()

    def _incoming(self, event: IncomingCall) -> None:
        parties = invite_parties(event.invite)
        if self.draining:
            self._reject(event.handle, 503)
            return
        handler = self.router.route(parties.called)
        if handler is None:
            log.info("call.unknown_destination", called=parties.called, source=event.source)
            self._reject(event.handle, 404)
            return
        caller_user = parties.caller_user or uri_user(event.remote_uri)[0]
        withheld = caller_user.lower() in ANONYMOUS_USERS
        facts = CallFacts(
            call_id=event.call_id,
            caller="" if withheld else display_number(caller_user, self.options.default_region),
            caller_user=caller_user,
            caller_host=parties.caller_host,
            called=parties.called,
            direction=Direction.inbound,
            started_at=utcnow(),
        )
        call = self._new_call(event.handle, facts, invite=event.invite)
        self._spawn(self._serve(call, handler))

    def _new_call(self, handle: int, facts: CallFacts, invite: str = "") -> PjsuaCall:
        call = PjsuaCall(
            self.engine,
            handle,
            call_id=facts.call_id,
            caller=facts.caller,
            called=facts.called,
            direction=facts.direction,
            journal=self.ledger.journal(facts),
            recordings_dir=self.options.recordings_dir,
            prompt_dir=self.options.prompt_dir,
            target_uri=self.target_uri,
            dialer=self.consult,
            invite=invite,
        )
        call.started_at = facts.started_at
        self._claim(call)
        return call

    def _reject(self, handle: int, status: int) -> None:
        self._spawn(self.engine.submit(lambda engine: engine.hangup(handle, status)))

    def _spawn(self, awaitable: Any) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, call: PjsuaCall, handler: CallHandler) -> None:
        handling = asyncio.ensure_future(handler(call))
        loop = asyncio.get_running_loop()

        def give_up_later(_ended: object) -> None:
            loop.call_later(HANDLER_GRACE_SECONDS, handling.cancel)

        call.add_ended_callback(give_up_later)
        cause = HangupCause.normal
        try:
            await handling
        except CallEnded:
            pass
        except asyncio.CancelledError:
            cause = HangupCause.shutdown
        except Exception as error:
            log.error("call.handler_failed", call_id=call.call_id, error=repr(error), exc_info=error)
            cause = HangupCause.handler_error
        await call.hangup(cause)

    def target_uri(self, target: str) -> str:
        """A SIP URI as is; a number or extension is dialed through the SIP front."""
        if target.startswith(("sip:", "sips:", "tel:")):
            return target
        return f"sip:{target}@{self.options.front_host}:{self.options.front_port}"

    async def consult(self, target: str) -> PjsuaCall:
        """A consultation leg for an attended transfer: dialed like any call, kept off the timeline."""
        uri = self.target_uri(target)
        handle, call_id = await self.engine.submit(lambda engine: engine.make_call(uri, {}))
        call = PjsuaCall(
            self.engine,
            handle,
            call_id=call_id,
            caller="",
            called=uri_user(uri)[0] or uri,
            direction=Direction.outbound,
            journal=UnrecordedCall(),
            recordings_dir=self.options.recordings_dir,
            prompt_dir=self.options.prompt_dir,
            target_uri=self.target_uri,
        )
        self._claim(call)
        return call

    async def dial(self, target: str, headers: dict[str, str] | None = None) -> PjsuaCall:
        """Place an outbound call (callbacks, agent legs, consultation for attended transfer)."""
        uri = self.target_uri(target)
        extra = dict(headers or {})
        handle, call_id = await self.engine.submit(lambda engine: engine.make_call(uri, extra))
        called = uri_user(uri)[0] or uri
        facts = CallFacts(
            call_id=call_id,
            caller=called,  # the customer of an outbound call is the party we call
            caller_user=called,
            caller_host=uri_user(uri)[1],
            called=called,
            direction=Direction.outbound,
            started_at=utcnow(),
        )
        return self._new_call(handle, facts)

    # -- heartbeat and commands

    def state(self, now: dt.datetime) -> dict[str, Any]:
        facts = self.facts
        return {
            "name": self.options.name,
            "node": self.options.node,
            "pid": os.getpid(),
            "sip_port": facts.sip_port if facts else None,
            "max_calls": facts.max_calls if facts else None,
            "active_calls": len(self.calls),
            "refused_busy": self.rejected_busy,
            "draining": self.draining,
            "started_at": self._started_at,
            "last_seen": now,
        }

    async def _beat(self) -> None:
        """The heartbeat straight to MongoDB (at start, so it exists before the first call; when draining
        starts; and every beat while the worker has no pool)."""
        now = utcnow()
        await self.store.heartbeat(
            self.worker_id, self.state(now), now + dt.timedelta(seconds=self.options.node_timeout_seconds)
        )

    def _tell_pool(self) -> bool:
        """The worker's state to its pool's status file; False when there is no pool (any more: a pool
        killed outright leaves its workers draining, and their calls must not look lost meanwhile)."""
        path = self.options.status_file
        if path is None or os.getppid() != self._parent:
            return False
        write_status(path, self.worker_id, self.state(utcnow()))
        return True

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_seconds)
            try:
                if not self._tell_pool():
                    await self._beat()
            except Exception as exc:
                log.warning("telephony.heartbeat_failed", error=str(exc))

    async def _commands(self) -> None:
        assert self.redis is not None
        key = COMMANDS_KEY.format(worker_id=self.worker_id)
        while True:
            try:
                item = await self.redis.blpop([key], timeout=4)
            except (RedisError, OSError) as exc:
                log.warning("telephony.commands_unavailable", error=str(exc))
                await asyncio.sleep(1)
                continue
            if item is None:
                continue
            try:
                command = json.loads(item[1])
            except (ValueError, TypeError):
                log.warning("telephony.bad_command", raw=str(item[1])[:200])
                continue
            self._spawn(self._run_command(command))

    async def _run_command(self, command: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"ok": True}
        call = self.by_call_id.get(str(command.get("call_id")))
        try:
            if command.get("op") == "dial":
                reply = await self._dial_for_agent(str(command["target"]), float(command.get("until", 0)))
            elif call is None:
                reply = {"ok": False, "code": "call_not_found", "detail": "the call is not on this worker"}
            elif command.get("op") == "hangup":
                await call.hangup(HangupCause(command.get("cause", HangupCause.agent_hangup.value)))
            elif command.get("op") == "transfer":
                await call.transfer(str(command["target"]), attended=bool(command.get("attended")))
            elif command.get("op") == "consult":
                leg = await self.consultations.start(call, str(command["target"]))
                reply = {"ok": True, "consult_call_id": leg.call_id}
            elif command.get("op") == "consult_complete":
                await self.consultations.complete(call)
            elif command.get("op") == "consult_cancel":
                await self.consultations.cancel(call)
            elif command.get("op") == "media":
                self._relay_media(call)
            elif command.get("op") == "hold":
                await (call.hold() if command.get("on", True) else call.unhold())
            elif command.get("op") == "dtmf":
                if call.answered_at is None:
                    reply = {"ok": False, "code": "call_not_answered", "detail": "the call is still ringing"}
                else:
                    await call.send_dtmf(str(command["digits"]))
            else:
                reply = {"ok": False, "code": "unknown_command", "detail": str(command.get("op"))}
        except ConsultError as exc:
            reply = {"ok": False, "code": exc.code, "detail": str(exc)}
        except CallEnded:
            reply = {"ok": False, "code": "call_not_found", "detail": "the call has ended"}
        except Exception as exc:
            reply = {"ok": False, "code": "command_failed", "detail": str(exc)}
        reply_to = command.get("reply_to")
        if reply_to and self.redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.rpush(str(reply_to), json.dumps(reply))
                await self.redis.expire(str(reply_to), 60)

    async def _dial_for_agent(self, target: str, until: float) -> dict[str, Any]:
        """Place a call an agent dials from the web softphone (unless nobody waits for it since ``until``, a
        Unix time); it rings out for at most ``AGENT_DIAL_RING_SECONDS`` and then lives until either side
        hangs up."""
        if time.time() > until:
            return {"ok": False, "code": "dial_expired", "detail": "the dial command came too late"}
        if self.draining:
            return {"ok": False, "code": "worker_draining", "detail": "this worker is shutting down"}
        call = await self.dial(target)
        self._spawn(self._ring_out(call))
        # the agent's next step (attach the softphone, a key) finds the call by its document: write it first
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.journal.flush(), AGENT_DIAL_RECORDED_SECONDS)
        return {"ok": True, "call_id": call.call_id}

    async def _ring_out(self, call: PjsuaCall) -> None:
        try:
            await asyncio.wait_for(call.wait_answered(), AGENT_DIAL_RING_SECONDS)
        except TimeoutError:
            await call.hangup(HangupCause.no_answer)
        except CallEnded:
            pass

    def _relay_media(self, call: PjsuaCall) -> None:
        """Carry the call's audio to and from a web softphone (once per call; ends with the call). An
        outbound call still ringing is relayed from its answer on; a call in consultation relays the
        consultation leg (``telephony.consult``)."""
        if self.redis is None or call.call_id in self._relays:
            return
        if call.call_id not in self._media_wanted:
            self._media_wanted.add(call.call_id)
            call.add_ended_callback(lambda _: self._media_wanted.discard(call.call_id))
        leg = self.consultations.agent_leg(call)
        if leg is not None:
            self._start_relay(call.call_id, leg)

    def _start_relay(self, call_id: str, leg: PjsuaCall) -> None:
        assert self.redis is not None
        task = asyncio.ensure_future(self._relay_once_answered(leg, self.redis, call_id))
        self._relays[call_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

        def forget(done: asyncio.Task[None]) -> None:
            if self._relays.get(call_id) is done:
                del self._relays[call_id]

        task.add_done_callback(forget)

    async def _carry_agent_audio(self, call_id: str, leg: PjsuaCall | None) -> None:
        """Switch the agent audio of customer call ``call_id`` to ``leg`` (None: stop it), if a web
        softphone asked for it."""
        await stop_tasks(self._relays.pop(call_id, None))
        if leg is not None and call_id in self._media_wanted and self.redis is not None:
            self._start_relay(call_id, leg)

    async def _relay_once_answered(self, leg: PjsuaCall, redis: aioredis.Redis, call_id: str) -> None:
        with contextlib.suppress(CallEnded):
            await leg.wait_answered()
            await relay_call_audio(leg, redis, db_name=self.options.db_name, channel_id=call_id)

    # -- stopping

    async def drain(self, within: float) -> None:
        """Refuse new calls; wait up to ``within`` seconds for the current ones, then hang them up."""
        self.draining = True
        with contextlib.suppress(Exception):
            await self._beat()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_calls.wait(), within)
        await asyncio.gather(
            *(call.hangup(HangupCause.shutdown) for call in list(self.calls.values())), return_exceptions=True
        )

    async def stop(self) -> None:
        await self.consultations.close()
        await stop_tasks(*self._background, *self._tasks)
        await self.ledger.flush(5.0)
        await self.engine.stop()
        if self.options.status_file is not None:  # the pool must not beat for this worker again
            self.options.status_file.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            await self.store.expire_worker(self.worker_id, utcnow())


def recordings_dir(settings: Settings) -> Path:
    return (settings.telephony_recordings_dir or settings.data_dir / "recordings").resolve()


def endpoint_config(settings: Settings, *, sip_port: int, rtp_port: int, rtp_count: int) -> EndpointConfig:
    credentials: tuple[SipCredential, ...] = ()
    if settings.telephony_sip_username and settings.telephony_sip_password:
        credentials = (
            SipCredential(
                "*", settings.telephony_sip_username, settings.telephony_sip_password.get_secret_value()
            ),
        )
    front = _front_host(settings)
    user = settings.telephony_sip_username or "huiliu"
    return EndpointConfig(
        bind_address=settings.telephony_sip_host,
        sip_port=sip_port,
        rtp_port=rtp_port,
        rtp_port_count=rtp_count,
        max_calls=settings.telephony_max_calls_per_worker,
        user=user,
        credentials=credentials,
        registrar=settings.telephony_registrar,
        register_contact=f"<sip:{user}@{front}:{settings.telephony_sip_port}>",
        log_level=2 if settings.log_level == "DEBUG" else 1,
        prompt_dir=settings.data_dir / "prompts",
    )


def _front_host(settings: Settings) -> str:
    host = settings.telephony_sip_host
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def small_pool(url: str, size: int = MONGO_POOL_SIZE) -> str:
    """``url`` with a connection pool of ``size`` unless it sets its own: a node runs dozens of workers
    with a handful of calls each, and MongoDB servers cap connections (the embedded one at 1,000)."""
    parts = urlsplit(url)
    if "maxpoolsize=" in parts.query.lower():
        return url
    query = f"{parts.query}&maxPoolSize={size}" if parts.query else f"maxPoolSize={size}"
    return urlunsplit(parts._replace(path=parts.path or "/", query=query))


async def serve(settings: Settings, args: argparse.Namespace) -> int:
    assert settings.mongo_url is not None and settings.redis_url is not None
    db = Database.connect(small_pool(settings.mongo_url), settings.db_name, settings.mongo_timeout_ms)
    redis = connect_redis(settings.redis_url, socket_timeout=10)
    bus = EventBus(redis, db)
    omni = Omnichannel.create(db, bus, default_region=settings.default_region)
    store = TelephonyStore(db)
    options = WorkerOptions(
        name=args.name,
        node=socket.gethostname(),
        recordings_dir=recordings_dir(settings),
        prompt_dir=settings.data_dir / "prompts",
        front_host=_front_host(settings),
        front_port=settings.telephony_sip_port,
        default_region=settings.default_region,
        heartbeat_seconds=heartbeat_interval(settings),
        node_timeout_seconds=settings.telephony_node_timeout_seconds,
        worker_id=f"{socket.gethostname()}:{args.name}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        db_name=settings.db_name,
        status_file=Path(args.ready_file) if args.ready_file else None,
    )
    ledger = CallLedger(store, omni, worker_id=options.worker_id, default_region=settings.default_region)
    config = endpoint_config(
        settings, sip_port=args.sip_port, rtp_port=args.rtp_port, rtp_count=args.rtp_count
    )
    if args.name != "w0":
        config = dataclasses.replace(config, registrar=None)  # one registration per pool
    worker: TelephonyWorker | None = None
    engine = PjsuaThread(config, lambda event: worker.on_event(event) if worker else None)
    router = load_router(settings)
    managed = router if isinstance(router, ManagedRouter) else None
    worker = TelephonyWorker(engine, ledger, store, router, options, redis)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        if managed is not None:
            await managed.start(RouterServices(settings, db, bus, omni, options.recordings_dir))
        await worker.start()
        if options.status_file is not None:  # the pool learns the worker is ready, and its call cap
            write_status(options.status_file, worker.worker_id, worker.state(utcnow()))
        await stop.wait()
        _stop_within(settings.telephony_drain_seconds + STOP_GRACE_SECONDS)
        await worker.drain(settings.telephony_drain_seconds)
    finally:
        await worker.stop()
        if managed is not None:
            with contextlib.suppress(Exception):
                await managed.stop()
        await redis.aclose()
        await db.close()
    return 0


def _stop_within(seconds: float) -> None:
    """Exit by force if stopping takes longer than ``seconds``: with MongoDB or Redis gone a client call can
    hang past its timeouts, and a worker that never exits outlives its pool holding its SIP and RTP ports.
    Its calls are then ended by the lost-call sweep (``node_lost``), as after a crash."""

    def give_up() -> None:
        print(
            f"telephony worker did not stop within {seconds:.0f} s; exiting anyway",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    watchdog = threading.Timer(seconds, give_up)
    watchdog.daemon = True
    watchdog.start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telephony.worker")
    parser.add_argument("--name", required=True, help="the worker's name in the pool (w0, w1, …)")
    parser.add_argument("--sip-port", type=int, required=True)
    parser.add_argument("--rtp-port", type=int, required=True, help="first RTP port of this worker")
    parser.add_argument("--rtp-count", type=int, required=True, help="how many RTP ports it may use")
    parser.add_argument(
        "--ready-file",
        help="written (JSON: worker id, max_calls, sip_port) once calls are taken, then rewritten every "
        "heartbeat with the worker's state for its pool to write",
    )
    args = parser.parse_args(argv)
    # a crash in native code (pjsua2, see README: Known problems) leaves every thread's Python stack in
    # this worker's log
    faulthandler.enable(all_threads=True)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.mongo_url is None or settings.redis_url is None:
        print("telephony worker: HUILIU_MONGO_URL and HUILIU_REDIS_URL must be set", file=sys.stderr)
        return 2
    return asyncio.run(serve(settings, args))


if __name__ == "__main__":
    sys.exit(main())
