"""REST operations on live calls: list them, hang one up, transfer one (sent to the owning worker)."""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.api import Api
from core.db import as_utc
from telephony.control import CallControl
from telephony.store import TelephonyStore

api = Api("calls")

CALL_CONTROL = web.AppKey("call_control", CallControl)
TELEPHONY_STORE = web.AppKey("telephony_store", TelephonyStore)


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


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(min_length=1, max_length=256, description="SIP URI, number or extension")
    attended: bool = False


@api.route("GET", "/api/calls", summary="Calls in progress, newest first", response=list[LiveCall])
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
    await request.app[CALL_CONTROL].hangup(request.match_info["call_id"])


@api.route(
    "POST",
    "/api/calls/{call_id}/transfer",
    summary="Transfer a call in progress (blind, or attended: the target answers first)",
    body=TransferRequest,
    status=204,
    audit_target="call_id",
)
async def transfer(request: web.Request, body: TransferRequest) -> None:
    await request.app[CALL_CONTROL].transfer(
        request.match_info["call_id"], body.target, attended=body.attended
    )
