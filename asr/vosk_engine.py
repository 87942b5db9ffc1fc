"""VoskRecognizer: streaming recognition with Kaldi through vosk — partials while speaking, finals at pauses.

Thread boundary: decoding happens only in ``asr.workers`` functions, run in a ``ThreadPoolExecutor`` (mode
"thread", the default: libvosk releases the GIL, so threads decode in parallel and share one model) or in
worker processes each holding its own copy of the model (mode "process"; a stream is pinned to one process
because its Kaldi state cannot move). ``bench/asr.py`` measures both.

Endpointing is per stream: Kaldi's own endpoint rules are model-wide (read from ``conf/model.conf`` at load),
so the model is loaded through a view of its directory with those rules pushed out of the way, and the
decoder ends an utterance itself after ``trailing_silence_ms`` of silence following speech (an energy VAD,
checked every 20 ms frame) or at ``max_utterance_ms``. While nobody speaks, loud sound the VAD does not take
for speech (hiss, hum) reaches Kaldi as silence: fed as it is, Kaldi made words of it ("식" from white noise)
and lost the words spoken after it.

Where the CPU goes (``bench/asr.py``; Korean small model): Kaldi itself is nearly all of it, and most of that
on a new recognizer is vosk composing its lookahead decoding graph on the fly (0.15 CPU s per audio s fresh,
0.06 once its cache is warm). So recognizers are pooled per worker (``VoskDecoder``). Frame size per
``AcceptWaveform`` (20 ms vs 100 ms vs 1 s), partial-result JSON and our VAD each cost a few per cent at most.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import json
import math
import multiprocessing
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from asr import workers
from asr.models import ModelCatalog
from asr.pcm import BYTES_PER_SECOND, SAMPLE_RATE, seconds
from asr.phrases import closest_phrase, comparable, tidy
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
PIECE_BYTES = BYTES_PER_SECOND // 10  # Kaldi is fed 100 ms at a time; a partial result after each piece
# Audio goes to the worker as it arrives (20 ms RTP frames, or what piled up while the worker was busy), so
# the decoder sees the end of the trailing silence at once; Kaldi still gets 100 ms pieces (PIECE_BYTES).
STREAM_CHUNK_MS = 20
IDLE_RECOGNIZERS = 4  # warm recognizers a worker keeps between streams (~50 MiB each once warm)
GRAMMAR_ALTERNATIVES = 5  # hypotheses searched for a whole menu phrase
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
PRE_ROLL_FRAMES = 10  # 20 ms frames held back while no speech is heard (see VoskDecoder._release)

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


def non_lexical(word: str) -> bool:
    """A model's marker rather than a word: ``[unk]``, ``[noise]``, ``[laughter]``, or the Korean model's
    numbered tokens such as ``[6]``, which it emitted for full-scale white noise."""
    return len(word) >= 2 and word.startswith("[") and word.endswith("]")


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
    idle_recognizers: int = IDLE_RECOGNIZERS

    def build(self) -> VoskDecoder:
        return VoskDecoder(self)


@dataclass
class PooledRecognizer:
    """A Kaldi recognizer that outlives its streams. ``fed``: bytes it has decoded in its whole life —
    vosk counts word times from its first sample, so a reused recognizer's times are offset by it."""

    recognizer: Any
    fed: int = 0


class VoskDecoder:
    """One stream's Kaldi recognizer plus our endpointing. Runs in a worker; not thread-safe.

    The recognizer comes from the worker's pool when one is idle: vosk composes the decoding graph on the
    fly and caches what it expands in the recognizer, so a fresh recognizer costs two to three times the CPU
    of a warm one over a first call of 20 s (``bench/asr.py`` measures both). A recognizer goes back to the
    pool only after ``FinalResult()``, which makes vosk start its next audio with fresh features and
    i-vector, so nothing of one caller's voice carries into the next stream.
    """

    def __init__(self, spec: VoskSpec) -> None:
        import vosk

        self.spec = spec
        model = workers.shared_model("vosk", spec.model_path, lambda: load_model(spec.model_path))
        grammar_json: str | None = None
        if spec.grammar:
            phrases = [grammar_words(model, spec.language, phrase) for phrase in spec.grammar]
            if model.vosk_model_find_word(UNKNOWN) >= 0:  # lets out-of-grammar speech match nothing
                phrases.append(UNKNOWN)
            grammar_json = json.dumps(phrases, ensure_ascii=False)
        self.pool_key = f"{spec.model_path}\n{grammar_json or ''}"
        pooled = workers.borrow("vosk", self.pool_key) if spec.idle_recognizers else None
        if pooled is None:
            if grammar_json is None:
                recognizer = vosk.KaldiRecognizer(model, SAMPLE_RATE)
            else:
                recognizer = vosk.KaldiRecognizer(model, SAMPLE_RATE, grammar_json)
            recognizer.SetWords(True)
            if grammar_json is not None:
                recognizer.SetMaxAlternatives(GRAMMAR_ALTERNATIVES)
            pooled = PooledRecognizer(recognizer)
        self.pooled: PooledRecognizer | None = pooled
        self.recognizer = pooled.recognizer
        self.time_base = seconds(pooled.fed)
        from asr.audio import EnergyVad  # NumPy, imported when a stream opens

        self.vad = EnergyVad()
        self.fed = 0  # bytes given to Kaldi so far
        self.unfed = b""  # whole VAD frames not given to Kaldi yet (less than a piece, or up to an endpoint)
        self.carry = b""  # less than a VAD frame, classified with the next call
        self.utterance_start = 0  # byte offset where the current utterance began
        self.onset: int | None = None  # byte offset of the first speech frame in it
        self.classified = 0  # bytes the VAD has classified (given to Kaldi, unfed or held)
        # While no speech is heard, frames wait here a pre-roll long before they go to Kaldi, so the
        # first syllable of speech is never muted as noise (see _release); flag: loud but not speech.
        self.held: collections.deque[tuple[bytes, bool]] = collections.deque()
        self.heard_speech = False
        self.last_partial = ""
        self.finished = False

    def accept(self, pcm: bytes) -> list[RecognitionResult]:
        # Every 20 ms frame is classified as it arrives and the endpoint is checked after each, so a final
        # comes one frame after the trailing silence is complete, not up to a piece later. Kaldi is fed
        # 100 ms pieces counted from the start of the utterance, however the audio arrived, so the same
        # audio is decoded the same way (chunk boundaries shift online i-vector and nnet chunking).
        data = self.carry + pcm
        whole = len(data) - len(data) % self.vad.frame_bytes
        self.carry = data[whole:]
        results: list[RecognitionResult] = []
        for offset in range(0, whole, self.vad.frame_bytes):
            frame = data[offset : offset + self.vad.frame_bytes]
            (voiced,) = self.vad.push(frame)
            if voiced and self.onset is None:
                self.onset = self.classified
            self.classified += len(frame)
            heard_speech = self.vad.speech_ms >= MIN_SPEECH_MS
            if self.heard_speech and not heard_speech:
                self._abandon_utterance()  # the VAD took its speech back: a steady hum or tone
            self.heard_speech = heard_speech
            self.held.append((frame, not voiced and self.vad.level_dbfs > self.vad.min_level_dbfs))
            while self.held and (heard_speech or len(self.held) > PRE_ROLL_FRAMES):
                self._admit(self._release(), results)
        return results

    def finish(self) -> list[RecognitionResult]:
        while self.held:
            self.unfed += self._release()
        self.unfed += self.carry
        self.carry = b""
        self._feed()
        self.finished = True
        return [self._final(self.recognizer.FinalResult())]

    def _release(self) -> bytes:
        """The oldest held frame as Kaldi gets it: loud sound that is not speech, heard while no speech is,
        goes in as silence. Kaldi turns hiss and hum into words, and a long stretch of it before the
        caller speaks skews its feature normalisation so badly that the words after it are lost too."""
        frame, noise = self.held.popleft()
        return bytes(len(frame)) if noise and not self.heard_speech else frame

    def _admit(self, frame: bytes, results: list[RecognitionResult]) -> None:
        self.unfed += frame
        endpoint = self.spec.endpoint
        length_ms = (self.fed + len(self.unfed) - self.utterance_start) * 1000 // BYTES_PER_SECOND
        if (
            self.heard_speech and self.vad.trailing_silence_ms >= endpoint.trailing_silence_ms
        ) or length_ms >= endpoint.max_utterance_ms:
            self._feed()
            self._end_utterance(results)
        elif len(self.unfed) >= PIECE_BYTES:
            if self._feed():  # Kaldi's own endpoint (five seconds of nothing but silence)
                self._end_utterance(results)
            else:
                self._partial(results, self.heard_speech)

    def _abandon_utterance(self) -> None:
        self._feed()
        self.recognizer.FinalResult()
        self.utterance_start = self.fed
        self.onset = None
        self.last_partial = ""

    def close(self) -> None:
        """Return the recognizer to the worker's pool (first ending its audio if the stream was abandoned)."""
        if self.pooled is None:
            return
        pooled, self.pooled = self.pooled, None
        if not self.finished:
            self.recognizer.FinalResult()
        pooled.fed += self.fed
        workers.give_back("vosk", self.pool_key, pooled, self.spec.idle_recognizers)

    def _feed(self) -> bool:
        """Give Kaldi the audio held back; True when Kaldi itself says the utterance ended."""
        if not self.unfed:
            return False
        piece, self.unfed = self.unfed, b""
        self.fed += len(piece)
        return bool(self.recognizer.AcceptWaveform(piece))

    def _partial(self, results: list[RecognitionResult], heard_speech: bool) -> None:
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

    def _end_utterance(self, results: list[RecognitionResult]) -> None:
        # FinalResult, not Result: Result decodes only what Kaldi's network chunking has reached, which can
        # be a syllable short of the audio fed ("시간" came out "시 가" when the pause was cut at 400 ms)
        # and leaves that syllable to the next utterance. FinalResult decodes everything fed; the price
        # is that vosk restarts its features and i-vector for the next utterance of the stream.
        final = self._final(self.recognizer.FinalResult())
        if final.text:
            results.append(final)

    def _clean(self, text: str) -> str:
        return tidy(" ".join(word for word in text.split() if not non_lexical(word)), self.spec.language)

    def _word(self, item: dict[str, Any]) -> Word:
        # Times in the stream's own seconds, at vosk's 10 ms frame resolution.
        return Word(
            text=item["word"],
            start=round(item["start"] - self.time_base, 3),
            end=round(item["end"] - self.time_base, 3),
            confidence=item.get("conf"),
        )

    def _menu_choice(self, alternatives: list[dict[str, Any]]) -> tuple[dict[str, Any], float | None]:
        """Grammar mode: the best of vosk's n-best that says a whole phrase of the menu, else the best one.

        vosk's grammar also lets the first words of a phrase through on their own ("상담원" outscored
        "상담원 연결" on a clip of the whole phrase), which is no option of the menu. The confidence is the
        chosen hypothesis' share of the likelihood of the hypotheses that compete with it: the whole
        phrases of the menu, or all of them when none is one.
        """
        if not alternatives:
            return {}, None
        menu = {comparable(phrase) for phrase in self.spec.grammar or ()}
        phrases = [item for item in alternatives if comparable(item.get("text", "")) in menu]
        competing = phrases or alternatives
        best = max(float(item["confidence"]) for item in competing)
        weights = [math.exp(float(item["confidence"]) - best) for item in competing]
        chosen = weights.index(1.0)
        return competing[chosen], weights[chosen] / sum(weights)

    def _final(self, raw: str) -> RecognitionResult:
        parsed = json.loads(raw)
        menu_confidence: float | None = None
        if "alternatives" in parsed:
            parsed, menu_confidence = self._menu_choice(parsed["alternatives"])
        words = tuple(
            self._word(item) for item in parsed.get("result", []) if not non_lexical(item.get("word", ""))
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
                None
                if not (words and text)
                else menu_confidence
                if menu_confidence is not None
                else sum(word.confidence or 0.0 for word in words) / len(words)
            ),
            words=words,
            phrase=closest_phrase(text, self.spec.grammar) if self.spec.grammar else None,
            language=self.spec.language,
        )
        self.utterance_start = self.fed
        self.onset = None
        self.last_partial = ""
        self.vad.reset_utterance()
        self.heard_speech = False
        return result


class VoskRecognizer(Recognizer):
    """Streaming vosk recognition for every language with an installed vosk model (see ``asr.models``)."""

    engine: ClassVar[str] = "vosk"
    streaming: ClassVar[bool] = True

    def __init__(
        self,
        catalog: ModelCatalog,
        *,
        workers: int = 2,
        mode: Mode = "thread",
        idle_recognizers: int = IDLE_RECOGNIZERS,
    ) -> None:
        if workers < 1:
            raise Invalid("workers must be at least 1")
        if idle_recognizers < 0:
            raise Invalid("idle_recognizers must be 0 or more")
        self.catalog = catalog
        self.workers = workers
        self.mode = mode
        self.idle_recognizers = idle_recognizers
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
        spec = VoskSpec(
            str(self.catalog.vosk_path(language)), language, phrases, endpoint, self.idle_recognizers
        )
        handle = workers.WorkerHandle(self._executor(), uuid.uuid4().hex, spec)
        return DecodingStream(handle, language=language, chunk_ms=STREAM_CHUNK_MS)

    async def preload(self, language: str) -> None:
        spec = VoskSpec(
            str(self.catalog.vosk_path(language)), language, None, EndpointConfig(), self.idle_recognizers
        )
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
