"""REST operations for customers, conversations and the timeline."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.api import Api, current_user, json_response
from core.auth import Role
from core.http import audit_details
from omnichannel.models import (
    Actor,
    Channel,
    Conversation,
    Customer,
    CustomerPage,
    CustomerPatch,
    Identity,
    Merge,
    NewConversation,
    NewEvent,
    ResolveRequest,
    ResolveResult,
    TimelineEvent,
    TimelinePage,
)
from omnichannel.service import Omnichannel

OMNICHANNEL = web.AppKey("omnichannel", Omnichannel)
api = Api("customers")


class CustomerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: str | None = Field(
        default=None, max_length=128, description="Name or phone/email fragment, or a full customer id"
    )
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None


class TimelineQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None
    channel: str | None = Field(default=None, description="Comma-separated channels, e.g. voice,wechat")
    kind: str | None = Field(default=None, description="Comma-separated kinds; 'ticket.*' matches a prefix")
    conversation_id: str | None = None

    @field_validator("channel")
    @classmethod
    def _known_channels(cls, value: str | None) -> str | None:
        known = {channel.value for channel in Channel}
        unknown = [part for part in (value or "").split(",") if part and part not in known]
        if unknown:
            raise ValueError(f"unknown channel {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return value

    def channels(self) -> list[Channel] | None:
        return [Channel(part) for part in self.channel.split(",") if part] if self.channel else None

    def kinds(self) -> list[str] | None:
        return [part for part in self.kind.split(",") if part] if self.kind else None


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_id: str = Field(description="The customer folded into the one in the path")


class AppendResult(BaseModel):
    event: TimelineEvent
    created: bool


@api.route(
    "POST",
    "/api/customers/resolve",
    summary="Find the customer owning these identities, or create one",
    body=ResolveRequest,
    response=ResolveResult,
)
async def resolve_customer(request: web.Request, body: ResolveRequest) -> web.Response:
    customer, created = await request.app[OMNICHANNEL].customers.resolve(
        body.identities, name=body.name, language=body.language
    )
    result = ResolveResult(customer=customer, created=created)
    return json_response(result.model_dump(mode="json"), status=201 if created else 200)


@api.route(
    "GET",
    "/api/customers",
    summary="Search customers, newest first",
    query=CustomerQuery,
    response=CustomerPage,
)
async def list_customers(request: web.Request, query: CustomerQuery) -> CustomerPage:
    return await request.app[OMNICHANNEL].customers.search(q=query.q, limit=query.limit, cursor=query.cursor)


@api.route("GET", "/api/customers/{customer_id}", summary="One customer", response=Customer)
async def get_customer(request: web.Request) -> Customer:
    return await request.app[OMNICHANNEL].customers.get(request.match_info["customer_id"])


@api.route(
    "PATCH",
    "/api/customers/{customer_id}",
    summary="Change name, language, tags, VIP, profile",
    body=CustomerPatch,
    response=Customer,
)
async def update_customer(request: web.Request, body: CustomerPatch) -> Customer:
    return await request.app[OMNICHANNEL].customers.update(request.match_info["customer_id"], body)


@api.route(
    "POST",
    "/api/customers/{customer_id}/identities",
    summary="Link another identity to this customer",
    body=Identity,
    response=Customer,
)
async def add_identity(request: web.Request, body: Identity) -> Customer:
    return await request.app[OMNICHANNEL].customers.add_identity(request.match_info["customer_id"], body)


@api.route(
    "POST",
    "/api/customers/{customer_id}/merge",
    summary="Merge another customer into this one",
    role=Role.supervisor,
    body=MergeRequest,
    response=Merge,
    status=201,
)
async def merge_customers(request: web.Request, body: MergeRequest) -> Merge:
    user = await current_user(request, Role.supervisor)
    actor = {"id": user.id, "username": user.username}
    merge = await request.app[OMNICHANNEL].customers.merge(
        request.match_info["customer_id"], body.source_id, actor
    )
    audit_details(
        request,
        merge_id=merge.id,
        source_id=merge.source_id,
        moved=[identity.key for identity in merge.moved_identities],
    )
    return merge


@api.route(
    "GET",
    "/api/customers/{customer_id}/merges",
    summary="Merges this customer took part in",
    response=list[Merge],
)
async def list_merges(request: web.Request) -> list[Merge]:
    return await request.app[OMNICHANNEL].customers.merges_of(request.match_info["customer_id"])


@api.route(
    "POST", "/api/merges/{merge_id}/undo", summary="Undo a merge", role=Role.supervisor, response=Merge
)
async def undo_merge(request: web.Request) -> Merge:
    user = await current_user(request, Role.supervisor)
    merge = await request.app[OMNICHANNEL].customers.unmerge(
        request.match_info["merge_id"], {"id": user.id, "username": user.username}
    )
    audit_details(request, source_id=merge.source_id, target_id=merge.target_id)
    return merge


@api.route(
    "GET",
    "/api/customers/{customer_id}/timeline",
    summary="The customer's unified timeline, newest first (merged customers included)",
    query=TimelineQuery,
    response=TimelinePage,
)
async def read_timeline(request: web.Request, query: TimelineQuery) -> TimelinePage:
    return await request.app[OMNICHANNEL].timeline.page(
        request.match_info["customer_id"],
        limit=query.limit,
        cursor=query.cursor,
        channels=query.channels(),
        kinds=query.kinds(),
        conversation_id=query.conversation_id,
    )


@api.route(
    "POST",
    "/api/customers/{customer_id}/timeline",
    summary="Append an event (idempotent by idempotency_key or the Idempotency-Key header)",
    body=NewEvent,
    response=AppendResult,
    status=201,
)
async def append_event(request: web.Request, body: NewEvent) -> web.Response:
    user = await current_user(request)
    if body.idempotency_key is None and request.headers.get("Idempotency-Key"):
        body = body.model_copy(update={"idempotency_key": request.headers["Idempotency-Key"][:200]})
    actor = Actor(type="agent", id=user.id, name=user.display_name)
    event, created = await request.app[OMNICHANNEL].timeline.append(
        request.match_info["customer_id"], body, actor
    )
    return json_response(
        AppendResult(event=event, created=created).model_dump(mode="json"), status=201 if created else 200
    )


@api.route(
    "POST",
    "/api/customers/{customer_id}/conversations",
    summary="Start a conversation",
    body=NewConversation,
    response=Conversation,
    status=201,
)
async def open_conversation(request: web.Request, body: NewConversation) -> web.Response:
    conversation, created = await request.app[OMNICHANNEL].conversations.open(
        request.match_info["customer_id"], body
    )
    return json_response(conversation.model_dump(mode="json"), status=201 if created else 200)


@api.route(
    "GET",
    "/api/customers/{customer_id}/conversations",
    summary="The customer's conversations",
    response=list[Conversation],
)
async def list_conversations(request: web.Request) -> list[Conversation]:
    return await request.app[OMNICHANNEL].conversations.of_customer(request.match_info["customer_id"])


@api.route("GET", "/api/conversations/{conversation_id}", summary="One conversation", response=Conversation)
async def get_conversation(request: web.Request) -> Conversation:
    return await request.app[OMNICHANNEL].conversations.get(request.match_info["conversation_id"])


@api.route(
    "POST",
    "/api/conversations/{conversation_id}/close",
    summary="Close a conversation",
    response=Conversation,
)
async def close_conversation(request: web.Request) -> Conversation:
    return await request.app[OMNICHANNEL].conversations.close(request.match_info["conversation_id"])
