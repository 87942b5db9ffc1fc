"""A scripted SIP caller (pjsua2, in its own process): dials, presses keys and says things at set times,
hangs up, and prints one JSON line with what happened. ``huiliu demo traffic`` places its calls with it.

    python -m telephony.caller --target sip:1000@127.0.0.1:5060 --caller 13800138000 \
        --keys 1@4 --say speech.wav@9 --seconds 40

Times are seconds after the call was answered. Keys go as RFC 2833 telephone-events in the call's RTP
stream, as phones and trunks send them (``--dtmf-method info``: SIP INFO ``application/dtmf-relay``
instead). ``--say`` plays a 16-bit WAV into the call once (what the caller says).

RFC 2833 events are sent by the call's media stream on the conference bridge's clock, which pjsua stops
when its (null) sound device closes after a second of idleness: the endpoint keeps it open
(``sndAutoCloseTime = -1``) and what the caller hears goes to a recorder.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pjsua2 as pj


@dataclass(order=True)
class Step:
    at: float
    action: str = field(compare=False)  # "keys" or "say"
    value: str = field(compare=False)


def parse_steps(keys: list[str], says: list[str]) -> list[Step]:
    """``1@4`` (keys at 4 s), ``speech.wav@9`` (play at 9 s) → steps in time order."""
    steps = []
    for kind, items in (("keys", keys), ("say", says)):
        for item in items:
            value, separator, at = item.rpartition("@")
            if not separator or not value:
                raise ValueError(f"{item!r}: expected VALUE@SECONDS")
            steps.append(Step(float(at), kind, value))
    return sorted(steps)


class _Call(pj.Call):  # type: ignore[misc]
    def __init__(self, account: Any, record_path: Path) -> None:
        super().__init__(account)
        self.record_path = record_path
        self.recorder: Any = None
        self.answered_at: float | None = None
        self.ended = False
        self.status = 0
        self.player: Any = None

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.answered_at is None:
            self.answered_at = time.monotonic()
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True
            self.status = int(info.lastStatusCode)

    def onCallMediaState(self, prm: Any) -> None:
        # what the caller hears goes to a recorder: with nothing listening to the call's port, the
        # conference bridge leaves its stream idle and RFC 2833 digits sent on it are not taken
        audio = self.audio()
        if audio is not None and self.recorder is None:
            self.recorder = pj.AudioMediaRecorder()
            self.recorder.createRecorder(str(self.record_path))
            audio.startTransmit(self.recorder)

    def audio(self) -> Any:
        # keep the CallInfo alive while reading its media: SWIG frees it (and the vector) otherwise
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                return self.getAudioMedia(index)
        return None


DTMF_METHODS = {"rfc2833": pj.PJSUA_DTMF_METHOD_RFC2833, "info": pj.PJSUA_DTMF_METHOD_SIP_INFO}


def place_call(
    target: str,
    caller: str,
    steps: list[Step],
    seconds: float,
    record_path: Path,
    dtmf_method: str = "rfc2833",
) -> dict[str, Any]:
    endpoint = pj.Endpoint()
    endpoint.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.logConfig.level = int(os.environ.get("HUILIU_CALLER_LOG", "0"))
    config.logConfig.consoleLevel = int(os.environ.get("HUILIU_CALLER_LOG", "0"))
    config.medConfig.clockRate = 16000
    config.medConfig.sndClockRate = 16000
    config.medConfig.ecTailLen = 0
    config.medConfig.sndAutoCloseTime = -1
    endpoint.libInit(config)
    endpoint.audDevManager().setNullDev()
    transport = pj.TransportConfig()
    transport.boundAddress = "127.0.0.1" if "@127." in target or "@localhost" in target else ""
    transport.port = _free_udp_port(transport.boundAddress or "0.0.0.0")
    endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    endpoint.libStart()
    account_config = pj.AccountConfig()
    account_config.idUri = f"sip:{caller}@{transport.boundAddress or '127.0.0.1'}:{transport.port}"
    account_config.mediaConfig.transportConfig.boundAddress = transport.boundAddress
    account = pj.Account()
    account.create(account_config)
    call = _Call(account, record_path)
    done: list[str] = []
    try:
        call.makeCall(target, pj.CallOpParam(True))
        deadline = time.monotonic() + seconds
        pending = list(steps)
        while time.monotonic() < deadline and not call.ended:
            endpoint.libHandleEvents(10)
            if call.answered_at is None or not pending:
                continue
            if time.monotonic() - call.answered_at < pending[0].at:
                continue
            step = pending.pop(0)
            if step.action == "keys":
                keys = pj.CallSendDtmfParam()
                keys.method = DTMF_METHODS[dtmf_method]
                keys.digits = step.value
                call.sendDtmf(keys)
            else:
                audio = call.audio()
                if audio is not None:
                    call.player = pj.AudioMediaPlayer()
                    call.player.createPlayer(step.value, pj.PJMEDIA_FILE_NO_LOOP)
                    call.player.startTransmit(audio)
            done.append(f"{step.action}:{step.value}@{step.at:g}")
        if not call.ended:
            call.hangup(pj.CallOpParam(True))
        end = time.monotonic() + 3
        while time.monotonic() < end and not call.ended:
            endpoint.libHandleEvents(10)
        return {
            "target": target,
            "caller": caller,
            "answered": call.answered_at is not None,
            "dtmf_method": dtmf_method,
            "status": call.status,
            "done": done,
        }
    finally:
        call.player = None
        call.recorder = None
        del call
        account.shutdown()
        endpoint.libDestroy()


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", required=True, help="SIP URI to call")
    parser.add_argument("--caller", default="13800138000", help="calling number (From user)")
    parser.add_argument("--keys", action="append", default=[], help="DIGITS@SECONDS after the answer")
    parser.add_argument("--say", action="append", default=[], help="WAV@SECONDS after the answer")
    parser.add_argument(
        "--dtmf-method",
        choices=sorted(DTMF_METHODS),
        default="rfc2833",
        help="how keys are sent: RFC 2833 events in the RTP stream (default) or SIP INFO",
    )
    parser.add_argument("--seconds", type=float, default=40.0, help="hang up after this long")
    parser.add_argument("--record", type=Path, help="keep what the caller heard in this WAV file")
    args = parser.parse_args(argv)
    try:
        steps = parse_steps(args.keys, args.say)
    except ValueError as exc:
        parser.error(str(exc))
    with tempfile.TemporaryDirectory(prefix="huiliu-caller-") as scratch:
        record = args.record or Path(scratch) / "heard.wav"
        result = place_call(args.target, args.caller, steps, args.seconds, record, args.dtmf_method)
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
