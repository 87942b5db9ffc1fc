"""``huiliu telephony``: one telephony node — Kamailio as the SIP front and a pool of pjsua2 workers.

The PyPI pjsua2 wheel holds only a few calls per process (measured: 4), so a node runs
``telephony_pool_size`` worker processes (``telephony.worker``), each on its own SIP port
(``telephony_worker_base_port + i``) and RTP port slice, each measuring its own call cap at start. Kamailio
(``telephony/kamailio/kamailio.cfg``) takes every call on ``telephony_sip_port`` and hands it to the
least-loaded worker that has room (dispatcher ``maxload`` = the measured cap), probing workers with OPTIONS
and failing over on timeout/486/5xx — so no caller hears 486 while the pool has room.

This process
* writes the dispatcher list (absolute path) with a spare, disabled slot per worker and starts Kamailio
  with its own control socket;
* restarts a worker that died (at most 5 times a minute per slot) after ending its calls;
* writes its workers' heartbeats to MongoDB, all in one command per beat (a worker writes its state to its
  status file; one document update per worker per beat was a large share of a busy node's database
  work). Only a worker whose process runs and whose status file is fresh (it wrote it within the node
  timeout) is beaten for: a hung worker expires, and its calls are swept, within the timeout plus a beat;
* sweeps every second: calls of any worker (any node) whose heartbeat expired end with ``node_lost``;
* adds a worker on SIGUSR1 and drains and removes the newest on SIGUSR2 (switched on/off in Kamailio
  with ``dispatcher.set_state``: a reload would forget the call counts), up to ``telephony_pool_max_size``
  (default twice the pool size);
* is elastic (``telephony_pool_spare_calls``, on by default): it starts a worker whenever fewer call slots
  than that are free, and stops an extra one that has had no call for ``telephony_pool_idle_seconds``
  (once its status shows no call after it stopped getting new ones), so an idle node runs
  ``telephony_pool_size`` workers (~120 MB each) and a busy one as many as its calls need;
* on SIGTERM/SIGINT stops new calls, lets workers drain (``telephony_drain_seconds``), stops Kamailio.
With ``--no-front`` it runs only the workers (docker-compose runs Kamailio in its own container).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.aio import stop_tasks
from core.bus import EventBus, connect_redis
from core.child import communicate, failure_line
from core.db import Database, utcnow
from core.embedded import spawn
from core.log import get_logger
from core.settings import Settings
from omnichannel import Omnichannel
from telephony.kamailio import Destination, Kamailio, dispatcher_list
from telephony.ledger import CallLedger
from telephony.status import read_status
from telephony.store import Document, TelephonyStore, heartbeat_interval
from telephony.sweeper import CallSweeper

log = get_logger(__name__)

RESTARTS_PER_MINUTE = 5
SWEEP_SECONDS = 1.0
GROW_RETRY_SECONDS = 30.0
# huiliu migrate builds indexes and runs migrations; on a large database that can take minutes
PREPARE_TIMEOUT_SECONDS = 600.0
RETENTION_SWEEP_SECONDS = 600.0
# RTP and RTCP take two ports per call; leave room for pjsua's port retries
MIN_RTP_PORTS_PER_WORKER = 16


@dataclass
class WorkerSlot:
    index: int
    sip_port: int
    rtp_port: int
    rtp_count: int
    ready_file: Path
    process: subprocess.Popen[bytes] | None = None
    worker_id: str | None = None
    max_calls: int = 0
    enabled: bool = False
    removing: bool = False
    restarts: list[float] = field(default_factory=list)
    idle_since: float | None = None  # an extra worker of an elastic pool: since when it has had no call

    @property
    def name(self) -> str:
        return f"w{self.index}"


class TelephonyPool:
    def __init__(self, settings: Settings, store: TelephonyStore, *, front: bool = True) -> None:
        self.settings = settings
        self.store = store
        self.front = front
        self.run_dir = (settings.data_dir / "telephony").resolve()
        self.log_dir = settings.data_dir / "log"
        self.capacity_slots = settings.telephony_pool_max_size or settings.telephony_pool_size * 2
        self.slots: list[WorkerSlot] = []
        self.kamailio: Kamailio | None = None
        self._adopting: set[asyncio.Task[None]] = set()
        self._beating: asyncio.Task[None] | None = None
        self._resizing: asyncio.Task[None] | None = None  # the elastic pool's one add or removal at a time
        self._grow_after = 0.0  # after a worker failed to start, the elastic pool waits before another
        self.worker_host = (
            "127.0.0.1" if settings.telephony_sip_host in ("", "0.0.0.0") else settings.telephony_sip_host
        )
        self._validate()
        span = settings.telephony_rtp_port_max - settings.telephony_rtp_port_min + 1
        self.rtp_span = span // self.capacity_slots

    def _validate(self) -> None:
        settings = self.settings
        if self.capacity_slots < settings.telephony_pool_size:
            raise RuntimeError(
                f"HUILIU_TELEPHONY_POOL_MAX_SIZE ({self.capacity_slots}) is below HUILIU_TELEPHONY_POOL_SIZE "
                f"({settings.telephony_pool_size})"
            )
        workers = range(
            settings.telephony_worker_base_port, settings.telephony_worker_base_port + self.capacity_slots
        )
        if workers.stop > 65536:
            raise RuntimeError("HUILIU_TELEPHONY_WORKER_BASE_PORT: the worker ports run past 65535")
        if settings.telephony_sip_port in workers:
            raise RuntimeError(
                f"HUILIU_TELEPHONY_SIP_PORT ({settings.telephony_sip_port}) falls among the worker ports "
                f"{workers.start}-{workers.stop - 1} (HUILIU_TELEPHONY_WORKER_BASE_PORT, one per worker "
                "up to HUILIU_TELEPHONY_POOL_MAX_SIZE, default twice the pool size)"
            )
        span = settings.telephony_rtp_port_max - settings.telephony_rtp_port_min + 1
        if span // self.capacity_slots < MIN_RTP_PORTS_PER_WORKER:
            raise RuntimeError(
                "HUILIU_TELEPHONY_RTP_PORT_MIN/MAX: the RTP range is too small for the pool "
                f"({span} ports for up to {self.capacity_slots} workers)"
            )

    def uri(self, slot: WorkerSlot) -> str:
        return f"sip:{self.worker_host}:{slot.sip_port}"

    def _new_slot(self, index: int) -> WorkerSlot:
        settings = self.settings
        return WorkerSlot(
            index=index,
            sip_port=settings.telephony_worker_base_port + index,
            rtp_port=settings.telephony_rtp_port_min + index * self.rtp_span,
            rtp_count=self.rtp_span,
            ready_file=self.run_dir / f"w{index}.ready.json",
        )

    # -- workers

    def _spawn(self, slot: WorkerSlot) -> None:
        slot.ready_file.unlink(missing_ok=True)
        slot.worker_id = None
        args = [
            sys.executable,
            "-m",
            "telephony.worker",
            "--name",
            slot.name,
            "--sip-port",
            str(slot.sip_port),
            "--rtp-port",
            str(slot.rtp_port),
            "--rtp-count",
            str(slot.rtp_count),
            "--ready-file",
            str(slot.ready_file),
        ]
        slot.process = spawn(args, env=dict(os.environ), log_path=self.log_dir / f"telephony-{slot.name}.log")

    async def _wait_ready(
        self, slots: list[WorkerSlot], within: float, attempts: int = 1
    ) -> list[WorkerSlot]:
        """Wait for ``slots`` to report ready, starting a worker that exits again up to ``attempts``
        times (its SIP or RTP port may be taken for a moment); returns the slots that never came up."""
        deadline = time.monotonic() + within
        waiting = list(slots)
        failed: list[WorkerSlot] = []
        tries = dict.fromkeys((slot.index for slot in slots), 1)
        while waiting:
            for slot in list(waiting):
                status = read_status(slot.ready_file)
                if status is not None:
                    slot.worker_id = status.worker_id
                    slot.max_calls = status.max_calls
                    waiting.remove(slot)
                elif slot.process is not None and slot.process.poll() is not None:
                    log.warning(
                        "telephony.worker_start_failed",
                        worker=slot.name,
                        code=slot.process.returncode,
                        log=str(self.log_dir / f"telephony-{slot.name}.log"),
                    )
                    if tries[slot.index] < attempts:
                        tries[slot.index] += 1
                        self._spawn(slot)
                    else:
                        waiting.remove(slot)
                        failed.append(slot)
            if waiting and time.monotonic() > deadline:
                failed += waiting
                break
            if waiting:
                await asyncio.sleep(0.1)
        return failed

    def _write_dispatcher_list(self) -> Path:
        path = self.run_dir / "dispatcher.list"
        cap = max((slot.max_calls for slot in self.slots), default=1) or 1
        destinations = [
            Destination(self.uri(slot), slot.name, slot.max_calls or cap, slot.enabled) for slot in self.slots
        ]
        spare = [
            Destination(self.uri(self._new_slot(index)), f"w{index}", cap, enabled=False)
            for index in range(len(self.slots), self.capacity_slots)
        ]
        path.write_text(dispatcher_list(destinations + spare))
        return path

    async def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.slots = [self._new_slot(index) for index in range(self.settings.telephony_pool_size)]
        # beating starts with the first worker ready: a big pool takes a while to start them all
        self._beating = asyncio.create_task(self._beat_forever(), name="heartbeats")
        for slot in self.slots:
            self._spawn(slot)
        failed = await self._wait_ready(self.slots, 60 + 2 * len(self.slots), attempts=3)
        if len(failed) == len(self.slots):
            raise RuntimeError(f"no telephony worker started; see {self.log_dir}/telephony-w0.log")
        for slot in self.slots:
            slot.enabled = slot not in failed
            if not slot.enabled:
                log.error("telephony.worker_left_out", worker=slot.name)
        caps = sorted({slot.max_calls for slot in self.slots if slot.enabled})
        log.info("telephony.pool_ready", workers=len(self.slots), calls_per_worker=caps)
        if self.front:
            self.kamailio = Kamailio(
                workdir=self.run_dir,
                listen=self.settings.telephony_sip_host,
                port=self.settings.telephony_sip_port,
                list_path=self._write_dispatcher_list(),
                children=self.settings.telephony_sip_children,
                log_path=self.log_dir / "kamailio.log",
                defines=(
                    f"PIKE_REQS={self.settings.telephony_flood_requests}",
                    *(("WITH_AUTH",) if self.settings.telephony_phone_auth else ()),
                ),
                env=(
                    {**os.environ, "HUILIU_SECRET_KEY": self.settings.secret()}
                    if self.settings.telephony_phone_auth
                    else None
                ),
            )
            await asyncio.to_thread(self.kamailio.start)
        for slot in failed:
            if slot.process is not None and slot.process.poll() is None:
                # still starting (a big pool on a busy machine): it joins once it is ready
                self._adopt_later(slot)

    # -- heartbeats

    def heartbeats(self, now: float) -> list[tuple[str, Document, dt.datetime]]:
        """The heartbeat of every worker that runs and wrote its status within the node timeout."""
        timeout = self.settings.telephony_node_timeout_seconds
        # one beat more than the timeout: the status read may be a beat old when written (a worker seen
        # alive is not declared lost sooner than a worker writing its own heartbeat would be)
        lasts = timeout + heartbeat_interval(self.settings)
        beats = []
        for slot in self.slots:
            if slot.worker_id is None or slot.process is None or slot.process.poll() is not None:
                continue
            status = read_status(slot.ready_file)
            if status is None or status.worker_id != slot.worker_id:
                continue
            if now - status.beat_at > timeout:
                continue  # hung: its heartbeat runs out and the sweeper ends its calls
            expires_at = dt.datetime.fromtimestamp(status.beat_at + lasts, dt.UTC)
            beats.append((slot.worker_id, status.state, expires_at))
        return beats

    async def beat(self) -> None:
        beats = self.heartbeats(time.time())
        if beats:
            await self.store.heartbeats(beats)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(heartbeat_interval(self.settings))
            try:
                await self.beat()
            except Exception as exc:
                log.warning("telephony.heartbeat_failed", error=str(exc))

    @property
    def capacity(self) -> int:
        return sum(slot.max_calls for slot in self.slots if slot.enabled)

    async def check(self) -> None:
        """Restart dead workers (their calls ended first) and a dead Kamailio."""
        for slot in self.slots:
            if slot.process is None or slot.process.poll() is None or slot.removing:
                continue
            log.warning("telephony.worker_died", worker=slot.name, code=slot.process.returncode)
            if slot.worker_id is not None:
                with contextlib.suppress(Exception):
                    await self.store.expire_worker(slot.worker_id, utcnow())
            now = time.monotonic()
            slot.restarts = [at for at in slot.restarts if now - at < 60]
            if len(slot.restarts) >= RESTARTS_PER_MINUTE:
                if slot.enabled:
                    log.error("telephony.worker_keeps_crashing", worker=slot.name)
                    slot.enabled = False
                    await self._set_state(slot, "d")
                continue
            slot.restarts.append(now)
            self._spawn(slot)
            self._adopt_later(slot)
        if self.kamailio is not None and not self.kamailio.alive():
            log.warning("telephony.kamailio_died")
            await asyncio.to_thread(self.kamailio.start)

    def _adopt_later(self, slot: WorkerSlot) -> None:
        adopting = asyncio.create_task(self._adopt(slot))
        self._adopting.add(adopting)
        adopting.add_done_callback(self._adopting.discard)

    async def _adopt(self, slot: WorkerSlot) -> None:
        if await self._wait_ready([slot], 60):
            log.warning("telephony.worker_restart_failed", worker=slot.name)
        elif not slot.enabled:  # it had been left out: it gets calls again
            slot.enabled = True
            await self._set_state(slot, "a")
            log.info("telephony.worker_joined", worker=slot.name, max_calls=slot.max_calls)

    async def _set_state(self, slot: WorkerSlot, state: str) -> None:
        if self.kamailio is not None:
            try:
                await asyncio.to_thread(self.kamailio.set_worker_state, self.uri(slot), state)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                log.warning("telephony.dispatcher_state_failed", worker=slot.name, error=str(exc))

    async def add_worker(self) -> None:
        if len(self.slots) >= self.capacity_slots:
            log.warning("telephony.pool_full", workers=len(self.slots), max=self.capacity_slots)
            return
        slot = self._new_slot(len(self.slots))
        self.slots.append(slot)
        self._spawn(slot)
        if await self._wait_ready([slot], 60, attempts=3):
            self.slots.remove(slot)
            self._grow_after = time.monotonic() + GROW_RETRY_SECONDS
            log.error("telephony.worker_add_failed", worker=slot.name, retry_in=GROW_RETRY_SECONDS)
            return
        slot.enabled = True
        await self._set_state(slot, "a")
        self._write_dispatcher_list()  # for a Kamailio restart; the running one was told above
        log.info("telephony.worker_added", worker=slot.name, max_calls=slot.max_calls)

    async def remove_worker(self, *, when_idle: bool = False) -> None:
        """Stop giving the newest worker calls, let its calls finish, then stop it. ``when_idle``: stop it
        only once its status, written after it stopped getting calls, shows none (a call that reached it
        just before is not cut short by the drain time)."""
        if len(self.slots) <= 1:
            return
        slot = self.slots[-1]
        slot.removing, slot.enabled = True, False
        await self._set_state(slot, "d")
        if when_idle:
            disabled_at = time.time()
            while slot.process is not None and slot.process.poll() is None:
                status = read_status(slot.ready_file)
                if status is not None and status.beat_at > disabled_at and not status.active_calls:
                    break
                await asyncio.sleep(heartbeat_interval(self.settings) / 2)
        if slot.process is not None:
            slot.process.terminate()
            await asyncio.to_thread(_wait, slot.process, self.settings.telephony_drain_seconds + 10)
        self.slots.remove(slot)
        self._write_dispatcher_list()
        log.info("telephony.worker_removed", worker=slot.name, idle=when_idle)

    def keep_spare(self, now: float) -> None:
        """The elastic pool (``telephony_pool_spare_calls``): start a worker (up to twice the pool size)
        when fewer call slots than that are free; stop the newest worker beyond the pool size once it has
        had no call for ``telephony_pool_idle_seconds`` while the others keep enough free. Reads the
        workers' status files; one change at a time, in the background."""
        spare = self.settings.telephony_pool_spare_calls
        if spare == 0 or (self._resizing is not None and not self._resizing.done()):
            return
        enabled = [slot for slot in self.slots if slot.enabled]
        calls = {slot.name: _active_calls(slot) for slot in enabled}
        free = sum(slot.max_calls - calls[slot.name] for slot in enabled)
        if free < spare:
            if len(self.slots) < self.capacity_slots and now >= self._grow_after:
                log.info("telephony.pool_growing", free_calls=free, spare_calls=spare)
                self._resizing = asyncio.create_task(self.add_worker(), name="pool-grow")
            return
        newest = self.slots[-1]
        if len(self.slots) <= self.settings.telephony_pool_size or not newest.enabled:
            return
        if calls[newest.name] or free - newest.max_calls < spare:
            newest.idle_since = None
        elif newest.idle_since is None:
            newest.idle_since = now
        elif now - newest.idle_since >= self.settings.telephony_pool_idle_seconds:
            self._resizing = asyncio.create_task(self.remove_worker(when_idle=True), name="pool-shrink")

    async def stop(self) -> None:
        await stop_tasks(self._resizing)  # a worker it started is in ``slots`` and stops with the rest
        # one RPC for the whole set, not one kamcmd per worker: a pool of 70 on a busy machine must stop
        # within the grace a supervisor gives it (before it is killed and its workers are orphaned)
        if any(slot.enabled for slot in self.slots):
            for slot in self.slots:
                slot.enabled = False
            if self.kamailio is not None:
                try:
                    await asyncio.to_thread(self.kamailio.rpc, "dispatcher.set_state", "d", "1", "all")
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    log.warning("telephony.dispatcher_state_failed", worker="all", error=str(exc))
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.terminate()
        processes = [slot.process for slot in self.slots if slot.process is not None]
        # workers draining their calls go on beating through the pool until they exit
        await asyncio.to_thread(_wait_all, processes, self.settings.telephony_drain_seconds + 10)
        await stop_tasks(self._beating)
        if self.kamailio is not None:
            await asyncio.to_thread(self.kamailio.stop)


def _active_calls(slot: WorkerSlot) -> int:
    """The calls a worker holds, by its status (none before it first wrote one)."""
    status = read_status(slot.ready_file)
    return status.active_calls if status is not None else 0


def _wait_all(processes: list[subprocess.Popen[bytes]], within: float) -> None:
    """Wait for all of ``processes`` together (one deadline), killing what is left when it passes."""
    deadline = time.monotonic() + within
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait(process: subprocess.Popen[bytes], within: float) -> None:
    try:
        process.wait(within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def serve(settings: Settings, *, front: bool = True) -> int:
    if settings.mongo_url is None or settings.redis_url is None:
        print("huiliu telephony: HUILIU_MONGO_URL and HUILIU_REDIS_URL must be set", file=sys.stderr)
        return 2
    db = Database.connect(settings.mongo_url, settings.db_name, settings.mongo_timeout_ms)
    redis = connect_redis(settings.redis_url, socket_timeout=5)
    omni = Omnichannel.create(db, EventBus(redis, db), default_region=settings.default_region)
    store = TelephonyStore(db)
    ledger = CallLedger(store, omni, worker_id="sweeper", default_region=settings.default_region)
    sweeper = CallSweeper(ledger, store)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    resize: asyncio.Queue[int] = asyncio.Queue()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, resize.put_nowait, 1)
    loop.add_signal_handler(signal.SIGUSR2, resize.put_nowait, -1)
    pool: TelephonyPool | None = None
    try:
        await _prepare()
        pool = TelephonyPool(settings, store, front=front)
        await pool.start()
        spare = settings.telephony_pool_spare_calls
        workers = f"{len(pool.slots)} worker{'' if len(pool.slots) == 1 else 's'}"
        print(
            f"telephony: {workers}, {pool.capacity} concurrent calls"
            + (f" (elastic: up to {pool.capacity_slots} workers, {spare} calls spare)" if spare else "")
            + (
                f", SIP front on {settings.telephony_sip_host}:{settings.telephony_sip_port}" if front else ""
            ),
            flush=True,
        )
        await _watch(pool, sweeper, settings, stop, resize)
    except RuntimeError as exc:
        print(f"huiliu telephony: {exc}", file=sys.stderr)
        return 1
    finally:
        if pool is not None:
            await pool.stop()
        sweeper.stop()
        await redis.aclose()
        await db.close()
    return 0


async def _prepare(attempts: int = 20, within: float = PREPARE_TIMEOUT_SECONDS) -> None:
    """Every package's indexes and pending migrations, by ``huiliu migrate`` in a child process, retried
    while MongoDB is not ready (a child that has not finished within ``within`` seconds is killed and counts
    as an attempt). They are declared when each package is imported: importing them all here (``core.app``)
    would keep ~35 MB of the web's code in this process for good."""
    delay = 0.5
    for attempt in range(attempts):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "core.cli",
            "migrate",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            output, _ = await communicate(process, None, within)
        except TimeoutError:
            error = f"huiliu migrate did not finish within {within:g} s"
        else:
            if process.returncode == 0:
                return
            error = failure_line(output, process.returncode)
        if attempt == attempts - 1:
            raise RuntimeError(f"MongoDB is not usable: {error}")
        log.warning("telephony.database_not_ready", error=error)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5)


async def _watch(
    pool: TelephonyPool,
    sweeper: CallSweeper,
    settings: Settings,
    stop: asyncio.Event,
    resize: asyncio.Queue[int],
) -> None:
    last_retention = 0.0
    while not stop.is_set():
        await pool.check()
        pool.keep_spare(time.monotonic())
        try:
            await sweeper.sweep()
            if time.monotonic() - last_retention > RETENTION_SWEEP_SECONDS:
                last_retention = time.monotonic()
                await sweeper.expire_recordings(settings.telephony_recording_retention_days)
        except Exception as exc:
            log.warning("telephony.sweep_failed", error=str(exc))
        while not resize.empty():
            if resize.get_nowait() > 0:
                await pool.add_worker()
            else:
                await pool.remove_worker()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SWEEP_SECONDS if pool.slots else 0.5)
