"""What the executor needs to understand a caller: a speech recognizer for ``listen`` nodes and an intent
analyzer for ``intent`` nodes — small interfaces, the adapter to the ``asr`` package, and a scripted fake.

Adapter point: ``AsrSpeechRecognizer(asr_recognizer)`` turns any ``asr.Recognizer`` (vosk, whisper, the
scripted one) into the ``SpeechRecognizer`` the executor takes. ``asr.nlu.Analyzer`` already is an
``IntentAnalyzer``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from core.log import get_logger

if TYPE_CHECKING:
    from asr import EndpointConfig, RecognitionResult, Recognizer

log = get_logger(__name__)


# ----------------------------------------------------------------------------------------------- speech


@dataclass(frozen=True, slots=True)
class Heard:
    """One utterance. ``confidence`` is None when the engine gives none (it then passes any threshold);
    ``phrase`` is the grammar phrase recognised, in grammar mode."""

    text: str
    confidence: float | None = None
    phrase: str | None = None


@dataclass(frozen=True, slots=True)
class Transcribed:
    """A recognition result as it happens, for the live transcript: ``body`` is the engine's result as
    JSON (``text``, ``start``/``end`` seconds into the stream, ``confidence``, ``words``, ``phrase``,
    ``language``, ``engine``)."""

    final: bool
    body: dict[str, Any] = field(default_factory=dict)


TranscriptListener = Callable[[Transcribed], Awaitable[None]]


def transcribed(result: RecognitionResult, engine: str) -> Transcribed:
    body = result.to_json()
    del body["is_final"]
    body["engine"] = engine
    return Transcribed(result.is_final, body)


class SpeechRecognizer(Protocol):
    async def recognize(
        self,
        audio: AsyncIterator[bytes],
        *,
        language: str,
        grammar: Sequence[str] | None,
        timeout: float,  # noqa: ASYNC109 - how long the caller may take to speak, part of the protocol
        listener: TranscriptListener | None = None,
    ) -> Heard | None:
        """The first utterance heard in ``audio`` (16 kHz s16le mono) within ``timeout`` seconds — what
        was said so far when the time is up — or None when nothing was said. ``listener`` hears every
        partial and non-empty final on the way (the live transcript)."""


class AsrSpeechRecognizer:
    """``SpeechRecognizer`` on an ``asr.Recognizer`` stream: audio is fed as it arrives, the first final
    result with text wins; at the timeout the stream is finished so a started sentence still counts."""

    def __init__(
        self, recognizer: Recognizer, endpoint: EndpointConfig | None = None, finish_grace: float = 2.0
    ) -> None:
        self.recognizer = recognizer
        self.endpoint = endpoint
        self.finish_grace = finish_grace

    async def recognize(
        self,
        audio: AsyncIterator[bytes],
        *,
        language: str,
        grammar: Sequence[str] | None,
        timeout: float,  # noqa: ASYNC109 - how long the caller may take to speak, part of the protocol
        listener: TranscriptListener | None = None,
    ) -> Heard | None:
        if self.endpoint is None:
            stream = self.recognizer.open_stream(language, grammar=grammar)
        else:
            stream = self.recognizer.open_stream(language, grammar=grammar, endpoint=self.endpoint)
        results = stream.results()

        async def pump() -> None:
            async for frame in audio:
                await stream.feed(frame)

        feeding = asyncio.create_task(pump(), name="ivr-listen-feed")
        engine = getattr(self.recognizer, "engine", "")

        async def first_final() -> Heard | None:
            async for result in results:
                if listener is not None and (result.text.strip() or not result.is_final):
                    try:
                        await listener(transcribed(result, engine))
                    except Exception:  # the transcript is a by-product: it must not deafen the IVR
                        log.warning("ivr.transcript_listener_failed", exc_info=True)
                if result.is_final and result.text.strip():
                    return Heard(result.text.strip(), result.confidence, result.phrase)
            return None

        # One reader for the whole wait: a timeout must not cancel the results' iteration, or the final
        # an utterance engine (whisper) delivers after the caller stopped speaking would be lost with it.
        heard = asyncio.create_task(first_final(), name="ivr-listen-results")
        try:
            try:
                async with asyncio.timeout(timeout):
                    return await asyncio.shield(heard)
            except TimeoutError:
                pass
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
            await stream.finish()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.finish_grace):
                    return await asyncio.shield(heard)
            return None
        finally:
            heard.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await heard
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeding
            await stream.aclose()
            closer = getattr(audio, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()


class ScriptedSpeech:
    """A fake recognizer: the n-th ``recognize`` hears the n-th scripted line (a ``Heard``, a string, or
    None for silence — which takes ``timeout × time_scale`` seconds, like a caller saying nothing)."""

    def __init__(self, lines: Sequence[Heard | str | None], *, time_scale: float = 0.0) -> None:
        self.lines = list(lines)
        self.time_scale = time_scale
        self.requests: list[tuple[str, tuple[str, ...] | None]] = []

    async def recognize(
        self,
        audio: AsyncIterator[bytes],
        *,
        language: str,
        grammar: Sequence[str] | None,
        timeout: float,  # noqa: ASYNC109 - how long the caller may take to speak, part of the protocol
        listener: TranscriptListener | None = None,
    ) -> Heard | None:
        self.requests.append((language, tuple(grammar) if grammar is not None else None))
        line = self.lines.pop(0) if self.lines else None
        if line is None:
            await asyncio.sleep(timeout * self.time_scale)
            return None
        await asyncio.sleep(0)
        heard = Heard(line, 0.9) if isinstance(line, str) else line
        if listener is not None:
            body = {"text": heard.text, "confidence": heard.confidence, "phrase": heard.phrase}
            await listener(Transcribed(True, {**body, "language": language, "engine": "scripted"}))
        return heard


# ---------------------------------------------------------------------------------------------- intents


class EntityLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def value(self) -> str: ...


class AnalysisLike(Protocol):
    @property
    def intent(self) -> str: ...
    @property
    def confidence(self) -> float: ...
    @property
    def entities(self) -> Sequence[EntityLike]: ...
    @property
    def priority(self) -> str: ...


class IntentAnalyzer(Protocol):
    """``asr.nlu.Analyzer`` fits. CPU-bound: the executor calls it in a worker thread."""

    def analyze(
        self, text: str, *, language: Literal["zh", "en", "mixed"] | None = None, recent_contacts: int = 0
    ) -> AnalysisLike:
        """``recent_contacts``: the caller's earlier contacts (any channel) lately, an urgency signal."""
