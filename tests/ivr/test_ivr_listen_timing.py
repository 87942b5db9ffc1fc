"""An utterance engine (whisper) answers only after the caller stopped speaking, seconds later on a busy
CPU: a final that arrives after the listen node's timeout, within the decode allowance, still counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from asr import RecognitionResult
from ivr_flows.understanding import AsrSpeechRecognizer


class SlowStream:
    """Takes audio, then — only once finished — needs ``decode`` seconds to give its one final."""

    def __init__(self, decode: float) -> None:
        self.decode = decode
        self.finished = asyncio.Event()

    async def feed(self, pcm: bytes) -> None:
        await asyncio.sleep(0)

    async def finish(self) -> None:
        self.finished.set()

    async def results(self) -> AsyncIterator[RecognitionResult]:
        await self.finished.wait()
        await asyncio.sleep(self.decode)
        yield RecognitionResult("I want to return order number one two three four five", True, 0.0, 3.0, 0.76)

    async def aclose(self) -> None:
        pass


class SlowRecognizer:
    engine = "slow"

    def __init__(self, decode: float) -> None:
        self.decode = decode

    def open_stream(self, language: str, *, grammar: Sequence[str] | None = None, **_: Any) -> SlowStream:
        return SlowStream(self.decode)


async def caller_audio() -> AsyncIterator[bytes]:
    while True:  # the call's audio keeps coming until the node stops reading it
        await asyncio.sleep(0.02)
        yield bytes(640)


async def test_a_final_after_the_timeout_but_within_the_decode_allowance_is_heard() -> None:
    speech = AsrSpeechRecognizer(SlowRecognizer(decode=0.6), finish_grace=2.0)  # type: ignore[arg-type]
    heard = await speech.recognize(caller_audio(), language="en", grammar=None, timeout=0.3)
    assert heard is not None and heard.text.startswith("I want to return order number")
    assert heard.confidence == 0.76


async def test_a_final_later_than_the_allowance_is_not_waited_for() -> None:
    speech = AsrSpeechRecognizer(SlowRecognizer(decode=3.0), finish_grace=0.5)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await speech.recognize(caller_audio(), language="en", grammar=None, timeout=0.3) is None
    assert loop.time() - started < 2.0
