"""The built-in demo line, until the IVR engine serves calls: answer, greet, take one key, hang up.

It exercises the whole path (SIP front → worker → prompt → RFC 2833 / SIP INFO DTMF → timeline) with one
``ivr.step`` event carrying the digit. The greeting is rendered once with espeak-ng (16 kHz WAV, cached).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from core.settings import Settings
from telephony.api import Call, CallRouter
from telephony.routing import StaticRouter

GREETING = "Welcome to Huiliu. Please press any key."
# long enough for a caller (or a benchmark scenario) that waits before pressing a key
DIGIT_TIMEOUT = 20.0


def render_prompt(text: str, directory: Path, voice: str = "en-us") -> Path:
    """``text`` spoken by espeak-ng as a 16 kHz mono WAV under ``directory`` (rendered once, cached)."""
    digest = hashlib.sha256(f"{voice}\0{text}".encode()).hexdigest()[:16]
    target = directory / f"tts-{voice}-{digest}.wav"
    if target.exists():
        return target
    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if espeak is None or sox is None:
        raise RuntimeError("espeak-ng and sox are needed for prompts (apt-get install espeak-ng sox)")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        raw, final = Path(scratch) / "raw.wav", Path(scratch) / "final.wav"
        subprocess.run([espeak, "-v", voice, "-s", "160", "-w", str(raw), text], check=True, timeout=60)
        subprocess.run(
            [sox, str(raw), "-r", "16000", "-c", "1", "-b", "16", str(final)], check=True, timeout=60
        )
        os.replace(final, target)  # atomic: workers rendering at once all end with one good file
    return target


class DemoLine:
    """Answer, greet (a key cuts the greeting short), wait for one key, note it, hang up. With ``tap``
    the caller's audio is also read in Python for the whole call, as streaming ASR will."""

    def __init__(self, greeting: Path, digit_timeout: float = DIGIT_TIMEOUT, *, tap: bool = False) -> None:
        self.greeting = greeting
        self.digit_timeout = digit_timeout
        self.tap = tap

    async def __call__(self, call: Call) -> None:
        await call.answer()
        listening = asyncio.create_task(self._listen(call)) if self.tap else None
        try:
            await call.play(self.greeting, barge_in=True)
            digit = await call.collect_dtmf(1, terminators="", first_digit_timeout=self.digit_timeout)
        finally:
            if listening is not None:
                listening.cancel()
        await call.log_event(
            "ivr.step", {"step": "demo.menu", "digit": digit or None, "input": "dtmf" if digit else "timeout"}
        )

    async def _listen(self, call: Call) -> None:
        async for _frame in call.audio_frames():
            pass


def router(settings: Settings) -> CallRouter:
    greeting = render_prompt(GREETING, settings.data_dir / "prompts")
    return StaticRouter({settings.telephony_demo_number: DemoLine(greeting)})


def tapping_router(settings: Settings) -> CallRouter:
    """The demo line with the caller's audio streamed into Python on every call (benchmarks)."""
    greeting = render_prompt(GREETING, settings.data_dir / "prompts")
    return StaticRouter({settings.telephony_demo_number: DemoLine(greeting, tap=True)})
