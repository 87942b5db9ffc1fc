"""Speech recognition — the public surface other packages use.

recognizer = build_recognizer(settings)            # vosk where installed, whisper as the zh/en fallback
stream = recognizer.open_stream("zh", endpoint=EndpointConfig(trailing_silence_ms=400))
recorder = TranscriptRecorder(omni, bus)            # finals → timeline, partials → bus
task = asyncio.create_task(recorder.record(stream, customer_id=..., source=f"{call_id}:caller"))
await stream.feed(pcm_16k_s16le_mono); ...; await stream.finish(); await task

Engines load their models lazily in worker threads/processes; importing this package loads no model, and
the names below are imported on first use, so ``import asr.nlu`` or the ``huiliu`` CLI stay light.
(``asr.nlu`` — intents, entities, sentiment — is a separate subpackage.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asr.engines import LanguageRouter, build_recognizer
    from asr.errors import (
        AudioFormatError,
        ChecksumMismatch,
        FetchError,
        ModelMissing,
        RecognitionFailed,
        StreamClosed,
    )
    from asr.models import OFFICIAL_VOSK_MODELS, ModelCatalog
    from asr.pcm import FORMAT, SAMPLE_RATE, read_wav
    from asr.phrases import character_error_rate
    from asr.recognizer import EndpointConfig, RecognitionResult, Recognizer, RecognizerStream, Word
    from asr.scripted import ScriptedRecognizer
    from asr.transcripts import TranscriptRecorder
    from asr.vosk_engine import VoskRecognizer
    from asr.whisper_engine import WhisperRecognizer

_HOME = {
    "FORMAT": "asr.pcm",
    "SAMPLE_RATE": "asr.pcm",
    "read_wav": "asr.pcm",
    "LanguageRouter": "asr.engines",
    "build_recognizer": "asr.engines",
    "AudioFormatError": "asr.errors",
    "ChecksumMismatch": "asr.errors",
    "FetchError": "asr.errors",
    "ModelMissing": "asr.errors",
    "RecognitionFailed": "asr.errors",
    "StreamClosed": "asr.errors",
    "OFFICIAL_VOSK_MODELS": "asr.models",
    "ModelCatalog": "asr.models",
    "character_error_rate": "asr.phrases",
    "EndpointConfig": "asr.recognizer",
    "RecognitionResult": "asr.recognizer",
    "Recognizer": "asr.recognizer",
    "RecognizerStream": "asr.recognizer",
    "Word": "asr.recognizer",
    "ScriptedRecognizer": "asr.scripted",
    "TranscriptRecorder": "asr.transcripts",
    "VoskRecognizer": "asr.vosk_engine",
    "WhisperRecognizer": "asr.whisper_engine",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'asr' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)


__all__ = [
    "FORMAT",
    "OFFICIAL_VOSK_MODELS",
    "SAMPLE_RATE",
    "AudioFormatError",
    "ChecksumMismatch",
    "EndpointConfig",
    "FetchError",
    "LanguageRouter",
    "ModelCatalog",
    "ModelMissing",
    "RecognitionFailed",
    "RecognitionResult",
    "Recognizer",
    "RecognizerStream",
    "ScriptedRecognizer",
    "StreamClosed",
    "TranscriptRecorder",
    "VoskRecognizer",
    "WhisperRecognizer",
    "Word",
    "build_recognizer",
    "character_error_rate",
    "read_wav",
]
