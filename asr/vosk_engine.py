"""VoskRecognizer: streaming recognition with Kaldi through vosk — partials while speaking, finals at pauses.

Thread boundary: decoding happens only in ``asr.workers`` functions, run in a ``ThreadPoolExecutor`` (mode
"thread", the default: libvosk releases the GIL, so threads decode in parallel and share one model) or in
worker processes each holding its own copy of the model (mode "process"; a stream is pinned to one process
because its Kaldi state cannot move). ``bench/asr.py`` measures both.

Endpointing is per stream: Kaldi's own endpoint rules are model-wide (read from ``conf/model.conf`` at load),
so the model is loaded through a view of its directory with those rules pushed out of the way, and the
decoder ends an utterance itself after ``trailing_silence_ms`` of silence following speech (an energy VAD) or
at ``max_utterance_ms``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import multiprocessing
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from asr import workers
from asr.audio import BYTES_PER_SECOND, SAMPLE_RATE, EnergyVad, seconds
from asr.models import ModelCatalog
from asr.phrases import closest_phrase, tidy
from asr.recognizer import (
    DecodingStream,
    EndpointConfig,
    RecognitionResult,
    Recognizer,
    RecognizerStream,
    Word,
    check_stream_request,
)
from core.errors import Invalid

UNKNOWN = "[unk]"
PIECE_BYTES = BYTES_PER_SECOND // 10  # endpoint checks and partials every 100 ms of audio
# Kaldi's rules 2-5 (pauses after speech, utterance length) are ours to apply per stream; rule 1 (five
# seconds with nothing but silence) stays, so long silences do not grow one endless utterance.
KALDI_RULES_OFF = (
    "--endpoint.rule2.min-trailing-silence=1000",
    "--endpoint.rule3.min-trailing-silence=1000",
    "--endpoint.rule4.min-trailing-silence=1000",
    "--endpoint.rule5.min-utterance-length=1000",
)
KALDI_RULES_OFF_KEYS = tuple(rule.split("=")[0] for rule in KALDI_RULES_OFF)
MAX_SEGMENT_CHARS = 8
MIN_SPEECH_MS = 100  # voiced audio an utterance needs before it can end at a pause or carry text

Mode = Literal["thread", "process"]


def load_model(path: str) -> Any:
    """Load a vosk model with Kaldi's endpoint rules disabled (see module docstring). Blocks for seconds."""
    import vosk

    vosk.SetLogLevel(-1)
    source = Path(path)
    with tempfile.TemporaryDirectory(prefix="huiliu-vosk-") as view_dir:
        view = Path(view_dir)
        for entry in source.iterdir():
            if entry.name != "conf":
                (view / entry.name).symlink_to(entry.resolve())
        (view / "conf").mkdir()
        for entry in (source / "conf").iterdir():
            if entry.name != "model.conf":
                (view / "conf" / entry.name).symlink_to(entry.resolve())
        original = source / "conf" / "model.conf"
        lines = original.read_text().splitlines() if original.is_file() else []
        kept = [line for line in lines if not line.strip().startswith(KALDI_RULES_OFF_KEYS)]
        (view / "conf" / "model.conf").write_text("\n".join([*kept, *KALDI_RULES_OFF]) + "\n")
        return vosk.Model(str(view))


def grammar_words(model: Any, language: str, phrase: str) -> str:
    """``phrase`` as words of the model's vocabulary: spaced words are looked up, an unspaced Chinese
    phrase is split greedily into the longest known words. Unknown words are a precise error (vosk itself
    would drop them silently)."""
    words: list[str] = []
    for token in phrase.split():
        if model.vosk_model_find_word(token) >= 0:
            words.append(token)
            continue
        position = 0
        while position < len(token):
            for size in range(min(MAX_SEGMENT_CHARS, len(token) - position), 0, -1):
                candidate = token[position : position + size]
                if model.vosk_model_find_word(candidate) >= 0:
                    words.append(candidate)
                    position += size
                    break
            else:
                raise Invalid(
                    f"grammar phrase {phrase!r}: {token!r} is not in the {language} model's vocabulary",
                    code="asr_grammar_word",
                )
    return " ".join(words)


@dataclass(frozen=True)
class VoskSpec:
    model_path: str
    language: str
    grammar: tuple[str, ...] | None
    endpoint: EndpointConfig

    def build(self) -> VoskDecoder:
        return VoskDecoder(self)


class VoskDecoder:
    """One stream's Kaldi recognizer plus our endpointing. Runs in a worker; not thread-safe."""

    def __init__(self, spec: VoskSpec) -> None:
        import vosk

        self.spec = spec
        model = workers.shared_model("vosk", spec.model_path, lambda: load_model(spec.model_path))
        if spec.grammar:
            phrases = [grammar_words(model, spec.language, phrase) for phrase in spec.grammar]
            if model.vosk_model_find_word(UNKNOWN) >= 0:  # lets out-of-grammar speech match nothing
                phrases.append(UNKNOWN)
            grammar_json = json.dumps(phrases, ensure_ascii=False)
            self.recognizer = vosk.KaldiRecognizer(model, SAMPLE_RATE, grammar_json)
        else:
            self.recognizer = vosk.KaldiRecognizer(model, SAMPLE_RATE)
        self.recognizer.SetWords(True)
        self.vad = EnergyVad()
        self.fed = 0  # bytes decoded so far
        self.utterance_start = 0  # byte offset where the current utterance began
        self.onset: int | None = None  # byte offset of the first speech frame in it
        self.last_partial = ""
        self.carry = b""  # audio short of a whole piece, decoded with the next call

    def accept(self, pcm: bytes) -> list[RecognitionResult]:
        # Kaldi is fed fixed 100 ms pieces at fixed offsets, however the audio arrived: the same audio then
        # always gives the same words (chunk boundaries shift online i-vector and nnet chunking otherwise).
        data = self.carry + pcm
        whole = len(data) - len(data) % PIECE_BYTES
        self.carry = data[whole:]
        return self._decode(data[:whole])

    def finish(self) -> list[RecognitionResult]:
        results = self._decode(self.carry) if self.carry else []
        self.carry = b""
        return [*results, self._final(self.recognizer.FinalResult())]

    def _decode(self, pcm: bytes) -> list[RecognitionResult]:
        results: list[RecognitionResult] = []
        for offset in range(0, len(pcm), PIECE_BYTES):
            piece = pcm[offset : offset + PIECE_BYTES]
            flags = self.vad.push(piece)
            if self.onset is None and any(flags):
                self.onset = self.fed + flags.index(True) * self.vad.frame_bytes
            kaldi_endpoint = self.recognizer.AcceptWaveform(piece)
            self.fed += len(piece)
            length_ms = (self.fed - self.utterance_start) * 1000 // BYTES_PER_SECOND
            heard_speech = self.vad.speech_ms >= MIN_SPEECH_MS
            if (
                kaldi_endpoint
                or (heard_speech and self.vad.trailing_silence_ms >= self.spec.endpoint.trailing_silence_ms)
                or length_ms >= self.spec.endpoint.max_utterance_ms
            ):
                final = self._final(self.recognizer.Result())
                if final.text:
                    results.append(final)
                continue
            text = self._clean(json.loads(self.recognizer.PartialResult()).get("partial", ""))
            if text and text != self.last_partial and heard_speech:
                self.last_partial = text
                results.append(
                    RecognitionResult(
                        text=text,
                        is_final=False,
                        start=seconds(self.onset if self.onset is not None else self.utterance_start),
                        end=seconds(self.fed),
                        language=self.spec.language,
                    )
                )
        return results

    def _clean(self, text: str) -> str:
        return tidy(" ".join(word for word in text.split() if word != UNKNOWN), self.spec.language)

    def _final(self, raw: str) -> RecognitionResult:
        parsed = json.loads(raw)
        words = tuple(
            Word(text=item["word"], start=item["start"], end=item["end"], confidence=item.get("conf"))
            for item in parsed.get("result", [])
            if item.get("word") != UNKNOWN
        )
        text = self._clean(parsed.get("text", ""))
        if self.vad.speech_ms < MIN_SPEECH_MS:
            # Kaldi makes up short words from line noise; an utterance the VAD heard no speech in is empty.
            text, words = "", ()
        start = seconds(self.onset if self.onset is not None else self.utterance_start)
        result = RecognitionResult(
            text=text,
            is_final=True,
            start=words[0].start if words else start,
            end=words[-1].end if words else seconds(self.fed),
            confidence=(
                sum(word.confidence or 0.0 for word in words) / len(words) if words and text else None
            ),
            words=words,
            phrase=closest_phrase(text, self.spec.grammar) if self.spec.grammar else None,
            language=self.spec.language,
        )
        self.utterance_start = self.fed
        self.onset = None
        self.last_partial = ""
        self.vad.reset_utterance()
        return result


class VoskRecognizer(Recognizer):
    """Streaming vosk recognition for every language with an installed vosk model (see ``asr.models``)."""

    engine: ClassVar[str] = "vosk"
    streaming: ClassVar[bool] = True

    def __init__(self, catalog: ModelCatalog, *, workers: int = 2, mode: Mode = "thread") -> None:
        if workers < 1:
            raise Invalid("workers must be at least 1")
        self.catalog = catalog
        self.workers = workers
        self.mode = mode
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._processes: list[concurrent.futures.ProcessPoolExecutor] = []
        self._next_process = itertools.count()

    def languages(self) -> frozenset[str]:
        return self.catalog.vosk_languages()

    def require(self, language: str) -> None:
        self.catalog.vosk_path(language)

    def open_stream(
        self,
        language: str,
        *,
        grammar: Sequence[str] | None = None,
        endpoint: EndpointConfig = EndpointConfig(),  # noqa: B008 - frozen
        sample_rate: int = 16_000,
    ) -> RecognizerStream:
        phrases = check_stream_request(grammar, sample_rate)
        spec = VoskSpec(str(self.catalog.vosk_path(language)), language, phrases, endpoint)
        handle = workers.WorkerHandle(self._executor(), uuid.uuid4().hex, spec)
        return DecodingStream(handle, language=language)

    async def preload(self, language: str) -> None:
        spec = VoskSpec(str(self.catalog.vosk_path(language)), language, None, EndpointConfig())
        targets: list[concurrent.futures.Executor] = (
            [self._executor() for _ in range(self.workers)] if self.mode == "process" else [self._executor()]
        )
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(target, workers.preload, spec) for target in targets))

    async def aclose(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        for process in self._processes:
            process.shutdown(wait=False, cancel_futures=True)
        self._processes = []

    def _executor(self) -> concurrent.futures.Executor:
        if self.mode == "thread":
            if self._threads is None:
                self._threads = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.workers, thread_name_prefix="asr-vosk"
                )
            return self._threads
        if not self._processes:
            context = multiprocessing.get_context("spawn")
            self._processes = [
                concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context)
                for _ in range(self.workers)
            ]
        return self._processes[next(self._next_process) % self.workers]
