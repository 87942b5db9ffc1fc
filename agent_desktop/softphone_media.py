"""The media half of the web softphone (aiortc, PyAV), imported with the first call leg: a web process whose
users never open the softphone does not carry aiortc (~35 MB)."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import AsyncIterator

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from telephony.api import FRAME_BYTES, FRAME_MS, SAMPLE_RATE
from telephony.media_relay import mix_frames

FRAME_SAMPLES = FRAME_BYTES // 2
MAX_BUFFERED_FRAMES = 25  # 0.5 s per source: more than that and the oldest audio goes (latency first)


def new_peer() -> RTCPeerConnection:
    # no STUN/TURN: the browser reaches the web process's host candidates directly
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def offer(sdp: str) -> RTCSessionDescription:
    return RTCSessionDescription(sdp=sdp, type="offer")


async def microphone_frames(track: MediaStreamTrack) -> AsyncIterator[bytes]:
    """The browser's audio (48 kHz Opus, decoded) as 20 ms frames of 16 kHz mono s16le, until it ends."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    pending = b""
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, av.AudioFrame):
            continue
        for out in resampler.resample(frame):
            pending += bytes(out.planes[0])[: out.samples * 2]
        while len(pending) >= FRAME_BYTES:
            chunk, pending = pending[:FRAME_BYTES], pending[FRAME_BYTES:]
            yield chunk


class CallAudioTrack(MediaStreamTrack):
    """What the user hears as a WebRTC track: 20 ms frames of 16 kHz mono at a steady pace, each the mix of
    one frame from every side that sent one in time, silence when none did (aiortc's Opus encoder
    resamples to 48 kHz)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._sources: dict[str, deque[bytes]] = {}
        self._start: float | None = None
        self._sent = 0
        self._time_base = fractions.Fraction(1, SAMPLE_RATE)

    def feed(self, source: str, pcm: bytes) -> None:
        frames = self._sources.setdefault(source, deque(maxlen=MAX_BUFFERED_FRAMES))
        for start in range(0, len(pcm), FRAME_BYTES):
            frames.append(pcm[start : start + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            due = self._start + self._sent * FRAME_MS / 1000
            if due > now:
                await asyncio.sleep(due - now)
        ready = [frames.popleft() for frames in self._sources.values() if frames]
        pcm = mix_frames(ready) if ready else bytes(FRAME_BYTES)
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._sent * FRAME_SAMPLES
        frame.time_base = self._time_base
        self._sent += 1
        return frame
