"""REST for the desktop: the agent's own state and offers, wrap-up, queues and skills (admin), the
wallboard (supervisor). Parse, call the ACD, map errors (the Api layer does the mapping)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from agent_desktop.models import (
    Agent,
    AgentSkills,
    Contact,
    Position,
    QueueConfig,
    QueuePatch,
    StateChange,
    Wallboard,
    WrapUp,
)
from agent_desktop.service import DESKTOP
from core.api import Api, current_user
from core.auth import Role

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
    summary="Place in line and expected wait",
    response=Position,
)
async def contact_position(request: web.Request) -> Position:
    return await request.app[DESKTOP].acd.position(request.match_info["contact_id"])


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


@api.route(
    "GET",
    "/api/desktop/wallboard",
    summary="Queues and agents right now",
    role=Role.supervisor,
    response=Wallboard,
)
async def wallboard(request: web.Request) -> Wallboard:
    return await request.app[DESKTOP].acd.wallboard()
