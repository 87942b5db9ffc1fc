"""Audio for the ASR tests, made here: espeak-ng speaks, sox converts to the stream format (16 kHz s16le
mono); silence, line noise and noise are generated. Mandarin goes through pypinyin and espeak-ng's
``cmn-latn-pinyin`` voice (DESIGN.md)."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np

from asr.audio import BYTES_PER_SECOND, read_wav

Speak = Callable[..., bytes]


def silence(seconds: float) -> bytes:
    """Digital silence: exact zeros."""
    return bytes(int(seconds * BYTES_PER_SECOND) // 2 * 2)


def line_noise(seconds: float, seed: int = 1) -> bytes:
    """A quiet line (about -60 dBFS), what a call carries between words."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 30, int(seconds * 16_000)).astype("<i2").tobytes()


def white_noise(seconds: float, level: float = 0.3, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    samples = rng.uniform(-level, level, int(seconds * 16_000)) * 32767
    return samples.astype("<i2").tobytes()


def hum(seconds: float, level: float = 0.3) -> bytes:
    """Mains hum: 50 Hz and its harmonics, steady — loud and not flat, but never speech."""
    time = np.arange(int(seconds * 16_000)) / 16_000
    samples = sum(np.sin(2 * np.pi * 50 * harmonic * time) / harmonic for harmonic in range(1, 8))
    return (samples * level / np.max(np.abs(samples)) * 32767).astype("<i2").tobytes()


def babble(seconds: float, level: float = 0.25, seed: int = 3) -> bytes:
    """Speech-like sound for the fake engine, no words: a voiced buzz (harmonics of a pitch wandering
    around 140 Hz) at a syllable rate (4 Hz) over a faint hiss. Not plain noise, which the VAD ignores."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * 16_000)) / 16_000
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.7 * time)
    phase = 2 * np.pi * np.cumsum(pitch) / 16_000
    buzz = sum(np.sin(harmonic * phase) / harmonic for harmonic in range(1, 20))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * time)
    samples = level * envelope * buzz / np.max(np.abs(buzz)) + rng.normal(0, 0.002, time.size)
    return (samples * 32767).astype("<i2").tobytes()


def pinyin(text: str) -> str:
    from pypinyin import Style, lazy_pinyin

    return " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True))


def frames(pcm: bytes, ms: int = 20) -> list[bytes]:
    """The audio as RTP-sized frames, the way telephony will feed it."""
    size = 16 * ms * 2
    return [pcm[offset : offset + size] for offset in range(0, len(pcm), size)]


def speaker(cache: Path) -> Speak:
    """``speak(text, voice="ko+f2", speed=150, gain_db=0)`` → PCM; ``voice="zh"`` speaks hanzi via pinyin."""

    def speak(text: str, voice: str = "ko+f2", speed: int = 150, gain_db: float = 0.0) -> bytes:
        spoken, espeak_voice = (pinyin(text), "cmn-latn-pinyin") if voice == "zh" else (text, voice)
        key = hashlib.sha256(f"{spoken}|{espeak_voice}|{speed}|{gain_db}".encode()).hexdigest()[:16]
        raw, out = cache / f"{key}.raw.wav", cache / f"{key}.wav"
        if not out.exists():
            subprocess.run(
                ["espeak-ng", "-v", espeak_voice, "-s", str(speed), "-w", str(raw), spoken], check=True
            )
            convert = ["-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer"]
            effects = ["gain", str(gain_db)] if gain_db else []
            subprocess.run(["sox", "-V1", str(raw), *convert, str(out), *effects], check=True)
        return read_wav(out)

    return speak
