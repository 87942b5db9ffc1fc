"""The speech recognition interface every engine implements, and the stream machinery they share.

Thread boundary: a ``RecognizerStream`` lives on the event loop and only queues audio. The decoding state
behind it lives in a worker thread or process (``asr.workers``) and is reached through a ``DecoderHandle``;
the stream hands the worker one chunk at a time, so a stream's decoder is never used by two threads at once
and the event loop never decodes.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from asr.errors import ModelMissing, RecognitionFailed, StreamClosed
from asr.pcm import BYTES_PER_SECOND, check_pcm, check_sample_rate
from core.errors import HuiliuError, Invalid

MAX_GRAMMAR_PHRASES = 200
MAX_PHRASE_CHARS = 100


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """When an utterance ends: after ``trailing_silence_ms`` of silence following speech, or when it has
    lasted ``max_utterance_ms``, whichever comes first."""

    trailing_silence_ms: int = 400
    max_utterance_ms: int = 15_000

    def __post_init__(self) -> None:
        if not 100 <= self.trailing_silence_ms <= 5_000:
            raise Invalid("trailing_silence_ms must be 100..5000", code="asr_endpoint")
        if not 1_000 <= self.max_utterance_ms <= 30_000:
            raise Invalid("max_utterance_ms must be 1000..30000", code="asr_endpoint")


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class RecognitionResult:
    """A partial (may still change) or final (settled) hypothesis for one utterance.

    ``start``/``end`` are seconds since the stream's first sample. ``confidence`` is 0..1 when the engine
    gives one. In grammar mode ``phrase`` is the phrase of the list that was recognised, if any.
    """

    text: str
    is_final: bool
    start: float
    end: float
    confidence: float | None = None
    words: tuple[Word, ...] = ()
    phrase: str | None = None
    language: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "is_final": self.is_final,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "confidence": None if self.confidence is None else round(self.confidence, 3),
            "words": [
                {
                    "text": word.text,
                    "start": round(word.start, 3),
                    "end": round(word.end, 3),
                    "confidence": None if word.confidence is None else round(word.confidence, 3),
                }
                for word in self.words
            ],
            "phrase": self.phrase,
            "language": self.language,
        }


class RecognizerStream(abc.ABC):
    """One audio stream (one side of a call): feed 16 kHz s16le mono PCM, read results, then finish.

    ``results()`` yields partials and finals in order and ends after ``finish()`` has produced the last
    final, which covers the audio after the previous final (its text may be empty). A failed engine
    ends ``results()`` and ``feed()`` with ``RecognitionFailed``; nothing hangs.
    """

    language: str

    @abc.abstractmethod
    async def feed(self, pcm: bytes) -> None:
        """Queue audio; waits only when the decoder has fallen far behind (back-pressure)."""

    @abc.abstractmethod
    def results(self) -> AsyncIterator[RecognitionResult]:
        """The results, for a single consumer."""

    @abc.abstractmethod
    async def finish(self) -> None:
        """No more audio: decode what is queued, emit the last final and end ``results()``."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Abandon the stream (the caller hung up): stop decoding, end ``results()``, free the decoder."""


class Recognizer(abc.ABC):
    """An engine: opens streams for the languages it has models for."""

    engine: ClassVar[str]
    streaming: ClassVar[bool]  # True: partial results while speaking; False: one final per utterance

    @abc.abstractmethod
    def languages(self) -> frozenset[str]:
        """Languages this recognizer can open a stream for right now (models installed)."""

    @abc.abstractmethod
    def open_stream(
        self,
        language: str,
        *,
        grammar: Sequence[str] | None = None,
        endpoint: EndpointConfig = EndpointConfig(),
        sample_rate: int = 16_000,
    ) -> RecognizerStream:
        """A new stream. ``grammar``: recognise only these phrases (IVR menus); None: free speech.

        Raises ``ModelMissing`` (naming the command to run) for a language without a model and
        ``AudioFormatError`` when ``sample_rate`` is not 16000.
        """

    def require(self, language: str) -> None:
        """Raise ``ModelMissing`` (saying how to install one) unless ``language`` has a model."""
        if language not in self.languages():
            served = ", ".join(sorted(self.languages())) or "none"
            raise ModelMissing(f"{self.engine} has no model for {language!r} (installed: {served})")

    async def preload(self, language: str) -> None:  # noqa: B027 - optional for engines
        """Load the language's model now rather than on the first audio."""

    async def aclose(self) -> None:  # noqa: B027 - optional for engines
        """Release worker threads or processes."""


def checked_grammar(grammar: Sequence[str] | None) -> tuple[str, ...] | None:
    if grammar is None:
        return None
    if isinstance(grammar, str):
        raise Invalid("grammar must be a list of phrases, not one string", code="asr_grammar")
    phrases = tuple(" ".join(str(phrase).split()) for phrase in grammar)
    if not phrases or len(phrases) > MAX_GRAMMAR_PHRASES:
        raise Invalid(f"grammar needs 1..{MAX_GRAMMAR_PHRASES} phrases", code="asr_grammar")
    for phrase in phrases:
        if not phrase or len(phrase) > MAX_PHRASE_CHARS:
            raise Invalid(
                f"grammar phrases must be 1..{MAX_PHRASE_CHARS} characters: {phrase!r}", code="asr_grammar"
            )
    return phrases


def check_stream_request(grammar: Sequence[str] | None, sample_rate: int) -> tuple[str, ...] | None:
    """The checks every engine makes before opening a stream; returns the normalised grammar."""
    check_sample_rate(sample_rate)
    return checked_grammar(grammar)


class DecoderHandle(abc.ABC):
    """The stream's decoder, wherever it lives; calls for one stream never overlap."""

    @abc.abstractmethod
    async def accept(self, pcm: bytes) -> list[RecognitionResult]: ...

    @abc.abstractmethod
    async def finish(self) -> list[RecognitionResult]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class _End:
    pass


_END: Final = _End()


@dataclass
class DecodingStream(RecognizerStream):
    """A stream that queues audio on the loop and passes it to its decoder in chunks.

    Chunks of at least ``chunk_ms`` are decoded (fewer hops to the worker; Kaldi likes 100 ms); what piled up
    while the worker was busy goes in one call, at most ``max_chunk_ms``. ``feed`` waits while more than
    ``max_backlog_ms`` is queued, which a live caller sees as the engine not keeping up.
    """

    handle: DecoderHandle
    language: str
    chunk_ms: int = 100
    max_chunk_ms: int = 1_000
    max_backlog_ms: int = 10_000
    _pending: bytearray = field(default_factory=bytearray, init=False)
    _queue: asyncio.Queue[RecognitionResult | _End] = field(default_factory=asyncio.Queue, init=False)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _drained: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _done: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _pump: asyncio.Task[None] | None = field(default=None, init=False)
    _finishing: bool = field(default=False, init=False)
    _error: HuiliuError | None = field(default=None, init=False)

    async def feed(self, pcm: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._finishing:
            raise StreamClosed("feed() after finish(): open a new stream")
        data = check_pcm(pcm)
        if not data:
            return
        self._pending += data
        self._start()
        self._wakeup.set()
        limit = self.max_backlog_ms * BYTES_PER_SECOND // 1000
        while len(self._pending) > limit and not self._done.is_set():
            self._drained.clear()
            await self._drained.wait()
        if self._error is not None:
            raise self._error

    async def results(self) -> AsyncIterator[RecognitionResult]:
        self._start()
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                if self._error is not None:
                    raise self._error
                return
            yield item

    async def finish(self) -> None:
        self._finishing = True
        self._start()
        self._wakeup.set()
        await self._done.wait()
        if self._error is not None:
            raise self._error

    async def aclose(self) -> None:
        self._finishing = True
        if self._pump is not None and not self._done.is_set():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if not self._done.is_set():
            await self._end()

    def _start(self) -> None:
        if self._pump is None and not self._done.is_set():
            self._pump = asyncio.get_running_loop().create_task(self._run(), name="asr-stream")

    async def _run(self) -> None:
        chunk = self.chunk_ms * BYTES_PER_SECOND // 1000
        largest = self.max_chunk_ms * BYTES_PER_SECOND // 1000
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while len(self._pending) >= chunk or (self._finishing and self._pending):
                    piece = bytes(self._pending[:largest])
                    del self._pending[:largest]
                    self._drained.set()
                    self._emit(await self.handle.accept(piece))
                if self._finishing:
                    self._emit(await self.handle.finish())
                    break
        except asyncio.CancelledError:
            raise
        except HuiliuError as exc:
            self._error = exc
        except Exception as exc:
            failure = RecognitionFailed(f"{self.language} decoder failed: {type(exc).__name__}: {exc}")
            failure.__cause__ = exc
            self._error = failure
        await self._end()

    def _emit(self, results: list[RecognitionResult]) -> None:
        for result in results:
            self._queue.put_nowait(result)

    async def _end(self) -> None:
        self._pending.clear()
        self._drained.set()
        with contextlib.suppress(Exception):
            await self.handle.close()
        self._queue.put_nowait(_END)
        self._done.set()
