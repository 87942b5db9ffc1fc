"""REST for the desktop: the agent's own state and offers, wrap-up, queues and skills (admin), the
wallboard (supervisor). Parse, call the ACD, map errors (the Api layer does the mapping)."""

from __future__ import annotations

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from agent_desktop.models import (
    Agent,
    AgentSkills,
    Alert,
    ChatMessage,
    ChatReply,
    Contact,
    Position,
    QueueConfig,
    QueuePatch,
    StateChange,
    StatePage,
    Wallboard,
    WallboardConfig,
    WallboardConfigPatch,
    WrapUp,
)
from agent_desktop.service import Desktop
from core.api import Api, current_user, json_response
from core.auth import Role
from core.errors import Forbidden
from core.http import audit_details

DESKTOP = web.AppKey("desktop", Desktop)
api = Api("agent_desktop")


class Done(BaseModel):
    ok: bool = True


@api.route("GET", "/api/desktop/me", summary="My agent state", response=Agent)
async def my_state(request: web.Request) -> Agent:
    return await request.app[DESKTOP].agents.get(await current_user(request))


@api.route("PUT", "/api/desktop/me/state", summary="Change my state", body=StateChange, response=Agent)
async def change_my_state(request: web.Request, body: StateChange) -> Agent:
    return await request.app[DESKTOP].agents.set_state(await current_user(request), body)


@api.route("POST", "/api/desktop/offers/{contact_id}/accept", summary="Accept an offer", response=Contact)
async def accept_offer(request: web.Request) -> Contact:
    user = await current_user(request)
    return await request.app[DESKTOP].acd.accept(user, request.match_info["contact_id"])


@api.route("POST", "/api/desktop/offers/{contact_id}/decline", summary="Decline an offer", response=Contact)
async def decline_offer(request: web.Request) -> Contact:
    user = await current_user(request)
    return await request.app[DESKTOP].acd.decline(user, request.match_info["contact_id"])


@api.route(
    "POST", "/api/desktop/contacts/{contact_id}/end", summary="End a connected contact", response=Contact
)
async def end_contact(request: web.Request) -> Contact:
    user = await current_user(request)
    return await request.app[DESKTOP].acd.end(user, request.match_info["contact_id"])


@api.route(
    "POST",
    "/api/desktop/contacts/{contact_id}/wrap-up",
    summary="Wrap up a contact with codes",
    body=WrapUp,
    response=Contact,
)
async def wrap_up_contact(request: web.Request, body: WrapUp) -> Contact:
    user = await current_user(request)
    return await request.app[DESKTOP].acd.wrap_up(user, request.match_info["contact_id"], body)


@api.route(
    "GET",
    "/api/desktop/contacts/{contact_id}/position",
    summary="Place in line and expected wait (agents: contacts of the queues they serve)",
    response=Position,
)
async def contact_position(request: web.Request) -> Position:
    acd = request.app[DESKTOP].acd
    contact_id = request.match_info["contact_id"]
    await acd.check_may_read(await current_user(request), await acd.store.contact(contact_id))
    return await acd.position(contact_id)


@api.route(
    "GET",
    "/api/desktop/callbacks",
    summary="Callbacks nobody took yet, in my queues (supervisors: all), oldest first",
    response=list[Contact],
)
async def pending_callbacks(request: web.Request) -> list[Contact]:
    return await request.app[DESKTOP].acd.pending_callbacks(await current_user(request))


@api.route(
    "POST",
    "/api/desktop/callbacks/{contact_id}/take",
    summary="Take a pending callback (one agent gets it; 409 callback_taken for the others)",
    response=Contact,
)
async def take_callback(request: web.Request) -> Contact:
    user = await current_user(request)
    return await request.app[DESKTOP].acd.take_callback(user, request.match_info["contact_id"])


@api.route("GET", "/api/desktop/queues", summary="List queues", response=list[QueueConfig])
async def list_queues(request: web.Request) -> list[QueueConfig]:
    return await request.app[DESKTOP].store.all_queues()


@api.route(
    "POST",
    "/api/desktop/queues",
    summary="Create a queue",
    role=Role.admin,
    body=QueueConfig,
    response=QueueConfig,
    status=201,
)
async def create_queue(request: web.Request, body: QueueConfig) -> QueueConfig:
    return await request.app[DESKTOP].store.create_queue(body)


@api.route(
    "PATCH",
    "/api/desktop/queues/{queue_id}",
    summary="Change a queue",
    role=Role.admin,
    body=QueuePatch,
    response=QueueConfig,
    audit_target="queue_id",
)
async def update_queue(request: web.Request, body: QueuePatch) -> QueueConfig:
    return await request.app[DESKTOP].store.update_queue(request.match_info["queue_id"], body)


@api.route(
    "DELETE",
    "/api/desktop/queues/{queue_id}",
    summary="Delete an empty queue",
    role=Role.admin,
    audit_target="queue_id",
)
async def delete_queue(request: web.Request) -> None:
    await request.app[DESKTOP].store.delete_queue(request.match_info["queue_id"])


@api.route(
    "PUT",
    "/api/desktop/agents/{user_id}/skills",
    summary="Set an agent's skills and chat capacity",
    role=Role.admin,
    body=AgentSkills,
    response=Agent,
    audit_target="user_id",
)
async def set_agent_skills(request: web.Request, body: AgentSkills) -> Agent:
    desktop = request.app[DESKTOP]
    target = await desktop.users.get(request.match_info["user_id"])
    await desktop.agents.ensure(target)
    return await desktop.agents.set_skills(target.id, body)


class StateHistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: AwareDatetime | None = Field(default=None, description="From this time (ISO 8601 with zone)")
    until: AwareDatetime | None = Field(default=None, description="Before this time")
    limit: int = Field(default=100, ge=1, le=500)
    cursor: str | None = None


@api.route(
    "GET",
    "/api/desktop/agents/{user_id}/states",
    summary="An agent's state history, newest first (supervisors: anyone; agents: their own)",
    query=StateHistoryQuery,
    response=StatePage,
)
async def agent_state_history(request: web.Request, query: StateHistoryQuery) -> StatePage:
    user = await current_user(request)
    user_id = request.match_info["user_id"]
    if user_id != user.id and not user.allows(Role.supervisor):
        raise Forbidden("agents read only their own state history", code="not_your_history")
    return await request.app[DESKTOP].store.state_history(
        user_id, since=query.since, until=query.until, limit=query.limit, cursor=query.cursor
    )


@api.route(
    "GET",
    "/api/desktop/wallboard",
    summary="Queues and agents right now",
    role=Role.supervisor,
    response=Wallboard,
)
async def wallboard(request: web.Request) -> Wallboard:
    return await request.app[DESKTOP].wallboard.snapshot()


@api.route(
    "PUT",
    "/api/desktop/agents/{user_id}/state",
    summary="Force an agent's state (supervisor; audited)",
    role=Role.supervisor,
    body=StateChange,
    response=Agent,
    audit_target="user_id",
)
async def force_agent_state(request: web.Request, body: StateChange) -> Agent:
    supervisor = await current_user(request, Role.supervisor)
    audit_details(request, state=body.state, reason=body.reason)
    return await request.app[DESKTOP].force_state(supervisor, request.match_info["user_id"], body)


@api.route(
    "GET",
    "/api/desktop/wallboard/config",
    summary="Service-level goal, windows and alert thresholds",
    role=Role.supervisor,
    response=WallboardConfig,
)
async def wallboard_config(request: web.Request) -> WallboardConfig:
    return await request.app[DESKTOP].wallboard.config()


@api.route(
    "PATCH",
    "/api/desktop/wallboard/config",
    summary="Change the service-level goal, windows or alert thresholds",
    role=Role.supervisor,
    body=WallboardConfigPatch,
    response=WallboardConfig,
)
async def update_wallboard_config(request: web.Request, body: WallboardConfigPatch) -> WallboardConfig:
    return await request.app[DESKTOP].wallboard.update_config(body)


@api.route(
    "GET",
    "/api/desktop/alerts",
    summary="Wallboard alerts, newest first (active ones have no cleared_at)",
    role=Role.supervisor,
    response=list[Alert],
)
async def list_alerts(request: web.Request) -> list[Alert]:
    return await request.app[DESKTOP].wallboard.recent_alerts()


@api.route(
    "GET", "/api/desktop/me/contacts", summary="Contacts I am serving or wrapping up", response=list[Contact]
)
async def my_contacts(request: web.Request) -> list[Contact]:
    return await request.app[DESKTOP].chat.my_contacts(await current_user(request))


@api.route(
    "POST",
    "/api/desktop/contacts/{contact_id}/messages",
    summary="Reply in a chat I serve (message.sent on its conversation; idempotent by client_id)",
    body=ChatReply,
    response=ChatMessage,
    status=201,
)
async def reply_in_chat(request: web.Request, body: ChatReply) -> web.Response:
    user = await current_user(request)
    event, created = await request.app[DESKTOP].chat.reply(user, request.match_info["contact_id"], body)
    return json_response(
        ChatMessage(event=event, created=created).model_dump(mode="json"), status=201 if created else 200
    )
