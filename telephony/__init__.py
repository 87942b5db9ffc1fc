"""Telephony: real SIP calls through a pool of pjsua2 workers behind Kamailio.

The public surface for other packages:

* ``Call`` (``telephony.api``) — what an IVR flow or the agent desktop drives: answer, play, collect_dtmf,
  record, transfer, hold, hangup, bridge, audio taps; ``CallHandler`` / ``CallRouter`` to plug a flow in
  (setting ``telephony_router``).
* ``CallControl`` — hang up or transfer a live call from any process (web, Celery); it reaches the worker
  that owns the call.
* ``LostCallWatch`` — ends the calls of telephony workers that stopped heartbeating (the web runs one, so
  a whole node killed at once leaves no call "active").

Processes: ``huiliu telephony`` (``telephony.pool``) runs Kamailio and the workers (``telephony.worker``);
only ``telephony.pjsua_thread`` touches pjsua2.
"""

from telephony.api import (
    FRAME_BYTES,
    SAMPLE_RATE,
    Call,
    CallEnded,
    CallError,
    CallHandler,
    CallRouter,
    CallState,
    Direction,
    DtmfEvent,
    DtmfMethod,
    HangupCause,
    PlaybackOutcome,
    Prompt,
    Recording,
    RecordingError,
    TransferFailed,
)
from telephony.control import CallControl
from telephony.routing import StaticRouter
from telephony.sweeper import LostCallWatch

__all__ = [
    "FRAME_BYTES",
    "SAMPLE_RATE",
    "Call",
    "CallControl",
    "CallEnded",
    "CallError",
    "CallHandler",
    "CallRouter",
    "CallState",
    "Direction",
    "DtmfEvent",
    "DtmfMethod",
    "HangupCause",
    "LostCallWatch",
    "PlaybackOutcome",
    "Prompt",
    "Recording",
    "RecordingError",
    "StaticRouter",
    "TransferFailed",
]
