"""ScriptedRecognizer: a working fake engine for tests of other packages (IVR, telephony, desktop).

It treats audio like a real engine — format checks, utterances cut by an energy VAD with the stream's
``EndpointConfig``, partials while speaking, one final per utterance with real timestamps — but the words
come from a script: the n-th utterance heard in a stream says the n-th line of its language's script
(nothing once the script is exhausted). Partials reveal the line a word (or, for Chinese, a character) every
``partial_every_ms`` of speech. Grammar mode answers the grammar phrase the line contains (or is closest
to), or nothing. Cheap enough to run inline, on the event loop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from asr.audio import Utterance, UtteranceSegmenter
from asr.errors import ModelMissing
from asr.phrases import closest_phrase
from asr.recognizer import (
    DecoderHandle,
    DecodingStream,
    EndpointConfig,
    RecognitionResult,
    Recognizer,
    RecognizerStream,
    check_stream_request,
)

_UNITS = re.compile(r"[\u3400-\u9fff]|[^\s\u3400-\u9fff]+\s*")


@dataclass
class ScriptedDecoder:
    lines: Sequence[str]
    language: str
    grammar: tuple[str, ...] | None
    endpoint: EndpointConfig
    confidence: float
    partial_every_ms: int

    def __post_init__(self) -> None:
        self.segmenter = UtteranceSegmenter(self.endpoint.trailing_silence_ms, self.endpoint.max_utterance_ms)
        self.heard = 0
        self.last_partial = ""

    def _line(self) -> str:
        line = self.lines[self.heard] if self.heard < len(self.lines) else ""
        if self.grammar:
            return closest_phrase(line, self.grammar) or ""
        return line

    def accept(self, pcm: bytes) -> list[RecognitionResult]:
        results: list[RecognitionResult] = []
        for utterance in self.segmenter.push(pcm):
            results.append(self._final(utterance.start, utterance.end))
        if self.segmenter.speaking:
            spoken_ms = (self.segmenter.position - self.segmenter.utterance_start) * 1000
            units = _UNITS.findall(self._line())
            shown = "".join(units[: int(spoken_ms // self.partial_every_ms)]).strip()
            if shown and shown != self.last_partial:
                self.last_partial = shown
                results.append(
                    RecognitionResult(
                        text=shown,
                        is_final=False,
                        start=self.segmenter.utterance_start,
                        end=self.segmenter.position,
                        language=self.language,
                    )
                )
        return [result for result in results if result.text]

    def finish(self) -> list[RecognitionResult]:
        utterance: Utterance | None = self.segmenter.flush()
        if utterance is None:
            position = self.segmenter.position
            return [RecognitionResult("", True, position, position, language=self.language)]
        return [self._final(utterance.start, utterance.end)]

    def _final(self, start: float, end: float) -> RecognitionResult:
        text = self._line()
        self.heard += 1
        self.last_partial = ""
        return RecognitionResult(
            text=text,
            is_final=True,
            start=start,
            end=end,
            confidence=self.confidence if text else None,
            phrase=(text or None) if self.grammar else None,
            language=self.language,
        )


class InlineHandle(DecoderHandle):
    def __init__(self, decoder: ScriptedDecoder) -> None:
        self.decoder = decoder

    async def accept(self, pcm: bytes) -> list[RecognitionResult]:
        return self.decoder.accept(pcm)

    async def finish(self) -> list[RecognitionResult]:
        return self.decoder.finish()

    async def close(self) -> None:
        return None


class ScriptedRecognizer(Recognizer):
    """``ScriptedRecognizer({"zh": ["我要退货，订单号 12345"]})``: each stream in zh says that line first."""

    engine: ClassVar[str] = "scripted"
    streaming: ClassVar[bool] = True

    def __init__(
        self,
        script: Mapping[str, Sequence[str]],
        *,
        confidence: float = 0.9,
        partial_every_ms: int = 300,
    ) -> None:
        self.script = {language: list(lines) for language, lines in script.items()}
        self.confidence = confidence
        self.partial_every_ms = partial_every_ms
        self.opened: list[str] = []  # languages of the streams opened, in order (for assertions)

    def languages(self) -> frozenset[str]:
        return frozenset(self.script)

    def open_stream(
        self,
        language: str,
        *,
        grammar: Sequence[str] | None = None,
        endpoint: EndpointConfig = EndpointConfig(),  # noqa: B008 - frozen
        sample_rate: int = 16_000,
    ) -> RecognizerStream:
        phrases = check_stream_request(grammar, sample_rate)
        if language not in self.script:
            raise ModelMissing(f"no script for {language!r} (scripted: {', '.join(sorted(self.script))})")
        self.opened.append(language)
        decoder = ScriptedDecoder(
            self.script[language], language, phrases, endpoint, self.confidence, self.partial_every_ms
        )
        return DecodingStream(InlineHandle(decoder), language=language, chunk_ms=20)
