"""16 kHz s16le mono PCM: level, an energy voice-activity detector and utterance segmentation (the format's
facts and checks are in ``asr.pcm``).

Runs wherever it is called from (worker threads for the engines); it holds no locks and no globals.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from asr.pcm import (  # noqa: F401  # the format's facts, re-exported for the engines and tests
    BYTES_PER_SECOND,
    FORMAT,
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    check_pcm,
    check_sample_rate,
    read_wav,
    seconds,
)


def level_dbfs(pcm: bytes) -> float:
    """RMS level of ``pcm`` in dB relative to full scale (-100 for digital silence)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return -100.0
    rms = math.sqrt(float(np.mean(samples * samples))) / 32768.0
    return max(-100.0, 20.0 * math.log10(rms)) if rms > 0 else -100.0


FLATNESS_BAND_HZ = (250.0, 3500.0)  # the telephone band: 8 kHz call audio upsampled is judged like 16 kHz


def spectral_flatness(power: np.ndarray) -> float:
    """Geometric over arithmetic mean of a power spectrum: near 1 for a hiss, near 0 for tones and voices."""
    power = power + 1e-9 * (float(power.max()) + 1.0)
    return float(np.exp(np.mean(np.log(power))) / np.mean(power))


@dataclass
class EnergyVad:
    """Speech/silence per 20 ms frame: loud enough above an adaptive noise floor, and not a hiss or a drone.

    * Level: the floor drops at once to a quieter frame and rises ``floor_rise_db`` a frame, so speech,
      which dips between syllables, keeps pulling it back down. A frame is speech only ``margin_db`` above it.
    * Steady sound: a level that has held within ``steady_spread_db`` for ``steady_ms`` (a fan, a hum, a
      tone; speech never holds that still) lifts the floor to it at once, and the time it was taken for
      speech is taken back (``speech_ms`` drops, the steady stretch counts as trailing silence).
    * Spectrum: hiss (white or line noise, however loud) has a flat spectrum where voices have harmonics and
      formants. Over the last ``flatness_frames`` frames, in the telephone band, the flatness of white noise
      has a median of 0.85 and was never below 0.55 in 20 s measured; espeak-ng speech (ko/zh/en, clipped
      or not) has medians of 0.01–0.2, and up to 10 % of its loud frames, mostly fricatives, are above 0.5.
      A frame flatter than ``max_flatness`` is not speech, and does not raise the floor.
    """

    frame_ms: int = 20
    margin_db: float = 12.0
    min_level_dbfs: float = -48.0
    floor_rise_db: float = 0.5
    max_flatness: float = 0.5
    flatness_frames: int = 3
    steady_ms: int = 500
    steady_spread_db: float = 3.0

    def __post_init__(self) -> None:
        self.floor_dbfs = -70.0
        self.trailing_silence_ms = 0
        self.speech_ms = 0  # voiced time since the last reset_utterance()
        self.level_dbfs = -100.0  # of the last frame classified
        self.flatness = 1.0  # of the last frames classified
        self._carry = b""
        samples = self.frame_bytes // SAMPLE_WIDTH
        self._window = np.hanning(samples)
        frequencies = np.fft.rfftfreq(samples, 1 / SAMPLE_RATE)
        low, high = FLATNESS_BAND_HZ
        self._band = (frequencies >= low) & (frequencies <= high)
        self._spectra: deque[np.ndarray] = deque(maxlen=self.flatness_frames)
        steady_frames = max(1, self.steady_ms // self.frame_ms)
        self._levels: deque[float] = deque(maxlen=steady_frames)
        self._voiced: deque[bool] = deque(maxlen=steady_frames)

    @property
    def frame_bytes(self) -> int:
        return SAMPLE_RATE * self.frame_ms // 1000 * SAMPLE_WIDTH

    def push(self, pcm: bytes) -> list[bool]:
        """Classify the complete frames now available; returns one speech flag per frame."""
        data = self._carry + pcm
        whole = len(data) - len(data) % self.frame_bytes
        self._carry = data[whole:]
        return [
            self._classify(data[offset : offset + self.frame_bytes])
            for offset in range(0, whole, self.frame_bytes)
        ]

    def reset_utterance(self) -> None:
        self.speech_ms = 0
        self.trailing_silence_ms = 0

    def _classify(self, frame: bytes) -> bool:
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        level = self.level_dbfs = level_dbfs(frame)
        self._spectra.append((np.abs(np.fft.rfft(samples * self._window)) ** 2)[self._band])
        self.flatness = spectral_flatness(np.mean(self._spectra, axis=0))
        hiss = self.flatness > self.max_flatness
        if hiss:
            # Hiss is never speech, so it need not raise the floor: speech right after loud hiss is heard
            # at once instead of only once its quieter syllables have pulled the floor back down.
            self.floor_dbfs = min(self.floor_dbfs, level)
            self._levels.clear()
        else:
            self.floor_dbfs = level if level < self.floor_dbfs else self.floor_dbfs + self.floor_rise_db
            self._levels.append(level)
            if self._steady() and level > self.floor_dbfs + self.margin_db:
                self._take_back_steady_stretch()
        speech = not hiss and level > max(self.floor_dbfs + self.margin_db, self.min_level_dbfs)
        self._voiced.append(speech)
        if speech:
            self.speech_ms += self.frame_ms
            self.trailing_silence_ms = 0
        else:
            self.trailing_silence_ms += self.frame_ms
        return speech

    def _steady(self) -> bool:
        return len(self._levels) == self._levels.maxlen and max(self._levels) - min(self._levels) <= (
            self.steady_spread_db
        )

    def _take_back_steady_stretch(self) -> None:
        self.floor_dbfs = min(self._levels)
        stretch_ms = self.frame_ms * (len(self._levels) - 1)  # the frames before this one
        self.speech_ms = max(0, self.speech_ms - self.frame_ms * sum(self._voiced))
        self.trailing_silence_ms = max(self.trailing_silence_ms, stretch_ms)
        self._voiced.clear()


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
            if self.vad.speech_ms < self.MIN_SPEECH_MS:
                self._restart()  # the VAD took its speech back: a steady sound, not an utterance
            elif self.vad.trailing_silence_ms >= self.trailing_silence_ms:
                done.append(self._cut(forced=False))
            elif length_ms >= self.max_utterance_ms:
                done.append(self._cut(forced=True))
        return done

    def flush(self) -> Utterance | None:
        """The utterance in progress at the end of the stream, if speech was heard in it."""
        if not self._in_speech or self.vad.speech_ms < self.MIN_SPEECH_MS:
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
        self._restart()
        return utterance

    def _restart(self) -> None:
        """Drop the buffered audio and wait for the next speech onset."""
        self._buffer_start += len(self._buffer)
        self._buffer.clear()
        self._in_speech = False
        self.vad.reset_utterance()
