"""``FakeCall``: a working in-memory ``Call`` for tests, flow simulation and demos.

It keeps the promises of ``ivr_flows.call.Call``: buffered DTMF with type-ahead, barge-in, hang-up that
interrupts everything, a recording that survives the hang-up. Time runs ``time_scale`` times as fast as
the durations asked for (prompts last their WAV length × ``time_scale``), so a test of a flow with
5-second timeouts takes milliseconds. The caller is scripted: digits typed ahead (``dtmf=``), actions tied
to the n-th prompt (``at_prompt``), speech audio queued for the media tap (``say_audio``).
"""

from __future__ import annotations

import asyncio
import uuid
import wave
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ivr_flows.call import CallHungUp

FRAME_BYTES = 640  # 20 ms of 16 kHz s16le mono
SAMPLE_RATE = 16_000


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
    ) -> None:
        self._call_id = call_id or f"fake-{uuid.uuid4().hex[:12]}"
        self._caller = caller
        self._called = called
        self._hung_up = asyncio.Event()
        self.time_scale = time_scale
        self.playback_seconds = playback_seconds
        self.record_audio = record_audio or b"\x00\x00" * SAMPLE_RATE
        self.log: list[tuple[Any, ...]] = []
        self.played: list[str] = []
        self.answered = False
        self.hangup_cause: str | None = None
        self.hung_up_by: str | None = None
        self.transferred_to: str | None = None
        self._buffer = ""
        self._changed = asyncio.Event()
        self._stop_playback = False
        self._audio: deque[bytes] = deque()
        self._prompt_actions: dict[int, _PromptAction] = {}
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
    def hung_up(self) -> asyncio.Event:
        return self._hung_up

    async def answer(self) -> None:
        self._check()
        if not self.answered:
            self.answered = True
            self._note(("answer",))

    async def play(self, path: str, *, barge_in: bool = False) -> None:
        self._check()
        self.played.append(path)
        self._note(("play", path, barge_in))
        action = self._prompt_actions.pop(len(self.played), None)
        if action is not None:
            self.press(action.press)
            if action.hang_up:
                self.hang_up_by_caller()
        self._stop_playback = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._duration(path) * self.time_scale
        while True:
            self._check()
            if (barge_in and self._buffer) or self._stop_playback:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await self._wait_for_change(remaining)

    async def stop_playback(self) -> None:
        self._stop_playback = True
        self._changed.set()

    async def collect_dtmf(
        self,
        max_digits: int,
        timeout: float,  # noqa: ASYNC109 - the inter-digit timeout of the protocol, not a deadline
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

    async def record(self, path: str, max_seconds: float) -> str:
        self._note(("record", path, max_seconds))
        seconds = min(max_seconds, len(self.record_audio) / 2 / SAMPLE_RATE)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds * self.time_scale
        while not self._hung_up.is_set() and not self._buffer and (remaining := deadline - loop.time()) > 0:
            await self._wait_for_change(remaining)
        with wave.open(path, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(self.record_audio[: int(seconds * SAMPLE_RATE) * 2])
        return path

    async def transfer(self, target: str, attended: bool = False) -> None:
        self._check()
        self._note(("transfer", target, attended))
        self.transferred_to = target
        self._end("transferred", by="transfer")

    async def hangup(self, cause: str = "normal") -> None:
        if not self._hung_up.is_set():
            self._note(("hangup", cause))
            self._end(cause, by="flow")

    async def audio_frames(self) -> AsyncIterator[bytes]:
        silence = b"\x00" * FRAME_BYTES
        while not self._hung_up.is_set():
            if self._audio:
                yield self._audio.popleft()
                await asyncio.sleep(0)
            else:
                yield silence
                await asyncio.sleep(0.02 * self.time_scale)

    # ------------------------------------------------------------------------------ the caller's side

    def press(self, digits: str) -> None:
        """The caller presses keys (they are buffered until collected)."""
        if digits:
            self._buffer += digits
            self._note(("pressed", digits))
            self._changed.set()

    def say_audio(self, pcm: bytes) -> None:
        """The caller speaks: 16 kHz s16le mono PCM the media tap will deliver."""
        for start in range(0, len(pcm), FRAME_BYTES):
            self._audio.append(pcm[start : start + FRAME_BYTES])

    def at_prompt(self, number: int, *, press: str = "", hang_up: bool = False) -> FakeCall:
        """When the ``number``-th prompt (1-based) starts playing, press ``press`` and/or hang up."""
        self._prompt_actions[number] = _PromptAction(press, hang_up)
        return self

    def hang_up_by_caller(self) -> None:
        self._end("caller_hangup", by="caller")

    async def reached(self, operation: str) -> None:
        """Wait until the flow has called ``operation`` (``"collect"``, ``"record"``, ``"play"``…)."""
        while not any(entry[0] == operation for entry in self.log):
            self._noted.clear()
            await self._noted.wait()

    # --------------------------------------------------------------------------------------- helpers

    def _note(self, entry: tuple[Any, ...]) -> None:
        self.log.append(entry)
        self._noted.set()

    def _end(self, cause: str, *, by: str) -> None:
        if not self._hung_up.is_set():
            self.hangup_cause = cause
            self.hung_up_by = by
            self._hung_up.set()
            self._changed.set()

    def _check(self) -> None:
        if self._hung_up.is_set():
            raise CallHungUp(self.hangup_cause or "hung up")

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
