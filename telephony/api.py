"""The call interface the IVR engine, the agent desktop and the demo handler program against.

A ``Call`` is one SIP leg seen from the platform's side. Everything is ``async`` and safe to use from the
event loop: the pjsua2 implementation (``telephony.calls.PjsuaCall``) posts each operation to the thread
that owns pjsua2, and ``ivr_flows.FakeCall`` is a working in-memory implementation for tests of code that
drives calls (and for ``huiliu flows simulate``).

Rules every implementation keeps:

* Any operation on a call that has ended raises ``CallEnded`` (with the cause), including an operation
  that was waiting when the call ended (a caller hanging up mid-prompt ends ``play`` with ``CallEnded``).
  ``record`` is the exception: a caller hanging up is how a voicemail normally ends, so it returns;
  ``hangup`` on an ended call is a no-op.
* Every method is safe to cancel: cancelling ``play`` stops the prompt, cancelling ``collect_dtmf``
  leaves unconsumed digits in the buffer.
* A hang-up ``cause`` is a ``HangupCause`` or any short snake_case word of the caller's own (an IVR's
  ``lookup_failed``); it is what ``call.ended`` records.
* DTMF digits are buffered from the moment the call exists. A digit pressed during a prompt stays in the
  buffer for the next ``collect_dtmf`` (barge-in); ``play(..., barge_in=True)`` also stops the prompt at
  the first digit.
* Audio is 16 kHz, mono, signed 16-bit little-endian PCM, 20 ms frames (640 bytes).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2


class CallState(enum.StrEnum):
    ringing = "ringing"  # inbound, not answered yet
    dialing = "dialing"  # outbound, not answered yet
    answered = "answered"
    held = "held"
    ended = "ended"


class Direction(enum.StrEnum):
    inbound = "inbound"
    outbound = "outbound"


class HangupCause(enum.StrEnum):
    """Why a call ended, as stored in ``call.ended`` events. The SIP status that goes with a cause when the
    call is refused before it was answered is ``REJECT_STATUS``."""

    normal = "normal"  # we hung up after the call was handled
    caller_hangup = "caller_hangup"  # the other side sent BYE
    cancelled = "cancelled"  # the caller gave up before we answered
    busy = "busy"
    rejected = "rejected"
    unknown_destination = "unknown_destination"
    unavailable = "unavailable"  # no capacity or shutting down
    no_answer = "no_answer"  # an outbound leg was not answered
    failed = "failed"  # SIP or media failure
    transferred = "transferred"
    agent_hangup = "agent_hangup"  # hung up from the web (agent or supervisor)
    handler_error = "handler_error"  # the flow handling the call raised
    node_lost = "node_lost"  # the telephony process owning the call died
    shutdown = "shutdown"


REJECT_STATUS: dict[HangupCause, int] = {
    HangupCause.busy: 486,
    HangupCause.rejected: 603,
    HangupCause.unknown_destination: 404,
    HangupCause.unavailable: 503,
    HangupCause.handler_error: 500,
    HangupCause.shutdown: 503,
}


class DtmfMethod(enum.StrEnum):
    rfc2833 = "rfc2833"
    sip_info = "sip_info"


class PlaybackOutcome(enum.StrEnum):
    finished = "finished"  # played to the end
    interrupted = "interrupted"  # a DTMF digit stopped it (barge_in=True)
    stopped = "stopped"  # stop_playback() was called


@dataclass(frozen=True)
class DtmfEvent:
    digit: str  # one of 0-9 * # A-D
    method: DtmfMethod


class RecordingError(enum.StrEnum):
    """Why a recording holds less than the call gave it (the call itself goes on regardless)."""

    disk_full = "disk_full"  # the filesystem of the recordings directory ran out of space
    incomplete = "incomplete"  # less audio than the recorder ran for, with space left (a write error)
    recorder_failed = "recorder_failed"  # the recorder could not be started (e.g. the directory)


@dataclass(frozen=True)
class Recording:
    """A finished recording: the WAV file (16 kHz mono s16) and why it stopped. ``error`` says when the
    file holds less than was recorded (``detail`` in words); ``duration_seconds`` is what the file holds."""

    id: str
    path: Path
    duration_seconds: float
    ended_by: str  # "max_seconds" | "terminator" | "hangup" | "stopped"
    error: RecordingError | None = None
    detail: str = ""
    recorded_seconds: float | None = None  # how long the recorder ran (None: not measured)


@dataclass(frozen=True)
class CallerRecord:
    """Where the platform keeps a call: the caller's customer (found or created by number) and the call's
    conversation on that customer's timeline."""

    customer_id: str
    conversation_id: str
    vip: bool = False


class CallError(Exception):
    """An operation on a call failed (SIP or media error); the call may still be up."""


class CallEnded(CallError):
    """The call has ended; nothing more can be done with it."""

    def __init__(self, cause: HangupCause | str) -> None:
        super().__init__(f"the call has ended ({cause})")
        self.cause = cause


class TransferFailed(CallError):
    def __init__(self, target: str, status: int, reason: str) -> None:
        super().__init__(f"transfer to {target} failed: {status} {reason}")
        self.target = target
        self.status = status
        self.reason = reason


Prompt = Path | str | bytes
"""What ``play`` accepts: a WAV file (path; 16-bit PCM, any rate) or raw 16 kHz mono s16le PCM bytes."""


@runtime_checkable
class Call(Protocol):
    """One call leg. Properties are plain values; methods post to the telephony engine."""

    @property
    def call_id(self) -> str:
        """The SIP Call-ID (unique per call; the conversation's ``external_ref``)."""

    @property
    def caller(self) -> str:
        """The calling number in E.164 (``+8613800138000``) when it is a phone number, else the SIP user;
        ``""`` when withheld (anonymous)."""

    @property
    def called(self) -> str:
        """The dialed number or SIP user (Request-URI user part)."""

    @property
    def direction(self) -> Direction: ...

    @property
    def state(self) -> CallState: ...

    @property
    def hung_up(self) -> asyncio.Event:
        """Set when the call has ended, whoever ended it."""

    async def answer(self) -> None:
        """Answer (200 OK) and wait until media flows; a no-op when already answered."""

    async def play(self, prompt: Prompt, *, barge_in: bool = False) -> PlaybackOutcome:
        """Play a prompt to the caller and wait until it finished, was interrupted or stopped."""

    async def stop_playback(self) -> None:
        """Stop whatever is playing; its ``play`` returns ``PlaybackOutcome.stopped``."""

    async def collect_dtmf(
        self,
        max_digits: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the IVR's inter-digit timeout, not a call deadline
        terminators: str = "#",
        first_digit_timeout: float | None = None,
    ) -> str:
        """Digits typed (including those buffered since the last collect), without the terminator.

        Waits ``first_digit_timeout`` (default ``timeout``) for the first digit, then ``timeout`` between
        digits; returns early at ``max_digits`` or a terminator; ``""`` when nothing was typed.
        """

    def clear_dtmf(self) -> None:
        """Forget buffered digits (e.g. before a menu that must not take earlier key presses)."""

    def on_dtmf(self, listener: Callable[[DtmfEvent], None]) -> Callable[[], None]:
        """Call ``listener`` for every digit as it arrives; returns the function that removes it."""

    async def record(self, path: Path | str, max_seconds: float, *, terminators: str = "#") -> Recording:
        """Record the caller to a WAV file (relative paths go under the recordings directory) until
        ``max_seconds``, a terminator digit or hang-up; metadata lands in MongoDB ``recordings``.

        A recording that cannot be stored (disk full, recorder refused) does not end or fail the call:
        the caller is listened to all the same and the result carries ``error``."""

    async def transfer(self, target: str, attended: bool = False) -> None:
        """Blind (REFER) or attended (consult ``target`` first, then REFER with Replaces) transfer.

        ``target`` is a SIP URI or a number/extension routed through the SIP front. Returns once the
        transfer succeeded (this leg then ends with cause ``transferred``); raises ``TransferFailed``.
        """

    async def hold(self) -> None: ...

    async def unhold(self) -> None: ...

    async def hangup(self, cause: HangupCause | str = HangupCause.normal) -> None:
        """End the call (BYE, or a final response from ``REJECT_STATUS`` when not answered yet)."""

    async def bridge(self, other: Call) -> None:
        """Connect this call's audio with ``other``'s, both ways (both legs on the same engine)."""

    def audio_frames(self) -> AsyncIterator[bytes]:
        """The caller's audio, 20 ms frames of 16 kHz mono s16le, until the call ends or the iterator
        is closed. Each iterator gets every frame; a consumer that falls behind loses the oldest."""

    async def send_audio(self, pcm: bytes) -> None:
        """Queue 16 kHz mono s16le PCM to be heard by the caller (mixed with any prompt playing)."""

    async def recorded_as(self, within: float) -> CallerRecord | None:
        """The caller's customer and this call's conversation, once the call's first write has them
        (written in the background as the call starts); ``None`` when not known within ``within``
        seconds (the database slow or down) or when the leg is not recorded on a timeline."""

    async def log_event(self, kind: str, body: dict[str, Any]) -> None:
        """Append a timeline event about this call (``ivr.step``, ``call.queued`` …) to the caller's
        customer and this call's conversation. Returns at once: the call's events are written in the
        order they happened, in the background, retried until MongoDB takes them (a database outage
        never stalls a caller)."""


CallHandler = Callable[[Call], Awaitable[None]]
"""Runs one inbound call from ringing to the end; the call is hung up (``normal``) when it returns."""


class CallRouter(Protocol):
    """Chooses what handles a call to ``called``; ``None`` refuses it with 404."""

    def route(self, called: str) -> CallHandler | None: ...
