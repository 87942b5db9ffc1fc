"""``PjsuaCall``: the ``telephony.api.Call`` of a pjsua2 call leg, living on the event loop.

It holds only an integer handle; every operation is a command to ``telephony.pjsua_thread`` and every
state change arrives as an event from it (``handle_event``). Facts worth keeping (answered, transferred,
recorded, ended) go to the call's ``Journal``, which writes them in order in the background.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import os
import time
import uuid
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from core.db import utcnow
from core.log import get_logger
from telephony.api import (
    REJECT_STATUS,
    SAMPLE_RATE,
    Call,
    CallEnded,
    CallerRecord,
    CallError,
    CallState,
    Direction,
    DtmfEvent,
    DtmfMethod,
    HangupCause,
    PlaybackOutcome,
    Prompt,
    Recording,
    RecordingError,
    TransferFailed,
)
from telephony.pjsua_thread import (
    CallStateChanged,
    DtmfReceived,
    EndpointEvent,
    Engine,
    FrameSink,
    MediaStateChanged,
    PjsuaThread,
    PlaybackEnded,
    TransferProgress,
)
from telephony.sip import Dialog, uas_dialog

log = get_logger(__name__)

T = TypeVar("T")

# a frame consumer that falls this far behind (20 ms frames) loses the oldest
FRAME_QUEUE_FRAMES = 100
# send_audio waits while more than this much audio is queued for the caller
SEND_BACKLOG_FRAMES = 250
ANSWER_MEDIA_TIMEOUT = 5.0
TRANSFER_TIMEOUT = 30.0
CONSULT_TIMEOUT = 30.0
HOLD_SECONDS = 5.0  # how long hold/unhold wait for the other side to take the re-INVITE
# how long a refused command waits for the call's end to arrive before it counts as an error
ENDED_GRACE = 1.0
# how long pjmedia takes to send one RFC 2833 key (a 200 ms event, its end packets, a gap)
DTMF_DIGIT_SECONDS = 0.3
# a recording may hold this much less than the time its recorder ran (clock start-up, the last buffer, a
# media clock that fell behind on a loaded machine) before it counts as incomplete
RECORDING_SLACK_SECONDS = 0.5
RECORDING_SLACK_SHARE = 0.25
# below this much free space the recordings' filesystem counts as full (pjmedia writes 4 KB buffers)
DISK_FULL_BYTES = 64 * 1024


class Journal(Protocol):
    """Where a call's facts go (``telephony.ledger.CallJournal`` writes them to MongoDB)."""

    def answered(self, at: dt.datetime) -> None: ...

    def dialog(self, dialog: Dialog) -> None: ...

    def transferred(self, target: str, attended: bool, at: dt.datetime) -> None: ...

    def ended(self, cause: str, status: int, talk_seconds: float, at: dt.datetime) -> None: ...

    def record(self, kind: str, body: dict[str, Any]) -> None: ...

    def recording(self, recording: Recording, started_at: dt.datetime) -> None: ...

    async def flush(self) -> None:
        """Return once every fact so far is written (the call document first of all)."""

    async def caller_record(self, within: float) -> CallerRecord | None:
        """The call's customer and conversation once written (see ``Call.recorded_as``)."""


class UnrecordedCall:
    """The journal of a leg that is not a customer's call (the consultation leg of an attended transfer):
    its facts belong to the call being transferred, which records the transfer."""

    def answered(self, at: dt.datetime) -> None:
        pass

    def dialog(self, dialog: Dialog) -> None:
        pass

    def transferred(self, target: str, attended: bool, at: dt.datetime) -> None:
        pass

    def ended(self, cause: str, status: int, talk_seconds: float, at: dt.datetime) -> None:
        pass

    def record(self, kind: str, body: dict[str, Any]) -> None:
        pass

    def recording(self, recording: Recording, started_at: dt.datetime) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def caller_record(self, within: float) -> CallerRecord | None:
        return None


Dialer = Callable[[str], Awaitable["PjsuaCall"]]


class PjsuaCall:
    def __init__(
        self,
        engine: PjsuaThread,
        handle: int,
        *,
        call_id: str,
        caller: str,
        called: str,
        direction: Direction,
        journal: Journal,
        recordings_dir: Path,
        prompt_dir: Path,
        target_uri: Callable[[str], str],
        dialer: Dialer | None = None,
        invite: str = "",
    ) -> None:
        self.engine = engine
        self.handle = handle
        self._call_id = call_id
        self._caller = caller
        self._called = called
        self._direction = direction
        self._state = CallState.ringing if direction is Direction.inbound else CallState.dialing
        self.journal = journal
        self.recordings_dir = recordings_dir
        self.prompt_dir = prompt_dir
        self._target_uri = target_uri
        self._dialer = dialer
        self._invite = invite
        loop = asyncio.get_running_loop()
        self.started_at = utcnow()
        self.answered_at: dt.datetime | None = None
        self._answered_mono: float | None = None
        self._ended: asyncio.Future[HangupCause | str] = loop.create_future()
        self._hung_up = asyncio.Event()
        self._media_ready = asyncio.Event()
        self._held = asyncio.Event()  # our hold took effect (the other side answered the re-INVITE)
        self._answered = asyncio.Event()
        self._hangup_cause: HangupCause | str | None = None
        self._digits: collections.deque[str] = collections.deque()
        self._digit_waiters: list[asyncio.Future[None]] = []
        self._dtmf_listeners: list[Callable[[DtmfEvent], None]] = []
        self._playbacks: dict[int, asyncio.Future[PlaybackOutcome]] = {}
        self._transfer: asyncio.Future[TransferProgress] | None = None
        self._sink: FrameSink | None = None
        self._tap: int | None = None
        self._tap_flags = (False, False)
        self._frame_queues: set[asyncio.Queue[bytes | None]] = set()
        self._tap_lock = asyncio.Lock()
        self._keys = asyncio.Lock()  # DTMF going out (see send_dtmf)
        self.end_status = 0

    # -- properties

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def caller(self) -> str:
        return self._caller

    @property
    def called(self) -> str:
        return self._called

    @property
    def direction(self) -> Direction:
        return self._direction

    @property
    def state(self) -> CallState:
        return self._state

    @property
    def hung_up(self) -> asyncio.Event:
        return self._hung_up

    @property
    def cause(self) -> HangupCause | str | None:
        return self._ended.result() if self._ended.done() else None

    async def wait_ended(self) -> HangupCause | str:
        return await asyncio.shield(self._ended)

    def add_ended_callback(self, callback: Callable[[object], None]) -> None:
        self._ended.add_done_callback(callback)

    # -- events from the pjsua thread

    def handle_event(self, event: EndpointEvent) -> None:
        if isinstance(event, CallStateChanged):
            self._state_changed(event)
        elif isinstance(event, MediaStateChanged):
            if event.active:
                self._media_ready.set()
            else:
                self._media_ready.clear()
            if event.held and not event.active:
                self._held.set()
            else:
                self._held.clear()
        elif isinstance(event, DtmfReceived):
            self._dtmf(DtmfEvent(event.digit, event.method))
        elif isinstance(event, PlaybackEnded):
            future = self._playbacks.get(event.player)
            if future is not None and not future.done():
                future.set_result(PlaybackOutcome.finished)
        elif isinstance(event, TransferProgress):
            if event.final and self._transfer is not None and not self._transfer.done():
                self._transfer.set_result(event)

    def _state_changed(self, event: CallStateChanged) -> None:
        if event.state == "connecting" and event.sent and self._invite:
            dialog = uas_dialog(self._invite, event.sent)
            if dialog is not None:
                self.journal.dialog(dialog)
        if event.state == "confirmed" and self._answered_mono is None:
            self._mark_answered()
        if event.state != "disconnected" or self._ended.done():
            return
        self.end_status = event.status
        cause = self._hangup_cause or self._remote_cause(event.status)
        self._state = CallState.ended
        talk = time.monotonic() - self._answered_mono if self._answered_mono is not None else 0.0
        self.journal.ended(str(cause), event.status, round(talk, 3), utcnow())
        self._ended.set_result(cause)
        self._hung_up.set()
        for waiter in self._digit_waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._sink is not None:
            self._fan_out(self._sink.take_pending())  # frames still batched come before the end marker
        for queue in self._frame_queues:
            _put_dropping_oldest(queue, None)

    def _remote_cause(self, status: int) -> HangupCause:
        if self._answered_mono is not None:
            return HangupCause.caller_hangup if status < 300 or status == 487 else HangupCause.failed
        if self._direction is Direction.inbound:
            return HangupCause.cancelled if status in (487, 200) else HangupCause.failed
        return {
            486: HangupCause.busy,
            600: HangupCause.busy,
            603: HangupCause.rejected,
            404: HangupCause.unknown_destination,
            604: HangupCause.unknown_destination,
            408: HangupCause.no_answer,
            480: HangupCause.no_answer,
            487: HangupCause.no_answer,
        }.get(status, HangupCause.failed)

    def _mark_answered(self) -> None:
        self._answered_mono = time.monotonic()
        self.answered_at = utcnow()
        self._state = CallState.answered
        self._answered.set()
        self.journal.answered(self.answered_at)

    def _dtmf(self, event: DtmfEvent) -> None:
        self._digits.append(event.digit)
        for waiter in self._digit_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._digit_waiters.clear()
        for listener in list(self._dtmf_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("call.dtmf_listener_failed", call_id=self._call_id)

    # -- helpers

    def _alive(self) -> None:
        if self._ended.done():
            raise CallEnded(self._ended.result())

    async def _until_ended(self, awaitable: Awaitable[T], limit: float | None = None) -> T:
        """``awaitable``'s result; ``CallEnded`` if the call ends first; ``TimeoutError`` after ``limit``."""
        self._alive()
        task = asyncio.ensure_future(awaitable)
        watched: set[asyncio.Future[Any]] = {task, self._ended}
        try:
            done, _ = await asyncio.wait(watched, timeout=limit, return_when="FIRST_COMPLETED")
        except BaseException:
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if self._ended.done():
            raise CallEnded(self._ended.result())
        raise TimeoutError

    async def _command(self, fn: Callable[[Engine], T]) -> T:
        """Run ``fn`` on the pjsua thread for this call. A call that the other side ended meanwhile makes
        pjsua refuse the command: that is ``CallEnded`` (once its end arrives), not a failure."""
        self._alive()
        try:
            return await self.engine.submit(fn)
        except CallError:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._ended), ENDED_GRACE)
            self._alive()
            raise

    async def _media(self) -> None:
        if not self._media_ready.is_set():
            await self._until_ended(self._media_ready.wait(), ANSWER_MEDIA_TIMEOUT)

    # -- Call

    async def answer(self) -> None:
        self._alive()
        if self._answered_mono is None and self._direction is Direction.inbound:
            handle = self.handle
            await self._command(lambda engine: engine.answer(handle, 200))
            if self._answered_mono is None:
                self._mark_answered()
        await self._media()

    async def ring(self) -> None:
        """Send 180 Ringing (an inbound call that will be answered a little later)."""
        self._alive()
        handle = self.handle
        await self._command(lambda engine: engine.answer(handle, 180))

    async def play(self, prompt: Prompt, *, barge_in: bool = False) -> PlaybackOutcome:
        self._alive()
        await self._media()
        if barge_in and self._digits:
            return PlaybackOutcome.interrupted
        path, temporary = self._prompt_file(prompt)
        handle = self.handle
        starting = asyncio.ensure_future(self._command(lambda engine: engine.play(handle, path, temporary)))
        try:
            player = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The pjsua thread starts the player all the same: stop it, or it plays on under whatever this
            # call plays next (hold music cancelled by the queue's answer talked over the voicemail prompt).
            try:
                started = await starting
            except Exception:
                if temporary:
                    path.unlink(missing_ok=True)
            else:
                if not self._ended.done():
                    with contextlib.suppress(CallError):
                        await self._command(lambda engine: engine.stop_player(handle, started))
            raise
        except BaseException:
            if temporary:
                path.unlink(missing_ok=True)
            raise
        future: asyncio.Future[PlaybackOutcome] = asyncio.get_running_loop().create_future()
        self._playbacks[player] = future

        def interrupt(_event: DtmfEvent) -> None:
            if not future.done():
                future.set_result(PlaybackOutcome.interrupted)

        remove = self.on_dtmf(interrupt) if barge_in else None
        try:
            return await self._until_ended(asyncio.shield(future))
        finally:
            if remove is not None:
                remove()
            self._playbacks.pop(player, None)
            if not self._ended.done():
                with contextlib.suppress(CallError):
                    await self._command(lambda engine: engine.stop_player(handle, player))

    def _prompt_file(self, prompt: Prompt) -> tuple[Path, bool]:
        if isinstance(prompt, bytes):
            self.prompt_dir.mkdir(parents=True, exist_ok=True)
            path = self.prompt_dir / f"pcm-{uuid.uuid4().hex}.wav"
            with wave.open(str(path), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(SAMPLE_RATE)
                out.writeframes(prompt)
            return path, True
        path = Path(prompt)
        if not path.is_file():
            raise CallError(f"prompt not found: {path}")
        return path.resolve(), False

    async def stop_playback(self) -> None:
        for future in list(self._playbacks.values()):
            if not future.done():
                future.set_result(PlaybackOutcome.stopped)

    async def collect_dtmf(
        self,
        max_digits: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the IVR's inter-digit timeout, not a call deadline
        terminators: str = "#",
        first_digit_timeout: float | None = None,
    ) -> str:
        collected: list[str] = []
        wait = timeout if first_digit_timeout is None else first_digit_timeout
        while len(collected) < max_digits:
            digit = await self._next_digit(wait)
            if digit is None or digit in terminators:
                break
            collected.append(digit)
            wait = timeout
        return "".join(collected)

    async def _next_digit(self, wait: float) -> str | None:
        deadline = time.monotonic() + wait
        while True:
            self._alive()
            if self._digits:
                return self._digits.popleft()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._digit_waiters.append(waiter)
            try:
                await self._until_ended(asyncio.shield(waiter), left)
            except TimeoutError:
                return None
            finally:
                with contextlib.suppress(ValueError):
                    self._digit_waiters.remove(waiter)

    def clear_dtmf(self) -> None:
        self._digits.clear()

    def on_dtmf(self, listener: Callable[[DtmfEvent], None]) -> Callable[[], None]:
        self._dtmf_listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._dtmf_listeners.remove(listener)

        return remove

    async def record(self, path: Path | str, max_seconds: float, *, terminators: str = "#") -> Recording:
        self._alive()
        target = self._recording_path(path)
        await self._media()
        handle = self.handle
        started_at = utcnow()
        began = time.monotonic()
        recorder: int | None = None
        refused = ""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            recorder = await self._command(lambda engine: engine.start_recording(handle, target))
        except CallEnded:
            raise
        except (CallError, OSError) as exc:  # the caller is listened to all the same (see Call.record)
            refused = str(exc) or type(exc).__name__
        stop: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_digit(event: DtmfEvent) -> None:
            if event.digit in terminators and not stop.done():
                stop.set_result("terminator")

        remove = self.on_dtmf(on_digit)
        ended_by = "max_seconds"
        try:
            ended_by = await self._until_ended(asyncio.shield(stop), max_seconds)
        except TimeoutError:
            ended_by = "max_seconds"
        except CallEnded:
            ended_by = "hangup"
        finally:
            remove()
            if recorder is not None:
                with contextlib.suppress(CallError):
                    await self._command(lambda engine: engine.stop_recording(handle, recorder))
        recorded = round(time.monotonic() - began, 3)
        if ended_by == "terminator" and self._digits and self._digits[-1] in terminators:
            self._digits.pop()
        await _finalized(target)
        kept = _wav_seconds(target)
        error, detail = await asyncio.to_thread(_storage_check, target, kept, recorded, refused)
        recording = Recording(uuid.uuid4().hex, target, kept, ended_by, error, detail, recorded)
        if error is not None:
            log.error(
                "call.recording_failed",
                call_id=self._call_id,
                path=str(target),
                error=error.value,
                detail=detail,
                kept_seconds=kept,
                recorded_seconds=recorded,
            )
        self.journal.recording(recording, started_at)
        return recording

    def _recording_path(self, path: Path | str) -> Path:
        root = self.recordings_dir.resolve()
        candidate = Path(path)
        target = (candidate if candidate.is_absolute() else root / candidate).resolve()
        if root != target and root not in target.parents:
            raise CallError(f"recordings must be under {root}: {path}")
        if target.suffix.lower() != ".wav":
            raise CallError(f"recordings are WAV files (.wav): {path}")
        return target

    async def transfer(self, target: str, attended: bool = False) -> None:
        self._alive()
        uri = self._target_uri(target)
        handle = self.handle
        loop = asyncio.get_running_loop()
        self._transfer = loop.create_future()
        consult: PjsuaCall | None = None
        try:
            if attended:
                if self._dialer is None:
                    raise CallError("attended transfer needs a dialer for the consultation call")
                consult = await self._dialer(uri)
                try:
                    await consult._until_ended(consult._answered.wait(), CONSULT_TIMEOUT)
                except (TimeoutError, CallEnded):
                    cause = consult.cause or HangupCause.no_answer
                    raise TransferFailed(uri, consult.end_status or 480, str(cause)) from None
                consult_handle = consult.handle
                await self._command(lambda engine: engine.transfer_replaces(handle, consult_handle))
            else:
                await self._command(lambda engine: engine.transfer(handle, uri))
            try:
                progress = await self._until_ended(asyncio.shield(self._transfer), TRANSFER_TIMEOUT)
            except TimeoutError:
                raise TransferFailed(uri, 408, "no final NOTIFY") from None
            if not 200 <= progress.status < 300:
                raise TransferFailed(uri, progress.status, progress.reason)
        except BaseException:
            if consult is not None and consult.state is not CallState.ended:
                with contextlib.suppress(CallError):
                    await consult.hangup(HangupCause.normal)
            raise
        finally:
            self._transfer = None
        self.journal.transferred(uri, attended, utcnow())
        await self.hangup(HangupCause.transferred)

    async def wait_answered(self) -> None:
        """Return once the call is answered (at once if it is); ``CallEnded`` if it ends first."""
        await self._until_ended(self._answered.wait())

    async def send_dtmf(self, digits: str) -> None:
        """Send ``digits`` (0-9 * # A-D) to the other side as RFC 2833 telephone events; returns once they
        are out. The call must be answered. Calls wait for each other, and a hold waits for them: a
        re-INVITE while pjmedia still sends an event cuts it (the other side heard the previous digit twice
        instead)."""
        self._alive()
        if self._answered_mono is None:
            raise CallError("the call is not answered yet")
        async with self._keys:
            await self._media()
            if not self._tap_flags[1]:
                # pjmedia sends events only while the conference bridge clocks the call's port, which it
                # does only when something transmits to it: the sending tap (silence when idle) does
                await self._retap(sending=True)
            handle = self.handle
            await self._command(lambda engine: engine.send_dtmf(handle, digits, DtmfMethod.rfc2833))
            await self._until_ended(asyncio.sleep(DTMF_DIGIT_SECONDS * len(digits)))

    async def hold(self) -> None:
        """Put the other side on hold; returns once it took the re-INVITE (at most ``HOLD_SECONDS``): a
        second re-INVITE (unhold) sent before that one completes is refused by pjsip."""
        self._alive()
        handle = self.handle
        async with self._keys:
            await self._command(lambda engine: engine.hold(handle))
            with contextlib.suppress(TimeoutError):
                await self._until_ended(self._held.wait(), HOLD_SECONDS)
        self._state = CallState.held

    async def unhold(self) -> None:
        """Take the other side off hold; returns once media flows again (at most ``HOLD_SECONDS``)."""
        self._alive()
        handle = self.handle
        async with self._keys:
            await self._command(lambda engine: engine.unhold(handle))
            with contextlib.suppress(TimeoutError):
                await self._until_ended(self._media_ready.wait(), HOLD_SECONDS)
        self._state = CallState.answered

    async def hangup(self, cause: HangupCause | str = HangupCause.normal) -> None:
        if self._ended.done():
            return
        cause = _known_cause(cause)
        if self._hangup_cause is None:
            self._hangup_cause = cause
        known = cause if isinstance(cause, HangupCause) else None
        status = 0 if self._answered_mono is not None else REJECT_STATUS.get(known or HangupCause.normal, 480)
        handle = self.handle
        with contextlib.suppress(CallError):
            await self._command(lambda engine: engine.hangup(handle, status))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._ended), 10)

    async def bridge(self, other: Call) -> None:
        self._alive()
        if not isinstance(other, PjsuaCall) or other.engine is not self.engine:
            raise CallError("only two legs of the same telephony worker can be bridged; transfer instead")
        other._alive()
        await self._media()
        await other._media()
        handle, other_handle = self.handle, other.handle
        await self._command(lambda engine: engine.bridge(handle, other_handle))

    async def audio_frames(self) -> AsyncIterator[bytes]:
        self._alive()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(FRAME_QUEUE_FRAMES)
        self._frame_queues.add(queue)
        try:
            await self._retap()
            while True:
                frame = await queue.get()
                if frame is None:
                    return
                yield frame
        finally:
            self._frame_queues.discard(queue)
            if not self._ended.done():
                with contextlib.suppress(CallError):
                    await self._retap()

    async def send_audio(self, pcm: bytes) -> None:
        self._alive()
        sink = self._frame_sink()
        while len(sink.outgoing) > SEND_BACKLOG_FRAMES:
            await self._until_ended(asyncio.sleep(0.1))
        sink.queue_pcm(pcm)
        if not self._tap_flags[1]:
            await self._retap(sending=True)

    async def recorded_as(self, within: float) -> CallerRecord | None:
        return await self.journal.caller_record(within)

    async def log_event(self, kind: str, body: dict[str, Any]) -> None:
        self.journal.record(kind, body)

    # -- tap

    def _frame_sink(self) -> FrameSink:
        if self._sink is None:
            self._sink = FrameSink(asyncio.get_running_loop(), self._fan_out)
        return self._sink

    def _fan_out(self, frames: list[bytes]) -> None:
        for queue in self._frame_queues:
            for frame in frames:
                _put_dropping_oldest(queue, frame)

    async def _retap(self, sending: bool | None = None) -> None:
        """Attach one tap port with what is needed now (receiving for readers, sending for send_audio)."""
        async with self._tap_lock:
            receive = bool(self._frame_queues)
            send = self._tap_flags[1] if sending is None else sending
            if (receive, send) == self._tap_flags and (self._tap is not None or not (receive or send)):
                return
            await self._media()
            handle, sink, old = self.handle, self._frame_sink(), self._tap

            def swap(engine: Any) -> int | None:
                if old is not None:
                    engine.detach_tap(handle, old)
                if not (receive or send):
                    return None
                tap: int = engine.attach_tap(handle, sink, receive=receive, send=send)
                return tap

            self._tap = await self._command(swap)
            self._tap_flags = (receive, send)


def _known_cause(cause: HangupCause | str) -> HangupCause | str:
    """A ``HangupCause`` when ``cause`` names one; else the caller's own word (an IVR's ``lookup_failed``)."""
    try:
        return HangupCause(cause)
    except ValueError:
        return str(cause)[:40]


def _put_dropping_oldest(queue: asyncio.Queue[bytes | None], item: bytes | None) -> None:
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(item)


async def _finalized(path: Path, within: float = 2.0) -> None:
    """Wait until the recorder's WAV header carries its length: pjmedia's conference bridge removes (and so
    closes) a recorder on its own clock thread shortly after it was destroyed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        try:
            with path.open("rb") as wav:
                if wav.read(8)[4:8] != b"\0\0\0\0":
                    return
        except OSError:
            return
        await asyncio.sleep(0.02)


def _storage_check(
    path: Path, kept: float, recorded: float, refused: str
) -> tuple[RecordingError | None, str]:
    """Whether the WAV at ``path`` holds what was recorded; if not, why, in words an admin can act on.

    pjmedia's WAV writer drops what it cannot write without telling anyone, so the loss is measured: the
    file against the time the recorder ran. A filesystem that is (nearly) full then is the reason."""
    missing = recorded - kept
    if not refused and missing <= max(RECORDING_SLACK_SECONDS, recorded * RECORDING_SLACK_SHARE):
        return None, ""
    try:
        stats = os.statvfs(path.parent)
        free: int | None = stats.f_bavail * stats.f_frsize
    except OSError:
        free = None
    where = f"{path.parent} has {free} bytes free" if free is not None else f"{path.parent} is unreadable"
    if free is not None and free < DISK_FULL_BYTES:
        lost = f"no space left: kept {kept:g} s of {recorded:g} s recorded" if not refused else refused
        return RecordingError.disk_full, f"{lost}; {where}"
    if refused:
        return RecordingError.recorder_failed, f"{refused}; {where}"
    return RecordingError.incomplete, f"kept {kept:g} s of {recorded:g} s recorded; {where}"


def _wav_seconds(path: Path) -> float:
    """Seconds of audio in the WAV at ``path``: what its header says, but no more than the file holds (a
    header written over a short file must not claim audio that never reached the disk)."""
    try:
        size = path.stat().st_size
    except OSError:
        return 0.0
    held = max(size - 44, 0) // 2
    try:
        with wave.open(str(path), "rb") as wav:
            frames, rate = wav.getnframes(), wav.getframerate()
            if frames:
                return round(min(frames, held) / rate, 3)
    except (OSError, EOFError, wave.Error):
        pass
    return round(held / SAMPLE_RATE, 3)
