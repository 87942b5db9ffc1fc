"""16 kHz s16le mono PCM: format checks, WAV reading and an energy voice-activity detector.

Runs wherever it is called from (worker threads for the engines); it holds no locks and no globals.
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.errors import AudioFormatError

SAMPLE_RATE = 16_000
SAMPLE_WIDTH = 2  # bytes: signed 16-bit little-endian
BYTES_PER_SECOND = SAMPLE_RATE * SAMPLE_WIDTH
FORMAT = "16000 Hz, 16-bit signed little-endian, mono PCM"


def check_sample_rate(sample_rate: int) -> None:
    """Refuse a stream whose caller declares another rate, saying what to send instead."""
    if sample_rate != SAMPLE_RATE:
        hint = " (8 kHz telephone audio: upsample x2 first)" if sample_rate == 8000 else ""
        raise AudioFormatError(
            f"sample rate {sample_rate} Hz is not supported: streams take {FORMAT}; resample before "
            f"feeding{hint}",
            code="asr_sample_rate",
        )


def check_pcm(pcm: object) -> bytes:
    """``pcm`` as bytes, if it is whole 16-bit samples."""
    if not isinstance(pcm, bytes | bytearray | memoryview):
        raise AudioFormatError(f"PCM must be bytes, not {type(pcm).__name__}")
    data = bytes(pcm)
    if len(data) % SAMPLE_WIDTH:
        raise AudioFormatError(
            f"a PCM frame of {len(data)} bytes is not whole 16-bit samples: streams take {FORMAT}",
            code="asr_partial_sample",
        )
    return data


def seconds(pcm_bytes: int) -> float:
    return pcm_bytes / BYTES_PER_SECOND


def read_wav(path: Path) -> bytes:
    """The PCM of a WAV file that is already in the stream format; any other format is a precise error."""
    with wave.open(str(path), "rb") as wav:
        found = (wav.getframerate(), wav.getsampwidth(), wav.getnchannels())
        if found != (SAMPLE_RATE, SAMPLE_WIDTH, 1):
            rate, width, channels = found
            raise AudioFormatError(
                f"{path}: {rate} Hz, {8 * width}-bit, {channels} channel(s); streams take {FORMAT}"
            )
        return wav.readframes(wav.getnframes())


def level_dbfs(pcm: bytes) -> float:
    """RMS level of ``pcm`` in dB relative to full scale (-100 for digital silence)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return -100.0
    rms = math.sqrt(float(np.mean(samples * samples))) / 32768.0
    return max(-100.0, 20.0 * math.log10(rms)) if rms > 0 else -100.0


@dataclass
class EnergyVad:
    """Speech/silence per 20 ms frame from the signal level against an adaptive noise floor.

    The floor drops at once to a quieter frame and rises 0.5 dB a frame, so a steady noise (a fan, a hiss,
    white noise) stops counting as speech within about two seconds, while speech, which dips between
    syllables, keeps pulling the floor back down.
    """

    frame_ms: int = 20
    margin_db: float = 12.0
    min_level_dbfs: float = -48.0
    floor_rise_db: float = 0.5

    def __post_init__(self) -> None:
        self.floor_dbfs = -70.0
        self.trailing_silence_ms = 0
        self.speech_ms = 0  # voiced time since the last reset_utterance()
        self._carry = b""

    @property
    def frame_bytes(self) -> int:
        return SAMPLE_RATE * self.frame_ms // 1000 * SAMPLE_WIDTH

    def push(self, pcm: bytes) -> list[bool]:
        """Classify the complete frames now available; returns one speech flag per frame."""
        data = self._carry + pcm
        whole = len(data) - len(data) % self.frame_bytes
        self._carry = data[whole:]
        flags = []
        for offset in range(0, whole, self.frame_bytes):
            level = level_dbfs(data[offset : offset + self.frame_bytes])
            self.floor_dbfs = level if level < self.floor_dbfs else self.floor_dbfs + self.floor_rise_db
            speech = level > max(self.floor_dbfs + self.margin_db, self.min_level_dbfs)
            if speech:
                self.speech_ms += self.frame_ms
                self.trailing_silence_ms = 0
            else:
                self.trailing_silence_ms += self.frame_ms
            flags.append(speech)
        return flags

    def reset_utterance(self) -> None:
        self.speech_ms = 0
        self.trailing_silence_ms = 0


@dataclass(frozen=True)
class Utterance:
    start: float  # seconds since the stream's first sample to the speech onset
    end: float
    pcm: bytes  # from a short pre-roll before ``start`` to ``end``
    forced: bool  # cut at the maximum utterance length rather than at a pause


class UtteranceSegmenter:
    """Cuts a PCM stream into utterances: speech, then ``trailing_silence_ms`` of silence (or the
    maximum length). Keeps a little audio before the speech onset so no first syllable is clipped."""

    PRE_ROLL_MS = 200
    MIN_SPEECH_MS = 100

    def __init__(self, trailing_silence_ms: int, max_utterance_ms: int, vad: EnergyVad | None = None) -> None:
        self.vad = vad or EnergyVad()
        self.trailing_silence_ms = trailing_silence_ms
        self.max_utterance_ms = max_utterance_ms
        self._buffer = bytearray()  # current utterance (or pre-roll while idle)
        self._buffer_start = 0  # byte offset in the stream of _buffer[0]
        self._consumed = 0  # bytes classified so far
        self._onset = 0  # byte offset where the current utterance's speech began
        self._in_speech = False

    @property
    def position(self) -> float:
        """Seconds of audio classified so far."""
        return seconds(self._consumed)

    @property
    def speaking(self) -> bool:
        """Inside an utterance (speech heard, its end not reached yet)."""
        return self._in_speech

    @property
    def utterance_start(self) -> float:
        """Where the current utterance's speech began (its audio starts a pre-roll earlier)."""
        return seconds(self._onset)

    def push(self, pcm: bytes) -> list[Utterance]:
        done: list[Utterance] = []
        frame = self.vad.frame_bytes
        for offset in range(0, len(pcm), frame):
            piece = pcm[offset : offset + frame]
            self._buffer += piece
            self._consumed += len(piece)
            self.vad.push(piece)
            if not self._in_speech:
                if self.vad.speech_ms >= self.MIN_SPEECH_MS:
                    self._in_speech = True
                    speech_bytes = self.vad.speech_ms * BYTES_PER_SECOND // 1000
                    self._onset = max(self._buffer_start, self._consumed - speech_bytes)
                    continue
                if self.vad.trailing_silence_ms >= 2 * self.vad.frame_ms:
                    self.vad.reset_utterance()  # a click, not speech
                self._trim_pre_roll()
                continue
            length_ms = len(self._buffer) * 1000 // BYTES_PER_SECOND
            if self.vad.trailing_silence_ms >= self.trailing_silence_ms:
                done.append(self._cut(forced=False))
            elif length_ms >= self.max_utterance_ms:
                done.append(self._cut(forced=True))
        return done

    def flush(self) -> Utterance | None:
        """The utterance in progress at the end of the stream, if speech was heard in it."""
        if not self._in_speech:
            return None
        return self._cut(forced=False)

    def _trim_pre_roll(self) -> None:
        keep = self.PRE_ROLL_MS * BYTES_PER_SECOND // 1000
        if len(self._buffer) > keep:
            drop = len(self._buffer) - keep
            del self._buffer[:drop]
            self._buffer_start += drop

    def _cut(self, *, forced: bool) -> Utterance:
        pcm = bytes(self._buffer)
        end = seconds(self._buffer_start + len(pcm))
        utterance = Utterance(start=seconds(self._onset), end=end, pcm=pcm, forced=forced)
        self._buffer_start += len(pcm)
        self._buffer.clear()
        self._in_speech = False
        self.vad.reset_utterance()
        return utterance
