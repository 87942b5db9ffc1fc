"""A SIP phone for tests: a pjsua2 endpoint in its own process that calls, answers, types and talks.

    python tests/telephony/peer.py --workdir DIR --target sip:1000@127.0.0.1:5060 --caller 13800138000 \
        --dtmf 1 --dtmf-at 2.0 --dtmf-method info --tone-hz 440 --seconds 15
    python tests/telephony/peer.py --workdir DIR --answer-on 45060 --seconds 20    # an agent's phone
    python tests/telephony/peer.py --workdir DIR --register 127.0.0.1:5060 --caller +8613912345678 \
        --answer-after 2 --until-hangup --seconds 30               # a customer's phone the platform dials
    python tests/telephony/peer.py --workdir DIR --target ... --keys 1@3.0 --keys 12345#@9.5 \
        --say speech.wav --say-at 1.0 --hangup-at 12                                  # an IVR caller

It records what it hears on each call to a WAV file and prints one JSON line: per call whether it
connected, its final status, the RMS level of what it heard (and of each ``--listen-hz`` tone in it:
``tones``), the DTMF digits it received (``dtmf``, with
how they came: ``dtmf_methods``) and the media states it went through (``media``: ``active``,
``remote_hold``…) — the call it placed (``call``), one it was transferred to (REFER: ``transferred``), calls
it answered (``in1``…) and calls that replaced those (attended transfer: ``replaced``). Answering (no
``--target``), it first prints ``listening`` when ready — with ``--register``, once the SIP front took its
registration as ``--caller`` (so calls to that number reach it).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import os
import socket
import struct
import sys
import time
import wave
from pathlib import Path
from typing import Any

import pjsua2 as pj


def tone_wav(path: Path, hz: float, seconds: float = 2.0, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        amplitude = 0.5 * 32767
        samples = (int(amplitude * math.sin(2 * math.pi * hz * n / rate)) for n in range(int(seconds * rate)))
        out.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))
    return path


def rms(path: Path) -> tuple[float, float]:
    """RMS of a 16-bit mono WAV and its length in seconds (0, 0 when missing or empty)."""
    try:
        with wave.open(str(path), "rb") as wav:
            data = wav.readframes(wav.getnframes())
            rate = wav.getframerate()
    except (OSError, EOFError, wave.Error):
        return 0.0, 0.0
    count = len(data) // 2
    if not count:
        return 0.0, 0.0
    values = struct.unpack(f"<{count}h", data[: count * 2])
    return math.sqrt(sum(v * v for v in values) / count), count / rate


def tone_levels(path: Path, frequencies: list[float]) -> dict[str, float]:
    """The RMS level of each frequency (a band of +-20 Hz) in a 16-bit mono WAV: which tones were heard."""
    import numpy as np

    try:
        with wave.open(str(path), "rb") as wav:
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
            rate = wav.getframerate()
    except (OSError, EOFError, wave.Error):
        return {f"{hz:g}": 0.0 for hz in frequencies}
    if not len(samples):
        return {f"{hz:g}": 0.0 for hz in frequencies}
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    bins = np.fft.rfftfreq(len(samples), 1 / rate)
    levels = {}
    for hz in frequencies:
        band = spectrum[(bins > hz - 20) & (bins < hz + 20)].sum()
        levels[f"{hz:g}"] = round(float(np.sqrt(2 * band) / len(samples)), 1)
    return levels


MEDIA_STATES = {
    pj.PJSUA_CALL_MEDIA_NONE: "none",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local_hold",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
    pj.PJSUA_CALL_MEDIA_ERROR: "error",
}


class PeerCall(pj.Call):  # type: ignore[misc]
    def __init__(self, account: Any, peer: Peer, label: str, call_id: int = -1) -> None:
        if call_id == -1:
            super().__init__(account)
        else:
            super().__init__(account, call_id)
        self.peer = peer
        self.label = label
        self.connected = False
        self.ended = False
        self.status = 0
        self.recorder: Any = None
        self.player: Any = None
        self.speech: Any = None
        self.record_path = peer.workdir / f"{label}-heard.wav"
        self.digits = ""
        self.dtmf_methods: set[str] = set()
        self.media_states: list[str] = []

    def onDtmfDigit(self, prm: Any) -> None:
        self.digits += str(prm.digit)
        self.dtmf_methods.add("rfc2833" if prm.method == pj.PJSUA_DTMF_METHOD_RFC2833 else "sip_info")

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.connected = True
            self.peer.connected_at.setdefault(self.label, time.monotonic())
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True
            self.status = int(info.lastStatusCode)

    def onCallMediaState(self, prm: Any) -> None:
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO:
                state = MEDIA_STATES.get(media.status, str(media.status))
                if not self.media_states or self.media_states[-1] != state:
                    self.media_states.append(state)
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                audio = self.getAudioMedia(index)
                if self.recorder is None:
                    self.recorder = pj.AudioMediaRecorder()
                    self.recorder.createRecorder(str(self.record_path))
                audio.startTransmit(self.recorder)
                if self.peer.tone is not None and self.player is None:
                    self.player = pj.AudioMediaPlayer()
                    self.player.createPlayer(str(self.peer.tone))
                if self.player is not None:  # again after a hold: a phone's microphone goes on sending
                    self.player.startTransmit(audio)

    def onCallReplaced(self, prm: Any) -> None:
        call = PeerCall(self.peer.account, self.peer, "replaced", prm.newCallId)
        self.peer.calls.append(call)
        prm.newCall = call

    def onCallTransferRequest(self, prm: Any) -> None:
        self.peer.transferred_to = str(prm.dstUri)
        call = PeerCall(self.peer.account, self.peer, "transferred")
        self.peer.calls.append(call)
        prm.newCall = call


class AnsweringAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, peer: Peer) -> None:
        super().__init__()
        self.peer = peer

    def onIncomingCall(self, prm: Any) -> None:
        call = PeerCall(self, self.peer, f"in{len(self.peer.calls) + 1}", prm.callId)
        self.peer.calls.append(call)
        if self.peer.args.answer_after > 0:
            ringing = pj.CallOpParam(True)
            ringing.statusCode = 180
            call.answer(ringing)
            self.peer.to_answer.append((time.monotonic() + self.peer.args.answer_after, call))
            return
        answer = pj.CallOpParam(True)
        answer.statusCode = 200
        call.answer(answer)

    def onRegState(self, prm: Any) -> None:
        self.peer.registered = int(prm.code) == 200 and prm.expiration > 0


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # (seconds after the answer, digits) in time order; --dtmf/--dtmf-at is one of them
        self.keys = sorted(
            [(float(at), digits) for digits, _, at in (item.rpartition("@") for item in args.keys)]
            + ([(args.dtmf_at, args.dtmf)] if args.dtmf else [])
        )
        self.workdir = Path(args.workdir)
        self.tone = tone_wav(self.workdir / "tone.wav", args.tone_hz) if args.tone_hz else None
        self.calls: list[PeerCall] = []
        self.connected_at: dict[str, float] = {}
        self.transferred_to: str | None = None
        self.to_answer: list[tuple[float, PeerCall]] = []  # (when, call) ringing until then
        self.registered = False
        self.endpoint = pj.Endpoint()
        self.endpoint.libCreate()
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 0
        config.uaConfig.mainThreadOnly = True
        config.logConfig.level = int(os.environ.get("PEER_LOG", "0"))
        config.logConfig.consoleLevel = int(os.environ.get("PEER_LOG", "0"))
        config.medConfig.clockRate = 16000
        config.medConfig.sndClockRate = 16000
        config.medConfig.ecTailLen = 0
        self.endpoint.libInit(config)
        self.endpoint.audDevManager().setNullDev()
        transport = pj.TransportConfig()
        transport.boundAddress = "127.0.0.1"
        transport.port = args.answer_on or _free_port()
        self.endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
        self.endpoint.libStart()
        account = pj.AccountConfig()
        account.idUri = f"sip:{args.caller}@127.0.0.1:{transport.port}"
        account.mediaConfig.transportConfig.port = args.rtp_port
        account.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        if args.register:
            account.idUri = f"sip:{args.caller}@{args.register}"
            account.regConfig.registrarUri = f"sip:{args.register}"
            account.regConfig.timeoutSec = 300
        self.account = AnsweringAccount(self)
        self.account.create(account)

    def run(self) -> dict[str, Any]:
        first: PeerCall | None = None
        if self.args.target:
            first = PeerCall(self.account, self, "call")
            self.calls.append(first)
            first.makeCall(self.args.target, pj.CallOpParam(True))
        else:
            if self.args.register:
                registering = time.monotonic() + 10
                while not self.registered and time.monotonic() < registering:
                    self.endpoint.libHandleEvents(10)
                if not self.registered:
                    print(json.dumps({"error": f"no registration at {self.args.register}"}), flush=True)
                    os._exit(1)
            print("listening", flush=True)
        deadline = time.monotonic() + self.args.seconds
        keys = list(self.keys)
        said = False
        while time.monotonic() < deadline:
            self.endpoint.libHandleEvents(10)
            for when, call in [item for item in self.to_answer if item[0] <= time.monotonic()]:
                self.to_answer.remove((when, call))
                if not call.ended:
                    answer = pj.CallOpParam(True)
                    answer.statusCode = 200
                    call.answer(answer)
            connected_at = self.connected_at.get("call")
            since = time.monotonic() - connected_at if connected_at else -1.0
            if first is not None and keys and connected_at and since >= keys[0][0] and not first.ended:
                self._send_dtmf(first, keys.pop(0)[1])
            if (
                first is not None
                and self.args.say
                and not said
                and connected_at
                and since >= self.args.say_at
            ):
                self._say(first)
                said = True
            if first is not None and self.args.hangup_at and since >= self.args.hangup_at and not first.ended:
                first.hangup(pj.CallOpParam(True))
            if self.args.hang_up_answered_at:
                for call in self.calls:
                    answered = self.connected_at.get(call.label)
                    late = answered and time.monotonic() - answered >= self.args.hang_up_answered_at
                    if call.label.startswith("in") and late and not call.ended:
                        call.hangup(pj.CallOpParam(True))
            if self.calls and all(call.ended for call in self.calls) and (first or self.args.until_hangup):
                break
        for call in self.calls:
            if not call.ended:
                call.hangup(pj.CallOpParam(True))
        end = time.monotonic() + 2
        while time.monotonic() < end and not all(call.ended for call in self.calls):
            self.endpoint.libHandleEvents(10)
        result: dict[str, Any] = {"transferred_to": self.transferred_to}
        for call in self.calls:
            call.recorder = None
            call.player = None
            call.speech = None
        # the conference bridge removes (and so finalizes) the recorders on its next clock ticks
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            self.endpoint.libHandleEvents(10)
        for call in self.calls:
            level, seconds = rms(call.record_path)
            result[call.label] = {
                "connected": call.connected,
                "status": call.status,
                "rms": round(level, 1),
                "heard_seconds": round(seconds, 2),
                "dtmf": call.digits,
                "dtmf_methods": sorted(call.dtmf_methods),
                "media": call.media_states,
            }
            if self.args.listen_hz:
                result[call.label]["tones"] = tone_levels(call.record_path, self.args.listen_hz)
        return result

    def _send_dtmf(self, call: PeerCall, digits: str) -> None:
        if self.args.dtmf_method == "info":
            prm = pj.CallSendDtmfParam()
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO
            prm.digits = digits
            call.sendDtmf(prm)
        else:
            call.dialDtmf(digits)

    def _say(self, call: PeerCall) -> None:
        """Play the --say WAV into the call once (what the caller says)."""
        info = call.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                call.speech = pj.AudioMediaPlayer()
                call.speech.createPlayer(str(self.args.say), pj.PJMEDIA_FILE_NO_LOOP)
                call.speech.startTransmit(call.getAudioMedia(index))
                return


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    faulthandler.enable(all_threads=True)  # a crash in native code shows the Python stacks
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", help="call this SIP URI")
    parser.add_argument("--answer-on", type=int, default=0, help="answer calls on this SIP port instead")
    parser.add_argument(
        "--until-hangup", action="store_true", help="with --answer-on: stop after the calls end"
    )
    parser.add_argument("--caller", default="13800138000", help="this phone's number (SIP user)")
    parser.add_argument("--register", help="HOST:PORT of a registrar (the SIP front) to register --caller at")
    parser.add_argument(
        "--answer-after", type=float, default=0.0, help="answering: ring (180) this long, then answer"
    )
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--dtmf", default="")
    parser.add_argument("--dtmf-at", type=float, default=1.0, help="seconds after the answer")
    parser.add_argument("--dtmf-method", choices=["rfc2833", "info"], default="rfc2833")
    parser.add_argument(
        "--keys", action="append", default=[], help="DIGITS@SECONDS: type DIGITS that long after the answer"
    )
    parser.add_argument("--say", help="a WAV file the caller plays into the call once (speech)")
    parser.add_argument("--say-at", type=float, default=1.0, help="seconds after the answer")
    parser.add_argument("--hangup-at", type=float, default=0.0, help="hang up that long after the answer")
    parser.add_argument(
        "--hang-up-answered-at", type=float, default=0.0, help="hang up calls it answered that long after"
    )
    parser.add_argument("--tone-hz", type=float, default=0.0, help="play a tone into the call")
    parser.add_argument(
        "--listen-hz", type=float, action="append", default=[], help="report the level of this tone heard"
    )
    parser.add_argument("--rtp-port", type=int, default=0, help="first RTP port (default: a random one)")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    args.rtp_port = args.rtp_port or 40000 + 2 * (os.getpid() % 5000)
    result = Peer(args).run()
    print(json.dumps(result), flush=True)
    os._exit(0)  # skip pjsua2's destructors at interpreter exit


if __name__ == "__main__":
    sys.exit(main())
