"""``FakeCall``: a working in-memory ``telephony.api.Call`` for tests, ``huiliu flows simulate`` and demos.

It keeps the promises of ``telephony.api.Call``: buffered DTMF with type-ahead, barge-in, a hang-up that
interrupts everything with ``CallEnded``, a recording that survives the hang-up. Time runs ``time_scale``
times as fast as the durations asked for (prompts last their WAV length × ``time_scale``), so a test of a
flow with 5-second timeouts takes milliseconds. The caller is scripted: digits typed ahead (``dtmf=``),
actions tied to the n-th prompt (``at_prompt``), speech audio queued for the media tap (``say_audio``).
What the flow logs with ``log_event`` is kept in ``events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
import wave
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telephony.api import (
    FRAME_BYTES,
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
)


@dataclass
class _PromptAction:
    press: str = ""
    hang_up: bool = False


class FakeCall:
    def __init__(
        self,
        *,
        caller: str = "+8613800138000",
        called: str = "4008001234",
        call_id: str | None = None,
        dtmf: str = "",
        time_scale: float = 0.01,
        playback_seconds: float | None = None,
        record_audio: bytes = b"",
        recordings_dir: Path | None = None,
    ) -> None:
        self._call_id = call_id or f"fake-{uuid.uuid4().hex[:12]}"
        self._caller = caller
        self._called = called
        self._hung_up = asyncio.Event()
        self.time_scale = time_scale
        self.playback_seconds = playback_seconds
        self.record_audio = record_audio or b"\x00\x00" * SAMPLE_RATE
        self.recordings_dir = recordings_dir or Path(tempfile.gettempdir()) / "huiliu-fake-recordings"
        self.log: list[tuple[Any, ...]] = []
        self.played: list[str] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.sent_audio = bytearray()
        self.answered = False
        self.held = False
        self.hangup_cause: str | None = None
        self.hung_up_by: str | None = None
        self.transferred_to: str | None = None
        self.record_as: CallerRecord | None = None
        self._buffer = ""
        self._changed = asyncio.Event()
        self._stop_playback = False
        self._audio: deque[bytes] = deque()
        self._prompt_actions: dict[int, _PromptAction] = {}
        self._dtmf_listeners: list[Callable[[DtmfEvent], None]] = []
        self._noted = asyncio.Event()
        self.press(dtmf)

    # ---------------------------------------------------------------------------- the Call protocol

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
        return Direction.inbound

    @property
    def state(self) -> CallState:
        if self._hung_up.is_set():
            return CallState.ended
        if self.held:
            return CallState.held
        return CallState.answered if self.answered else CallState.ringing

    @property
    def hung_up(self) -> asyncio.Event:
        return self._hung_up

    async def answer(self) -> None:
        self._check()
        if not self.answered:
            self.answered = True
            self._note(("answer",))

    async def play(self, prompt: Prompt, *, barge_in: bool = False) -> PlaybackOutcome:
        self._check()
        path = str(prompt) if not isinstance(prompt, bytes) else ""
        self.played.append(path)
        self._note(("play", path, barge_in))
        action = self._prompt_actions.pop(len(self.played), None)
        if action is not None:
            self.press(action.press)
            if action.hang_up:
                self.hang_up_by_caller()
        self._stop_playback = False
        seconds = len(prompt) / 2 / SAMPLE_RATE if isinstance(prompt, bytes) else self._duration(path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds * self.time_scale
        while True:
            self._check()
            if barge_in and self._buffer:
                return PlaybackOutcome.interrupted
            if self._stop_playback:
                return PlaybackOutcome.stopped
            remaining = deadline - loop.time()
            if remaining <= 0:
                return PlaybackOutcome.finished
            await self._wait_for_change(remaining)

    async def stop_playback(self) -> None:
        self._stop_playback = True
        self._changed.set()

    async def collect_dtmf(
        self,
        max_digits: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the IVR's inter-digit timeout, not a call deadline
        terminators: str = "#",
        first_digit_timeout: float | None = None,
    ) -> str:
        self._check()
        self._note(("collect", max_digits, timeout, terminators, first_digit_timeout))
        digits = ""
        wait = timeout if first_digit_timeout is None else first_digit_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait * self.time_scale
        while len(digits) < max_digits:
            self._check()
            if not self._buffer:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self._wait_for_change(remaining)
                continue
            key, self._buffer = self._buffer[0], self._buffer[1:]
            if key in terminators:
                break
            digits += key
            deadline = loop.time() + timeout * self.time_scale
        return digits

    def clear_dtmf(self) -> None:
        self._buffer = ""

    def on_dtmf(self, listener: Callable[[DtmfEvent], None]) -> Callable[[], None]:
        self._dtmf_listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._dtmf_listeners.remove(listener)

        return remove

    async def record(self, path: Path | str, max_seconds: float, *, terminators: str = "#") -> Recording:
        self._note(("record", str(path), max_seconds))
        target = Path(path) if Path(path).is_absolute() else self.recordings_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        seconds = min(max_seconds, len(self.record_audio) / 2 / SAMPLE_RATE)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + seconds * self.time_scale
        ended_by = "max_seconds"
        while (remaining := deadline - loop.time()) > 0:
            if self._hung_up.is_set():
                ended_by = "hangup"
                break
            if any(key in terminators for key in self._buffer):
                ended_by = "terminator"
                break
            await self._wait_for_change(remaining)
        if ended_by != "max_seconds" and self.time_scale > 0:
            seconds = min(seconds, (loop.time() - started) / self.time_scale)
        with wave.open(str(target), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(self.record_audio[: int(seconds * SAMPLE_RATE) * 2])
        return Recording(uuid.uuid4().hex, target, round(seconds, 3), ended_by)

    async def transfer(self, target: str, attended: bool = False) -> None:
        self._check()
        self._note(("transfer", target, attended))
        self.transferred_to = target
        self._end(HangupCause.transferred, by="transfer")

    async def hold(self) -> None:
        self._check()
        self.held = True

    async def unhold(self) -> None:
        self._check()
        self.held = False

    async def hangup(self, cause: HangupCause | str = HangupCause.normal) -> None:
        if not self._hung_up.is_set():
            self._note(("hangup", str(cause)))
            self._end(str(cause), by="flow")

    async def bridge(self, other: Call) -> None:
        raise CallError("a fake call has no media to bridge")

    async def audio_frames(self) -> AsyncIterator[bytes]:
        silence = b"\x00" * FRAME_BYTES
        while not self._hung_up.is_set():
            if self._audio:
                yield self._audio.popleft()
                await asyncio.sleep(0)
            else:
                yield silence
                await asyncio.sleep(0.02 * self.time_scale)

    async def send_audio(self, pcm: bytes) -> None:
        self._check()
        self.sent_audio += pcm

    async def recorded_as(self, within: float) -> CallerRecord | None:
        return self.record_as  # a test sets it to act as a call the platform has recorded

    async def log_event(self, kind: str, body: dict[str, Any]) -> None:
        self.events.append((kind, dict(body)))
        self._note(("event", kind))

    # ------------------------------------------------------------------------------ the caller's side

    def press(self, digits: str) -> None:
        """The caller presses keys (they are buffered until collected)."""
        if digits:
            self._buffer += digits
            self._note(("pressed", digits))
            self._changed.set()
            for digit in digits:
                for listener in list(self._dtmf_listeners):
                    listener(DtmfEvent(digit, DtmfMethod.rfc2833))

    def say_audio(self, pcm: bytes) -> None:
        """The caller speaks: 16 kHz s16le mono PCM the media tap will deliver."""
        for start in range(0, len(pcm), FRAME_BYTES):
            self._audio.append(pcm[start : start + FRAME_BYTES])

    def at_prompt(self, number: int, *, press: str = "", hang_up: bool = False) -> FakeCall:
        """When the ``number``-th prompt (1-based) starts playing, press ``press`` and/or hang up."""
        self._prompt_actions[number] = _PromptAction(press, hang_up)
        return self

    def hang_up_by_caller(self) -> None:
        self._end(HangupCause.caller_hangup, by="caller")

    async def reached(self, operation: str) -> None:
        """Wait until the flow has called ``operation`` (``"collect"``, ``"record"``, ``"play"``…)."""
        while not any(entry[0] == operation for entry in self.log):
            self._noted.clear()
            await self._noted.wait()

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [body for logged, body in self.events if logged == kind]

    # --------------------------------------------------------------------------------------- helpers

    def _note(self, entry: tuple[Any, ...]) -> None:
        self.log.append(entry)
        self._noted.set()

    def _end(self, cause: str, *, by: str) -> None:
        if not self._hung_up.is_set():
            self.hangup_cause = str(cause)
            self.hung_up_by = by
            self._hung_up.set()
            self._changed.set()

    def _check(self) -> None:
        if self._hung_up.is_set():
            raise CallEnded(self.hangup_cause or HangupCause.caller_hangup)

    async def _wait_for_change(self, seconds: float) -> None:
        self._changed.clear()
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                await self._changed.wait()
        except TimeoutError:
            return

    def _duration(self, path: str) -> float:
        if self.playback_seconds is not None:
            return self.playback_seconds
        try:
            with wave.open(path, "rb") as audio:
                return audio.getnframes() / audio.getframerate()
        except (OSError, wave.Error, EOFError):
            return 0.0
