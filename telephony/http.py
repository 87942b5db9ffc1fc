"""REST operations on live calls: list them, hang one up, transfer one (blind, or attended after the agent
consulted the target), hold one, send DTMF on one (each sent to the owning worker); dial out; and the
recordings' metadata (a recording the disk could not hold shows there with its error).

Who may act on a call is the composition root's rule (``CALL_ACCESS``, set by ``core.app``: an agent only on
the call connected to them, a supervisor on any); without one, any signed-in user may. What an agent's
outbound call is on the agent desktop is the composition root's too (``OUTBOUND_CALLS``); without it the
call is only placed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.api import Api, current_user
from core.auth import Role, User
from core.db import as_utc
from core.http import SETTINGS, audit_details
from telephony.control import CallControl
from telephony.sip import dialable_number
from telephony.store import TelephonyStore

api = Api("calls")

CALL_CONTROL = web.AppKey("call_control", CallControl)
TELEPHONY_STORE = web.AppKey("telephony_store", TelephonyStore)
CallAccess = Callable[[User, str], Awaitable[None]]
CALL_ACCESS: web.AppKey[CallAccess] = web.AppKey("call_access")


class DialedCall(BaseModel):
    call_id: str = Field(description="The new call's id (SIP Call-ID); it rings until the number answers")
    number: str = Field(description="The number dialed, E.164")
    customer_id: str | None = Field(default=None, description="The customer owning the number")
    conversation_id: str | None = None
    contact_id: str | None = Field(
        default=None, description="The agent desktop's contact for the call, connected to the agent"
    )


PlaceCall = Callable[[str], Awaitable[str]]
"""E.164 number → the id of the call placed to it (``CallControl.dial``)."""
OutboundCalls = Callable[[User, str, PlaceCall], Awaitable[DialedCall]]
"""(agent, E.164 number, place) → the call placed for the agent, as the desktop records it."""
OUTBOUND_CALLS: web.AppKey[OutboundCalls] = web.AppKey("outbound_calls")


async def _may_control(request: web.Request) -> str:
    call_id = request.match_info["call_id"]
    user = await current_user(request)
    check = request.app.get(CALL_ACCESS)
    if check is not None:
        await check(user, call_id)
    return call_id


class LiveCall(BaseModel):
    call_id: str
    direction: str
    caller: str
    called: str
    started_at: dt.datetime
    answered_at: dt.datetime | None = None
    customer_id: str | None = None
    conversation_id: str | None = None
    worker_id: str


class HoldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on: bool = Field(default=True, description="true: put the caller on hold; false: take them off it")


class DtmfRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digits: str = Field(
        pattern=r"^[0-9*#A-Da-d]{1,32}$", description="Keys to send, in order (RFC 2833): 0-9 * # A-D"
    )


class DialRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: str = Field(
        min_length=1,
        max_length=40,
        description="A phone number; without a country code it is read in the platform's default region",
    )


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(min_length=1, max_length=256, description="SIP URI, number or extension")
    attended: bool = False


@api.route(
    "GET",
    "/api/calls",
    summary="Calls in progress, newest first (supervisors: agents see their own call on the desktop)",
    role=Role.supervisor,
    response=list[LiveCall],
)
async def live_calls(request: web.Request) -> list[LiveCall]:
    docs = await request.app[TELEPHONY_STORE].active_calls()
    return [
        LiveCall(
            call_id=doc["_id"],
            direction=doc.get("direction", "inbound"),
            caller=doc.get("caller", ""),
            called=doc.get("called", ""),
            started_at=as_utc(doc["started_at"]),
            answered_at=as_utc(doc["answered_at"]) if doc.get("answered_at") else None,
            customer_id=doc.get("customer_id"),
            conversation_id=doc.get("conversation_id"),
            worker_id=doc.get("worker_id", ""),
        )
        for doc in docs
    ]


@api.route(
    "POST",
    "/api/calls/{call_id}/hangup",
    summary="Hang up a call in progress",
    status=204,
    audit_target="call_id",
)
async def hang_up(request: web.Request) -> None:
    await request.app[CALL_CONTROL].hangup(await _may_control(request))


@api.route(
    "POST",
    "/api/calls/{call_id}/transfer",
    summary="Transfer a call in progress (blind, or attended: the target answers first)",
    body=TransferRequest,
    status=204,
    audit_target="call_id",
)
async def transfer(request: web.Request, body: TransferRequest) -> None:
    await request.app[CALL_CONTROL].transfer(await _may_control(request), body.target, attended=body.attended)


class ConsultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(min_length=1, max_length=256, description="SIP URI, number or extension to consult")


class Consultation(BaseModel):
    call_id: str = Field(description="The customer's call, on hold meanwhile")
    target: str
    consult_call_id: str = Field(description="The call to the target, whom the agent now hears")


@api.route(
    "POST",
    "/api/calls/{call_id}/consult",
    summary="Attended transfer, step 1: hold the caller and call the target; returns once the target "
    "answered (the agent's softphone now talks with the target)",
    body=ConsultRequest,
    response=Consultation,
    audit_target="call_id",
)
async def consult(request: web.Request, body: ConsultRequest) -> Consultation:
    call_id = await _may_control(request)
    audit_details(request, target=body.target)
    consult_call_id = await request.app[CALL_CONTROL].consult(call_id, body.target)
    return Consultation(call_id=call_id, target=body.target, consult_call_id=consult_call_id)


@api.route(
    "POST",
    "/api/calls/{call_id}/consult/complete",
    summary="Attended transfer, step 2: connect the caller to the consulted target; the agent leaves",
    status=204,
    audit_target="call_id",
)
async def complete_consult(request: web.Request) -> None:
    await request.app[CALL_CONTROL].complete_consult(await _may_control(request))


@api.route(
    "POST",
    "/api/calls/{call_id}/consult/cancel",
    summary="End the consultation (ringing or talking); the agent talks with the caller again",
    status=204,
    audit_target="call_id",
)
async def cancel_consult(request: web.Request) -> None:
    await request.app[CALL_CONTROL].cancel_consult(await _may_control(request))


@api.route(
    "POST",
    "/api/calls/{call_id}/hold",
    summary="Put the caller on hold, or take them off it",
    body=HoldRequest,
    status=204,
    audit_target="call_id",
)
async def hold(request: web.Request, body: HoldRequest) -> None:
    await request.app[CALL_CONTROL].hold(await _may_control(request), body.on)


@api.route(
    "POST",
    "/api/calls/{call_id}/dtmf",
    summary="Send keypad digits to the other side of a call in progress (RFC 2833)",
    body=DtmfRequest,
    status=204,
    audit_target="call_id",
)
async def send_dtmf(request: web.Request, body: DtmfRequest) -> None:
    call_id = await _may_control(request)
    audit_details(request, digits=len(body.digits))  # how many, not which: they may be a PIN
    await request.app[CALL_CONTROL].send_dtmf(call_id, body.digits.upper())


@api.route(
    "POST",
    "/api/calls/dial",
    summary="Call a number out: the agent's softphone is on the call; it rings until the number answers",
    body=DialRequest,
    response=DialedCall,
    status=201,
)
async def dial(request: web.Request, body: DialRequest) -> DialedCall:
    user = await current_user(request)
    number = dialable_number(body.number, request.app[SETTINGS].default_region)
    audit_details(request, number=number)
    control = request.app[CALL_CONTROL]
    outbound = request.app.get(OUTBOUND_CALLS)
    if outbound is None:
        dialed = DialedCall(call_id=await control.dial(number), number=number)
    else:
        dialed = await outbound(user, number, control.dial)
    audit_details(request, call_id=dialed.call_id, contact_id=dialed.contact_id)
    return dialed


class RecordingQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    call_id: str | None = Field(default=None, max_length=256, description="only this call's recordings")
    status: Literal["complete", "failed"] | None = Field(
        default=None, description="failed: the file holds less than was recorded (see error)"
    )
    limit: int = Field(default=50, ge=1, le=500)


class RecordingInfo(BaseModel):
    recording_id: str
    call_id: str
    customer_id: str | None = None
    path: str
    status: Literal["complete", "failed"]
    duration_seconds: float = Field(description="audio the file holds")
    recorded_seconds: float | None = Field(default=None, description="how long the recorder ran")
    ended_by: str
    error: str | None = Field(default=None, description="disk_full, incomplete or recorder_failed")
    error_detail: str | None = None
    started_at: dt.datetime | None = None
    created_at: dt.datetime
    deleted_at: dt.datetime | None = None


@api.route(
    "GET",
    "/api/recordings",
    summary="Call recordings, newest first, with the error of any the disk could not hold",
    role=Role.supervisor,
    query=RecordingQuery,
    response=list[RecordingInfo],
)
async def recordings(request: web.Request, query: RecordingQuery) -> list[RecordingInfo]:
    docs = await request.app[TELEPHONY_STORE].find_recordings(
        call_id=query.call_id, status=query.status, limit=query.limit
    )
    return [
        RecordingInfo(
            recording_id=doc["_id"],
            call_id=doc.get("call_id", ""),
            customer_id=doc.get("customer_id"),
            path=doc.get("path", ""),
            # recordings stored before errors were recorded are complete
            status=doc.get("status") or "complete",
            duration_seconds=doc.get("duration_seconds", 0.0),
            recorded_seconds=doc.get("recorded_seconds"),
            ended_by=doc.get("ended_by", ""),
            error=doc.get("error"),
            error_detail=doc.get("error_detail"),
            started_at=as_utc(doc["started_at"]) if doc.get("started_at") else None,
            created_at=as_utc(doc["created_at"]),
            deleted_at=as_utc(doc["deleted_at"]) if doc.get("deleted_at") else None,
        )
        for doc in docs
    ]
