"""Voice messages our own recognizer turns into text: a WeChat voice message without WeChat's recognition
(the account has it off, or it failed) is downloaded, decoded (AMR, Speex or anything FFmpeg reads, through
PyAV) to 16 kHz mono PCM, and run through the platform's recognizer (``asr.build_recognizer``: vosk where a
model is installed, whisper for zh/en otherwise). The recognizer is built on the first voice message, so a
web process that never gets one never loads a speech model.

语音消息转文字：微信未提供识别结果时，下载语音、解码为 16 kHz PCM，用平台自己的语音识别转写。
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from asr import Recognizer

SAMPLE_RATE = 16_000
CHUNK_BYTES = SAMPLE_RATE * 2 // 5  # 200 ms of 16-bit mono
MAX_VOICE_SECONDS = 120  # WeChat's own limit is 60 s: anything longer is not a voice message

Transcribe = Callable[[bytes, str], Awaitable[str]]


class VoiceDecodeError(ValueError):
    """The downloaded media is not audio FFmpeg can read."""


def decode_to_pcm(media: bytes) -> bytes:
    """Any audio container/codec FFmpeg knows (AMR-NB/WB, Speex, MP3, WAV…) as 16 kHz mono s16le."""
    import av

    try:
        with av.open(io.BytesIO(media), mode="r") as container:
            if not container.streams.audio:
                raise VoiceDecodeError("the media has no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            pcm = bytearray()
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pcm += bytes(out.planes[0])[: out.samples * 2]
                if len(pcm) > MAX_VOICE_SECONDS * SAMPLE_RATE * 2:
                    raise VoiceDecodeError(f"voice message longer than {MAX_VOICE_SECONDS} s")
            for out in resampler.resample(None):
                pcm += bytes(out.planes[0])[: out.samples * 2]
    except av.error.FFmpegError as exc:
        raise VoiceDecodeError(f"not audio FFmpeg can read: {exc}") from exc
    return bytes(pcm)


class VoiceTranscriber:
    """``await transcriber(media, "zh")`` → the words said (empty for silence or noise)."""

    def __init__(self, settings: Settings, *, timeout_seconds: float = 60.0) -> None:
        self.settings = settings
        self.timeout_seconds = timeout_seconds
        self._recognizer: Recognizer | None = None
        self._lock = threading.Lock()

    async def __call__(self, media: bytes, language: str) -> str:
        pcm = await asyncio.to_thread(decode_to_pcm, media)
        stream = self._recognizer_for().open_stream(language)
        async with asyncio.timeout(self.timeout_seconds):
            for start in range(0, len(pcm), CHUNK_BYTES):
                await stream.feed(pcm[start : start + CHUNK_BYTES])
            await stream.finish()
            finals = [result.text async for result in stream.results() if result.is_final and result.text]
        return " ".join(finals).strip()

    def _recognizer_for(self) -> Recognizer:
        with self._lock:
            if self._recognizer is None:
                from asr import build_recognizer

                self._recognizer = build_recognizer(self.settings)
            return self._recognizer

    async def aclose(self) -> None:
        if self._recognizer is not None:
            await self._recognizer.aclose()
