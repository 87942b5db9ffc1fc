"""The shipped IVR (``ivr_flows.line:router``) with every caller's audio read in Python for the whole call,
as streaming ASR would: the ``--tap`` line of ``bench/telephony.py`` (``HUILIU_TELEPHONY_ROUTER=
bench.telephony_tap:router``). Benchmark only: in the product a tap is opened by what needs the audio
(``listen`` nodes, ``HUILIU_IVR_TRANSCRIBE=call``, the softphone).

只用于基准测试：官方 IVR 线路，并在每通电话里把来电者的音频一直读入 Python。
"""

from __future__ import annotations

import asyncio
import contextlib

from core.settings import Settings
from ivr_flows.line import FlowLine
from telephony.api import Call, CallRouter


class TappingFlowLine(FlowLine):
    """``FlowLine`` plus a reader of the caller's 16 kHz PCM frames from answer to hang-up."""

    async def answer(self, name: str, call: Call) -> None:
        await call.answer()
        listening = asyncio.create_task(_drain(call), name=f"tap-{call.call_id}")
        try:
            await super().answer(name, call)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listening


async def _drain(call: Call) -> None:
    async for _frame in call.audio_frames():
        pass


def router(settings: Settings) -> CallRouter:
    return TappingFlowLine(settings)
