"""16 kHz s16le mono PCM, the format every stream takes: its facts, format checks and WAV reading.

Free of NumPy (~10 MiB), so a telephony worker that builds its recognizer but hears no speech does not pay
for it; ``asr.audio`` (level, voice activity, utterances) needs NumPy.
"""

from __future__ import annotations

import wave
from pathlib import Path

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
