"""Handlers the telephony tests dial (``HUILIU_TELEPHONY_ROUTER=tests.telephony.routers:router``).

1000  the built-in demo line (greeting, one key, ``ivr.step``)
2000  voicemail: a beep, then record the caller for up to 2 s (``#`` ends it)
3000  blind transfer to 1000
4000  media tap: measure the caller's audio for 1 s (``ivr.step`` with its RMS), answer with a tone
5000  parked: answered, then nothing until the caller hangs up (a call waiting for an agent to act on it)
consult-<port>  attended transfer to the phone answering on 127.0.0.1:<port> (consultation call first)
"""

from __future__ import annotations

import math
import struct

from core.settings import Settings
from telephony.api import FRAME_BYTES, SAMPLE_RATE, Call, CallHandler, CallRouter
from telephony.demo import router as demo_router
from telephony.routing import StaticRouter


def tone(hz: float, seconds: float) -> bytes:
    count = int(SAMPLE_RATE * seconds)
    amplitude = 0.4 * 32767
    return b"".join(
        struct.pack("<h", int(amplitude * math.sin(2 * math.pi * hz * n / SAMPLE_RATE))) for n in range(count)
    )


def rms(pcm: bytes) -> float:
    count = len(pcm) // 2
    if not count:
        return 0.0
    values = struct.unpack(f"<{count}h", pcm[: count * 2])
    return math.sqrt(sum(v * v for v in values) / count)


async def voicemail(call: Call) -> None:
    await call.answer()
    await call.play(tone(880, 0.2))
    recording = await call.record(f"voicemail/{call.call_id}.wav", max_seconds=2.0)
    await call.log_event(
        "ivr.step",
        {"step": "voicemail", "seconds": recording.duration_seconds, "ended_by": recording.ended_by},
    )


async def blind_transfer(call: Call) -> None:
    await call.answer()
    await call.transfer("1000")


class TestLines:
    def __init__(self, lines: StaticRouter) -> None:
        self.lines = lines

    def route(self, called: str) -> CallHandler | None:
        if called.startswith("consult-") and called.removeprefix("consult-").isdigit():
            agent = f"sip:agent@127.0.0.1:{called.removeprefix('consult-')}"

            async def attended_transfer(call: Call) -> None:
                await call.answer()
                await call.transfer(agent, attended=True)

            return attended_transfer
        return self.lines.route(called)


async def media_tap(call: Call) -> None:
    await call.answer()
    heard = bytearray()
    async for frame in call.audio_frames():
        heard += frame
        if len(heard) >= FRAME_BYTES * 50:  # 1 s
            break
    await call.log_event("ivr.step", {"step": "tap", "rms": round(rms(bytes(heard)), 1), "bytes": len(heard)})
    await call.send_audio(tone(440, 2.0))
    await call.collect_dtmf(1, first_digit_timeout=3.0)


async def parked(call: Call) -> None:
    await call.answer()
    await call.hung_up.wait()


def router(settings: Settings) -> CallRouter:
    demo = demo_router(settings)
    handlers = {"2000": voicemail, "3000": blind_transfer, "4000": media_tap, "5000": parked}
    demo_line = demo.route(settings.telephony_demo_number)
    assert demo_line is not None
    return TestLines(StaticRouter({settings.telephony_demo_number: demo_line, **handlers}))
