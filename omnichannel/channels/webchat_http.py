"""Routes of the web chat and the bot's knowledge base, and ``mount_webchat`` which adds the visitors'
Socket.IO server, the CORS answers for ``/api/webchat/*`` and the web-chat lifecycle to the app.

Visitor routes are public by declaration (``role=None``) and check the visitor token or a signed link
themselves; the knowledge base is read by agents and changed by admins.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.aio import stop_tasks
from core.api import Api, current_user
from core.auth import Role
from core.http import audit_details
from core.log import get_logger
from core.settings import Settings
from omnichannel import Actor
from omnichannel.channels.agent_replies import AgentReplies
from omnichannel.channels.http import CHANNELS
from omnichannel.channels.kb import KbArticle, KbArticlePatch, KbHit, NewKbArticle
from omnichannel.channels.webchat import (
    Attachment,
    VisitorSession,
    WebChatService,
    allowed_origins,
    attachment_headers,
)
from omnichannel.channels.webchat_sockets import VisitorSockets

api = Api("webchat")
VISITOR_SOCKETS = web.AppKey("visitor_sockets", VisitorSockets)
REPLY_RETRY_SECONDS = 1.0  # how often a node looks for replies due to be sent again
VISITOR_TOKEN_HEADER = "X-Visitor-Token"
_CORS_PREFIX = "/api/webchat/"

log = get_logger(__name__)


def _webchat(request: web.Request) -> WebChatService:
    service = request.app[CHANNELS].webchat
    if service is None:
        raise RuntimeError("web chat is not attached")
    return service


class KbQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: str | None = Field(default=None, pattern=r"^(zh|en)$")


class KbSearchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: str = Field(min_length=1, max_length=500)
    language: str | None = Field(default=None, pattern=r"^(zh|en)$")


class UploadQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="attachment", max_length=255)


# ------------------------------------------------------------------------------------ visitors


@api.route(
    "POST",
    "/api/webchat/visitors",
    summary="A new web-chat visitor: id and signed token (public; rate-limited per address)",
    role=None,
    response=VisitorSession,
    status=201,
)
async def create_visitor(request: web.Request) -> VisitorSession:
    return await _webchat(request).new_visitor(request.remote)


@api.route(
    "POST",
    "/api/webchat/attachments",
    summary="Upload a file to attach to a chat message (visitor token; size and type limited)",
    role=None,
    query=UploadQuery,
    response=Attachment,
    status=201,
)
async def upload_attachment(request: web.Request, query: UploadQuery) -> Attachment:
    service = _webchat(request)
    visitor_id = service.tokens.verify(request.headers.get(VISITOR_TOKEN_HEADER))
    attachment = await service.store_attachment(
        visitor_id, query.name, request.content_length, request.content.read
    )
    audit_details(request, visitor_id=visitor_id, attachment_id=attachment.id, size=attachment.size)
    return attachment


@api.route(
    "GET",
    "/api/webchat/attachments/{attachment_id}",
    summary="A chat attachment: with a signed link (visitors) or an agent token",
    role=None,
)
async def download_attachment(request: web.Request) -> web.StreamResponse:
    service = _webchat(request)
    if request.headers.get("Authorization"):
        await current_user(request, Role.agent)
    else:
        service.tokens.check_url(request.path, request.query.get("exp"), request.query.get("sig"))
    doc, path = await service.attachment(request.match_info["attachment_id"])
    return web.FileResponse(path, headers=attachment_headers(doc))


@api.route(
    "GET",
    "/api/email/attachments/{attachment_id}",
    summary="An attachment of an inbound email (downloaded, never rendered)",
)
async def download_email_attachment(request: web.Request) -> web.StreamResponse:
    doc, path = await request.app[CHANNELS].email.attachment(request.match_info["attachment_id"])
    headers = attachment_headers(doc)
    headers["Content-Disposition"] = f'attachment; filename="{doc["name"]}"'
    return web.FileResponse(path, headers=headers)


# -------------------------------------------------------------------------------- knowledge base


@api.route(
    "GET", "/api/kb/articles", summary="Knowledge base articles", query=KbQuery, response=list[KbArticle]
)
async def list_kb_articles(request: web.Request, query: KbQuery) -> list[KbArticle]:
    return await request.app[CHANNELS].kb.list_articles(query.language)


@api.route(
    "GET",
    "/api/kb/search",
    summary="Search the knowledge base (BM25)",
    query=KbSearchQuery,
    response=list[KbHit],
)
async def search_kb(request: web.Request, query: KbSearchQuery) -> list[KbHit]:
    return await request.app[CHANNELS].kb.search(query.q, language=query.language, limit=5)


@api.route("GET", "/api/kb/articles/{article_id}", summary="One knowledge base article", response=KbArticle)
async def get_kb_article(request: web.Request) -> KbArticle:
    return await request.app[CHANNELS].kb.get(request.match_info["article_id"])


@api.route(
    "POST",
    "/api/kb/articles",
    summary="Add a knowledge base article",
    role=Role.admin,
    body=NewKbArticle,
    response=KbArticle,
    status=201,
)
async def create_kb_article(request: web.Request, body: NewKbArticle) -> KbArticle:
    article = await request.app[CHANNELS].kb.create(body)
    audit_details(request, article_id=article.id, title=article.title)
    return article


@api.route(
    "PATCH",
    "/api/kb/articles/{article_id}",
    summary="Change a knowledge base article",
    role=Role.admin,
    body=KbArticlePatch,
    response=KbArticle,
    audit_target="article_id",
)
async def update_kb_article(request: web.Request, body: KbArticlePatch) -> KbArticle:
    return await request.app[CHANNELS].kb.update(request.match_info["article_id"], body)


@api.route(
    "DELETE",
    "/api/kb/articles/{article_id}",
    summary="Delete a knowledge base article",
    role=Role.admin,
    audit_target="article_id",
)
async def delete_kb_article(request: web.Request) -> None:
    await request.app[CHANNELS].kb.delete(request.match_info["article_id"])


# ------------------------------------------------------------------------------------- mounting


def mount_webchat(app: web.Application, settings: Settings) -> None:
    """The visitors' Socket.IO server, CORS for ``/api/webchat/*`` and the web chat's start/stop.

    Call after the app's services context is registered: this context runs after it (and stops before)."""
    origins = allowed_origins(settings.webchat_allowed_origins)
    sockets = VisitorSockets(
        redis_url=settings.redis_url,
        channel=f"huiliu-webchat:{settings.db_name}",
        origins=origins,
        max_packet_bytes=max(64 * 1024, settings.webchat_max_chars * 8),
    )
    sockets.attach(app)
    app[VISITOR_SOCKETS] = sockets

    def allowed(origin: str | None) -> str | None:
        if not origin:
            return None
        if "*" in origins:
            return "*"
        return origin if origin.rstrip("/") in origins else None

    async def preflight(request: web.Request) -> web.Response:
        origin = allowed(request.headers.get("Origin"))
        if origin is None:
            raise web.HTTPForbidden(reason="origin not allowed")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": f"Content-Type, {VISITOR_TOKEN_HEADER}",
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )

    async def add_cors(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith(_CORS_PREFIX) and request.method != "OPTIONS":
            origin = allowed(request.headers.get("Origin"))
            if origin is not None:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Vary"] = "Origin"

    for path in ("/api/webchat/visitors", "/api/webchat/attachments"):
        app.router.add_route("OPTIONS", path, preflight)
    app.on_response_prepare.append(add_cors)
    app.cleanup_ctx.append(_lifecycle)


async def _retry_replies(replies: AgentReplies, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await replies.retry_due()
        except Exception as exc:  # MongoDB down for a moment: the next round tries again
            log.warning("channels.reply_retries_failed", error=repr(exc))


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    from agent_desktop.http import DESKTOP

    channels = app[CHANNELS]
    assert channels.bot is not None and channels.webchat is not None
    channels.bot.desktop = app[DESKTOP]
    bus = channels.webchat.omni.timeline.bus
    assert bus is not None
    await app[VISITOR_SOCKETS].start(channels.webchat, bus)
    email = channels.email

    async def email_reply(conversation_id: str, text: str, actor: Actor) -> None:
        await email.reply(conversation_id, text, actor, record=False)  # message.sent is the record

    replies = channels.replies = AgentReplies(
        channels.db, channels.webchat.omni, channels.sms, channels.wechat, email_reply
    )
    stop_replies = bus.subscribe("timeline.message.sent", replies.handle)
    every = min(30.0, max(0.5, channels.settings.bot_idle_resolve_seconds / 4))
    sweepers = [
        asyncio.create_task(channels.bot.run_sweeper(every), name="bot-sweeper"),
        asyncio.create_task(_retry_replies(replies, REPLY_RETRY_SECONDS), name="reply-retries"),
    ]
    yield
    stop_replies()
    await stop_tasks(*sweepers)
    await channels.webchat.stop()
    await app[VISITOR_SOCKETS].stop()


__all__ = ["VISITOR_SOCKETS", "VISITOR_TOKEN_HEADER", "api", "mount_webchat"]
