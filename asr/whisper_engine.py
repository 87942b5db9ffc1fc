"""WhisperRecognizer: utterance-level recognition with faster-whisper, the zh/en fallback without vosk models.

Whisper does not stream: a stream buffers audio, cuts it into utterances with an energy VAD (the stream's
``EndpointConfig``), and transcribes each utterance when it ends — one final per utterance, no partials.
Silero VAD (shipped inside faster-whisper) runs again on each utterance so noise without speech gives an
empty final instead of a hallucinated sentence. Chinese output is converted to simplified characters.

Thread boundary: transcription runs only in ``asr.workers`` functions on this recognizer's thread pool;
CTranslate2 releases the GIL, and the model (loaded once per process) serves ``workers`` transcriptions at
a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from asr import workers
from asr.models import WHISPER_LANGUAGES, ModelCatalog, WhisperSource
from asr.phrases import closest_phrase, tidy
from asr.recognizer import (
    DecodingStream,
    EndpointConfig,
    RecognitionResult,
    Recognizer,
    RecognizerStream,
    check_stream_request,
)
from core.errors import Invalid

if TYPE_CHECKING:
    from asr.audio import Utterance

# Whisper's decoder follows the prompt's script and style: simplified characters with punctuation.
PROMPTS = {"zh": "以下是普通话的句子。"}


def load_model(source: WhisperSource, compute_type: str, cpu_threads: int, num_workers: int) -> Any:
    """Load the CTranslate2 whisper model on the CPU. Blocks for seconds; never downloads."""
    from faster_whisper import WhisperModel

    options: dict[str, Any] = {
        "device": "cpu",
        "compute_type": compute_type,
        "cpu_threads": cpu_threads,
        "num_workers": num_workers,
    }
    if source.directory is not None:
        return WhisperModel(str(source.directory), **options)
    return WhisperModel(source.name, files=source.files(), **options)


def simplified(text: str) -> str:
    import zhconv

    converted: str = zhconv.convert(text, "zh-cn")
    return converted


@dataclass(frozen=True)
class WhisperSpec:
    source: WhisperSource
    language: str
    grammar: tuple[str, ...] | None
    endpoint: EndpointConfig
    compute_type: str
    cpu_threads: int
    num_workers: int
    beam_size: int

    def build(self) -> WhisperDecoder:
        return WhisperDecoder(self)


class WhisperDecoder:
    """One stream: VAD segmentation in, one transcription per utterance out. Runs in a worker."""

    def __init__(self, spec: WhisperSpec) -> None:
        self.spec = spec
        source = spec.source
        key = f"{source.name}:{source.directory}:{spec.compute_type}:{spec.cpu_threads}x{spec.num_workers}"
        self.model = workers.shared_model(
            "whisper",
            key,
            lambda: load_model(spec.source, spec.compute_type, spec.cpu_threads, spec.num_workers),
        )
        endpoint = spec.endpoint
        from asr.audio import UtteranceSegmenter  # NumPy, imported when a stream opens

        self.segmenter = UtteranceSegmenter(endpoint.trailing_silence_ms, endpoint.max_utterance_ms)

    def accept(self, pcm: bytes) -> list[RecognitionResult]:
        results = [self._transcribe(utterance) for utterance in self.segmenter.push(pcm)]
        return [result for result in results if result.text]

    def finish(self) -> list[RecognitionResult]:
        utterance = self.segmenter.flush()
        if utterance is None:
            position = self.segmenter.position
            return [RecognitionResult("", True, position, position, language=self.spec.language)]
        return [self._transcribe(utterance)]

    def close(self) -> None:
        """Nothing to release: the model is shared and the segmenter is garbage."""

    def _prompt(self) -> str | None:
        if self.spec.grammar:
            separator = "，" if self.spec.language == "zh" else ", "
            return separator.join(self.spec.grammar)
        return PROMPTS.get(self.spec.language)

    def _transcribe(self, utterance: Utterance) -> RecognitionResult:
        import numpy as np

        audio = np.frombuffer(utterance.pcm, dtype="<i2").astype(np.float32) / 32768.0
        segments, _info = self.model.transcribe(
            audio,
            language=self.spec.language,
            task="transcribe",
            beam_size=self.spec.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=True,
            initial_prompt=self._prompt(),
        )
        pieces = [segment for segment in segments if segment.text.strip()]
        text = tidy("".join(segment.text for segment in pieces), self.spec.language)
        if self.spec.language == "zh":
            text = simplified(text)
        confidence = (
            sum(math.exp(segment.avg_logprob) for segment in pieces) / len(pieces) if pieces else None
        )
        return RecognitionResult(
            text=text,
            is_final=True,
            start=utterance.start,
            end=utterance.end,
            confidence=confidence,
            phrase=closest_phrase(text, self.spec.grammar) if self.spec.grammar else None,
            language=self.spec.language,
        )


class WhisperRecognizer(Recognizer):
    """Utterance-level zh/en recognition with the packaged multilingual whisper base model.

    ``compute_type`` "float32" by default: CTranslate2's int8 is about 30 % faster here but not
    deterministic across processes (the same audio gave different words on different runs), and a
    transcript that changes when a node retries is worse than a slower one.
    """

    engine: ClassVar[str] = "whisper"
    streaming: ClassVar[bool] = False

    def __init__(
        self,
        catalog: ModelCatalog,
        *,
        workers: int = 2,
        cpu_threads: int = 1,
        beam_size: int = 5,
        compute_type: str = "float32",
    ) -> None:
        if workers < 1 or cpu_threads < 1 or beam_size < 1:
            raise Invalid("workers, cpu_threads and beam_size must be at least 1")
        self.catalog = catalog
        self.compute_type = compute_type
        self.workers = workers
        self.cpu_threads = cpu_threads
        self.beam_size = beam_size
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None

    def languages(self) -> frozenset[str]:
        return WHISPER_LANGUAGES if self.catalog.whisper_source() is not None else frozenset()

    def open_stream(
        self,
        language: str,
        *,
        grammar: Sequence[str] | None = None,
        endpoint: EndpointConfig = EndpointConfig(),  # noqa: B008 - frozen
        sample_rate: int = 16_000,
    ) -> RecognizerStream:
        phrases = check_stream_request(grammar, sample_rate)
        handle = workers.WorkerHandle(
            self._executor(), uuid.uuid4().hex, self._spec(language, phrases, endpoint)
        )
        return DecodingStream(handle, language=language)

    async def preload(self, language: str) -> None:
        spec = self._spec(language, None, EndpointConfig())
        await asyncio.get_running_loop().run_in_executor(self._executor(), workers.preload, spec)

    async def aclose(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    def _spec(self, language: str, grammar: tuple[str, ...] | None, endpoint: EndpointConfig) -> WhisperSpec:
        if language not in WHISPER_LANGUAGES:
            raise Invalid(
                f"whisper serves {', '.join(sorted(WHISPER_LANGUAGES))}, not {language!r}",
                code="asr_language",
            )
        return WhisperSpec(
            source=self.catalog.require_whisper(),
            language=language,
            grammar=grammar,
            endpoint=endpoint,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            num_workers=self.workers,
            beam_size=self.beam_size,
        )

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._threads is None:
            self._threads = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="asr-whisper"
            )
        return self._threads
