"""Choosing the engine per language: vosk (streaming) where a vosk model is installed, else whisper."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from asr.errors import ModelMissing
from asr.models import ModelCatalog
from asr.recognizer import EndpointConfig, Recognizer, RecognizerStream
from asr.vosk_engine import VoskRecognizer
from asr.whisper_engine import WhisperRecognizer
from core.settings import Settings


class LanguageRouter(Recognizer):
    """Opens each stream with the first of ``engines`` that serves the language."""

    engine: ClassVar[str] = "auto"
    streaming: ClassVar[bool] = False  # depends on the language: see engine_for(language).streaming

    def __init__(self, engines: Sequence[Recognizer]) -> None:
        if not engines:
            raise ValueError("LanguageRouter needs at least one engine")
        self.engines = list(engines)

    def languages(self) -> frozenset[str]:
        return frozenset().union(*(engine.languages() for engine in self.engines))

    def engine_for(self, language: str) -> Recognizer:
        for engine in self.engines:
            if language in engine.languages():
                return engine
        # The first engine's refusal is the useful one (vosk's names the fetch command).
        self.engines[0].require(language)
        raise ModelMissing(f"no speech model for {language!r}")

    def open_stream(
        self,
        language: str,
        *,
        grammar: Sequence[str] | None = None,
        endpoint: EndpointConfig = EndpointConfig(),  # noqa: B008 - frozen
        sample_rate: int = 16_000,
    ) -> RecognizerStream:
        return self.engine_for(language).open_stream(
            language, grammar=grammar, endpoint=endpoint, sample_rate=sample_rate
        )

    async def preload(self, language: str) -> None:
        await self.engine_for(language).preload(language)

    async def aclose(self) -> None:
        for engine in self.engines:
            await engine.aclose()


def catalog_from_settings(settings: Settings) -> ModelCatalog:
    return ModelCatalog(settings.asr_model_dir, settings.asr_whisper_model)


def build_recognizer(settings: Settings) -> Recognizer:
    """The recognizer ``HUILIU_ASR_ENGINE`` asks for: auto (vosk, whisper as fallback), vosk or whisper."""
    catalog = catalog_from_settings(settings)
    vosk = VoskRecognizer(catalog, workers=settings.asr_workers)
    whisper = WhisperRecognizer(catalog, workers=settings.asr_workers)
    if settings.asr_engine == "vosk":
        return vosk
    if settings.asr_engine == "whisper":
        return whisper
    return LanguageRouter([vosk, whisper])
