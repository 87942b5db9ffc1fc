"""Whisper's Chinese comes out in simplified characters even when the model writes traditional ones.

The real model mostly follows the simplified prompt, so the conversion is pinned here with a stand-in model
behind faster-whisper's ``transcribe`` interface that answers in traditional characters; the recognizer,
its stream, worker thread and VAD are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asr.whisper_engine as whisper_engine
from asr import ModelCatalog, RecognitionResult, RecognizerStream, WhisperRecognizer
from tests.asr.speech import babble, frames, silence


@dataclass(frozen=True)
class Segment:
    text: str
    avg_logprob: float


@dataclass
class TraditionalChineseModel:
    """Answers every utterance with the next of ``lines``, as a model writing traditional characters."""

    lines: list[str]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def transcribe(self, audio: np.ndarray, **options: Any) -> tuple[Iterator[Segment], None]:
        self.calls.append({"seconds": audio.size / 16_000, **options})
        return iter([Segment(self.lines.pop(0), avg_logprob=-0.1)]), None


@dataclass(frozen=True)
class Stand:
    recognizer: WhisperRecognizer
    model: TraditionalChineseModel


@pytest.fixture
async def traditional(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stand]:
    directory = tmp_path / "traditional-whisper"  # its own model key: no other test shares this model
    directory.mkdir()
    (directory / "model.bin").write_bytes(b"")
    model = TraditionalChineseModel([])
    monkeypatch.setattr(whisper_engine, "load_model", lambda *args: model)
    recognizer = WhisperRecognizer(ModelCatalog(tmp_path, whisper_model=directory), workers=1)
    yield Stand(recognizer, model)
    await recognizer.aclose()


async def run(stream: RecognizerStream, pcm: bytes) -> list[RecognitionResult]:
    async with asyncio.timeout(30):
        for frame in frames(pcm):
            await stream.feed(frame)
        await stream.finish()
        return [result async for result in stream.results() if result.text]


async def test_traditional_model_output_reaches_the_caller_simplified(traditional: Stand) -> None:
    traditional.model.lines[:] = ["我要退貨，發票", "請幫我查詢訂單"]
    audio = babble(1.0) + silence(1.0) + babble(1.0) + silence(1.0)
    results = await run(traditional.recognizer.open_stream("zh"), audio)
    assert [result.text for result in results] == ["我要退货，发票", "请帮我查询订单"]
    assert all(result.is_final and result.language == "zh" for result in results)
    assert [call["language"] for call in traditional.model.calls] == ["zh", "zh"]
    assert traditional.model.calls[0]["initial_prompt"] == whisper_engine.PROMPTS["zh"]


async def test_grammar_phrase_matches_after_simplification(traditional: Stand) -> None:
    traditional.model.lines[:] = ["我要退貨"]
    stream = traditional.recognizer.open_stream("zh", grammar=["查询订单", "退货"])
    results = await run(stream, babble(1.0) + silence(1.0))
    assert [(result.text, result.phrase) for result in results] == [("我要退货", "退货")]


async def test_english_is_left_as_the_model_wrote_it(traditional: Stand) -> None:
    traditional.model.lines[:] = ["Return 發票 please"]  # converted only when the stream is zh
    results = await run(traditional.recognizer.open_stream("en"), babble(1.0) + silence(1.0))
    assert [result.text for result in results] == ["Return 發票 please"]
