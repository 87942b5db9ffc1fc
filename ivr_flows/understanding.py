"""What the executor needs to understand a caller: a speech recognizer for ``listen`` nodes and an intent
analyzer for ``intent`` nodes — small interfaces, the adapter to the ``asr`` package, and a scripted fake.

Adapter point: ``AsrSpeechRecognizer(asr_recognizer)`` turns any ``asr.Recognizer`` (vosk, whisper, the
scripted one) into the ``SpeechRecognizer`` the executor takes. ``asr.nlu.Analyzer`` already is an
``IntentAnalyzer``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from core.log import get_logger

if TYPE_CHECKING:
    from asr import EndpointConfig, Recognizer

log = get_logger(__name__)


# ----------------------------------------------------------------------------------------------- speech


@dataclass(frozen=True, slots=True)
class Heard:
    """One utterance. ``confidence`` is None when the engine gives none (it then passes any threshold);
    ``phrase`` is the grammar phrase recognised, in grammar mode."""

    text: str
    confidence: float | None = None
    phrase: str | None = None


class SpeechRecognizer(Protocol):
    async def recognize(
        self,
        audio: AsyncIterator[bytes],
        *,
        language: str,
        grammar: Sequence[str] | None,
        timeout: float,  # noqa: ASYNC109 - how long the caller may take to speak, part of the protocol
    ) -> Heard | None:
        """The first utterance heard in ``audio`` (16 kHz s16le mono) within ``timeout`` seconds — what
        was said so far when the time is up — or None when nothing was said."""


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
        try:
            try:
                async with asyncio.timeout(timeout):
                    async for result in results:
                        if result.is_final and result.text.strip():
                            return Heard(result.text.strip(), result.confidence, result.phrase)
                return None
            except TimeoutError:
                pass
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
            await stream.finish()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.finish_grace):
                    async for result in results:
                        if result.is_final and result.text.strip():
                            return Heard(result.text.strip(), result.confidence, result.phrase)
            return None
        finally:
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
    ) -> Heard | None:
        self.requests.append((language, tuple(grammar) if grammar is not None else None))
        line = self.lines.pop(0) if self.lines else None
        if line is None:
            await asyncio.sleep(timeout * self.time_scale)
            return None
        await asyncio.sleep(0)
        return Heard(line, 0.9) if isinstance(line, str) else line


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

    def analyze(self, text: str, *, language: Literal["zh", "en", "mixed"] | None = None) -> AnalysisLike: ...
