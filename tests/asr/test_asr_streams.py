"""The stream contract every engine keeps, pinned with the scripted engine (fast, no model)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from dataclasses import dataclass, field

import pytest

from asr import (
    AudioFormatError,
    EndpointConfig,
    RecognitionFailed,
    RecognitionResult,
    ScriptedRecognizer,
    StreamClosed,
    character_error_rate,
)
from asr.phrases import closest_phrase, tidy
from asr.recognizer import DecoderHandle, DecodingStream, RecognizerStream
from asr.workers import WorkerHandle
from core.errors import Invalid
from tests.asr.speech import babble, frames, hum, silence, white_noise


async def run(stream: RecognizerStream, pcm: bytes) -> list[RecognitionResult]:
    collected: list[RecognitionResult] = []

    async def consume() -> None:
        async for result in stream.results():
            collected.append(result)

    task = asyncio.create_task(consume())
    for frame in frames(pcm):
        await stream.feed(frame)
    await stream.finish()
    await asyncio.wait_for(task, 10)
    return collected


async def test_caller_speaking_twice_gives_partials_then_two_finals_with_timestamps() -> None:
    recognizer = ScriptedRecognizer({"zh": ["我要退货", "订单号 12345"]})
    audio = silence(0.5) + babble(1.5) + silence(1.0) + babble(1.2) + silence(1.0)
    results = await run(recognizer.open_stream("zh"), audio)

    finals = [result for result in results if result.is_final]
    assert [final.text for final in finals] == ["我要退货", "订单号 12345", ""]
    first, second = finals[0], finals[1]
    assert 0.2 <= first.start <= 0.6 and 1.9 <= first.end <= 2.6
    assert 2.8 <= second.start <= 3.3 and second.end > second.start
    partials = [result for result in results if not result.is_final and result.end <= first.end]
    assert partials and all("我要退货".startswith(p.text) for p in partials)
    assert results.index(partials[0]) < results.index(first)


async def test_silence_gives_one_empty_final() -> None:
    results = await run(ScriptedRecognizer({"zh": ["不会出现"]}).open_stream("zh"), silence(3))
    assert [(r.text, r.is_final) for r in results] == [("", True)]


@pytest.mark.parametrize(
    "noise", [white_noise(8), white_noise(3, level=1.0), hum(8)], ids=["white", "full", "hum"]
)
async def test_steady_noise_is_not_taken_for_speech_and_speech_after_it_is(noise: bytes) -> None:
    endpoint = EndpointConfig(trailing_silence_ms=300, max_utterance_ms=2_000)
    stream = ScriptedRecognizer({"en": ["hello", "b"]}).open_stream("en", endpoint=endpoint)
    results = await run(stream, noise + babble(1.0) + silence(1.0))
    finals = [r for r in results if r.is_final]
    assert [final.text for final in finals] == ["hello", ""]
    # After a hum as loud as the voice, the floor comes down at the first dip between syllables.
    assert len(noise) / 32_000 <= finals[0].start <= len(noise) / 32_000 + 0.3


async def test_grammar_mode_answers_a_phrase_of_the_menu_or_nothing() -> None:
    menu = ["查询订单", "退货", "人工服务"]
    recognizer = ScriptedRecognizer({"zh": ["我要退货", "今天天气不错"]})
    results = await run(
        recognizer.open_stream("zh", grammar=menu), babble(1.2) + silence(1) + babble(1.2) + silence(1)
    )
    finals = [r for r in results if r.is_final]
    assert finals[0].text == "退货" and finals[0].phrase == "退货"
    assert finals[1].text == "" and finals[1].phrase is None


async def test_wrong_sample_rate_declared_by_the_caller_is_a_precise_error() -> None:
    with pytest.raises(AudioFormatError, match=r"sample rate 8000 Hz is not supported.*16000 Hz") as caught:
        ScriptedRecognizer({"zh": []}).open_stream("zh", sample_rate=8000)
    assert caught.value.code == "asr_sample_rate"


async def test_half_a_sample_is_refused_and_the_stream_goes_on() -> None:
    stream = ScriptedRecognizer({"zh": []}).open_stream("zh")
    with pytest.raises(AudioFormatError, match="641 bytes is not whole 16-bit samples"):
        await stream.feed(bytes(641))
    with pytest.raises(AudioFormatError, match="must be bytes"):
        await stream.feed("audio")  # type: ignore[arg-type]
    await stream.feed(bytes(640))
    await stream.finish()


async def test_feeding_after_finish_is_refused() -> None:
    stream = ScriptedRecognizer({"zh": []}).open_stream("zh")
    await stream.finish()
    with pytest.raises(StreamClosed):
        await stream.feed(bytes(640))


def test_bad_requests_are_refused_before_any_audio() -> None:
    recognizer = ScriptedRecognizer({"zh": []})
    with pytest.raises(Invalid, match="grammar needs"):
        recognizer.open_stream("zh", grammar=[])
    with pytest.raises(Invalid, match="list of phrases"):
        recognizer.open_stream("zh", grammar="退货")
    with pytest.raises(Invalid, match="trailing_silence_ms"):
        EndpointConfig(trailing_silence_ms=10)
    with pytest.raises(Invalid, match="max_utterance_ms"):
        EndpointConfig(max_utterance_ms=120_000)


class ExplodingDecoder(DecoderHandle):
    async def accept(self, pcm: bytes) -> list[RecognitionResult]:
        raise RuntimeError("worker died")

    async def finish(self) -> list[RecognitionResult]:
        return []

    async def close(self) -> None:
        return None


async def test_a_failing_engine_ends_the_stream_with_an_error_instead_of_hanging() -> None:
    stream = DecodingStream(ExplodingDecoder(), language="zh")
    await stream.feed(bytes(3200))
    with pytest.raises(RecognitionFailed, match="worker died"):
        async with asyncio.timeout(5):
            async for _ in stream.results():
                pass
    with pytest.raises(RecognitionFailed):
        await stream.feed(bytes(3200))
    with pytest.raises(RecognitionFailed):
        await stream.finish()


@dataclass
class BusyDecoder:
    """Takes a while over each chunk and notes whether it is closed while still working on one."""

    started: threading.Event
    log: list[str]
    busy: bool = False

    def accept(self, pcm: bytes) -> list[RecognitionResult]:
        self.busy = True
        self.started.set()
        time.sleep(0.3)
        self.busy = False
        self.log.append("accepted")
        return []

    def finish(self) -> list[RecognitionResult]:
        return []

    def close(self) -> None:
        self.log.append("closed while decoding" if self.busy else "closed")


@dataclass(frozen=True)
class BusySpec:
    started: threading.Event = field(default_factory=threading.Event)
    log: list[str] = field(default_factory=list)

    def build(self) -> BusyDecoder:
        return BusyDecoder(self.started, self.log)


async def test_hanging_up_mid_decode_closes_the_decoder_only_after_the_chunk_in_hand() -> None:
    # A worker thread cannot be interrupted; a pooled recognizer closed under a running decode would be
    # used by two threads at once.
    spec = BusySpec()
    with concurrent.futures.ThreadPoolExecutor(2) as executor:
        stream = DecodingStream(WorkerHandle(executor, "call-1", spec), language="zh", chunk_ms=20)
        await stream.feed(bytes(640))
        assert await asyncio.to_thread(spec.started.wait, 10)
        await stream.aclose()
    assert spec.log == ["accepted", "closed"]


async def test_abandoned_stream_ends_its_results() -> None:
    stream = ScriptedRecognizer({"zh": ["喂"]}).open_stream("zh")
    await stream.feed(babble(0.5))
    await stream.aclose()
    async with asyncio.timeout(5):
        assert [r async for r in stream.results()] == []


def test_transcript_text_helpers() -> None:
    assert tidy("我 要  退货 ok", "zh") == "我要退货 ok"
    assert tidy(" hello   world ", "en") == "hello world"
    assert character_error_rate("我要退货。", "我要退 货") == 0.0
    assert character_error_rate("카드 번호", "카드 번호를") == pytest.approx(0.25)
    assert closest_phrase("查询订单吧", ["查询订单", "退货"]) == "查询订单"
    assert closest_phrase("", ["退货"]) is None
