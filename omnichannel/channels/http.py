"""Routes of the SMS and WeChat channels. The webhooks are public (``role=None``) and check their own
signatures before anything is read or stored."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from core.api import Api, current_user, validate
from core.auth import Role
from core.errors import Invalid, PayloadTooLarge
from omnichannel import Actor
from omnichannel.channels import signing
from omnichannel.channels.models import DeliveryReceipt, InboundSms, SinkEntry, SmsMessage, SmsSend
from omnichannel.channels.wiring import Channels

CHANNELS = web.AppKey("channels", Channels)
api = Api("channels")


class SinkQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=500)
    to: str | None = Field(default=None, description="Only messages to this number")


class WebhookAck(BaseModel):
    accepted: bool
    duplicate: bool = False


async def _raw_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {limit}", limit=limit)
    try:
        raw = await request.content.read(limit + 1)
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes", limit=limit) from None
    if len(raw) > limit:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes", limit=limit)
    return raw


async def _signed_json(request: web.Request) -> Any:
    channels = request.app[CHANNELS]
    raw = await _raw_body(request, channels.sms.config.max_chars * 4 + 4096)
    signing.verify(
        channels.webhook_secret,
        request.headers.get(signing.TIMESTAMP_HEADER),
        request.headers.get(signing.SIGNATURE_HEADER),
        raw,
        tolerance_seconds=channels.tolerance_seconds,
    )
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"body is not valid JSON: {exc}", code="invalid_json") from None


@api.route(
    "POST",
    "/api/sms/inbound",
    summary="Inbound SMS from the gateway (HMAC-signed)",
    role=None,
    response=WebhookAck,
)
async def sms_inbound(request: web.Request) -> WebhookAck:
    inbound = validate(InboundSms, await _signed_json(request), "body")
    assert isinstance(inbound, InboundSms)
    fresh = await request.app[CHANNELS].sms.receive(inbound)
    return WebhookAck(accepted=True, duplicate=not fresh)


@api.route(
    "POST",
    "/api/sms/receipts",
    summary="SMS delivery receipt from the gateway (HMAC-signed)",
    role=None,
    response=SmsMessage,
)
async def sms_receipt(request: web.Request) -> SmsMessage:
    receipt = validate(DeliveryReceipt, await _signed_json(request), "body")
    assert isinstance(receipt, DeliveryReceipt)
    return await request.app[CHANNELS].sms.receipt(receipt)


@api.route(
    "POST",
    "/api/sms/messages",
    summary="Send an SMS (queued, retried)",
    body=SmsSend,
    response=SmsMessage,
    status=202,
)
async def send_sms(request: web.Request, body: SmsSend) -> SmsMessage:
    user = await current_user(request)
    return await request.app[CHANNELS].sms.send(
        body.to,
        body.text,
        transactional=body.transactional,
        actor=Actor(type="agent", id=user.id, name=user.username),
    )


@api.route(
    "GET", "/api/sms/messages/{message_id}", summary="One SMS and its delivery status", response=SmsMessage
)
async def get_sms(request: web.Request) -> SmsMessage:
    return await request.app[CHANNELS].sms.get(request.match_info["message_id"])


@api.route(
    "GET",
    "/api/sms/sink",
    summary="Messages the development sink provider received",
    role=Role.admin,
    query=SinkQuery,
    response=list[SinkEntry],
)
async def sms_sink(request: web.Request, query: SinkQuery) -> list[SinkEntry]:
    return await request.app[CHANNELS].sms.sink_entries(query.limit, query.to)


@api.route("GET", "/api/wechat/callback", summary="WeChat server URL verification (signed)", role=None)
async def wechat_verify(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[CHANNELS].wechat.verify_url(request.query), content_type="text/plain"
    )


@api.route(
    "POST",
    "/api/wechat/callback",
    summary="WeChat Official Account messages (signed, plain or AES)",
    role=None,
)
async def wechat_callback(request: web.Request) -> web.Response:
    channels = request.app[CHANNELS]
    raw = await _raw_body(request, channels.wechat_max_body_bytes)
    answer = await channels.wechat.handle(request.query, raw)
    if answer == "success":
        return web.Response(text=answer, content_type="text/plain")
    return web.Response(text=answer, content_type="application/xml")
