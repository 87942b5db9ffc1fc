"""The web process's composition root: settings → clients → services → routes."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from agent_desktop import ContactKind, Desktop
from agent_desktop.http import DESKTOP
from agent_desktop.http import api as agent_desktop_api
from agent_desktop.models import LIVE_CONTACT_STATUSES
from agent_desktop.outbound import OutboundCalls
from agent_desktop.socket import DesktopSockets, agent_room
from agent_desktop.softphone import Softphone, agents_own_their_calls, call_access, use_host_addresses
from core.aio import stop_tasks
from core.api import MAX_BODY_BYTES, TOKEN_RESOLVER
from core.audit import AuditLog
from core.auth import User, UserService
from core.bus import EventBus, connect_redis
from core.db import Database
from core.demo import seed_demo, seed_demo_kb
from core.http import (
    APIS,
    AUDIT,
    HEALTH_CHECKS,
    SETTINGS,
    STATIC_DIR,
    USERS,
    mount_core_routes,
    problem_middleware,
    request_middleware,
)
from core.http import api as core_api
from core.log import get_logger
from core.settings import Settings
from ivr_flows import create_flow_service
from ivr_flows.http import FLOWS
from ivr_flows.http import api as ivr_flows_api
from omnichannel import Omnichannel
from omnichannel.channels import create_channels
from omnichannel.channels.http import CHANNELS
from omnichannel.channels.http import api as channels_api
from omnichannel.channels.webchat_http import api as webchat_api
from omnichannel.channels.webchat_http import mount_webchat
from omnichannel.http import OMNICHANNEL
from omnichannel.http import api as omnichannel_api
from telephony import HangupCause, LostCallWatch
from telephony.control import CallControl
from telephony.http import CALL_ACCESS, CALL_CONTROL, OUTBOUND_CALLS, TELEPHONY_STORE
from telephony.http import api as telephony_api
from telephony.store import ENDED, TelephonyStore
from tickets import create_service
from tickets.http import TICKETS
from tickets.http import api as tickets_api
from tickets.http import mount_pages as mount_ticket_pages

log = get_logger(__name__)

DATABASE = web.AppKey("database", Database)
REDIS = web.AppKey("redis", aioredis.Redis)
BUS = web.AppKey("bus", EventBus)
SOCKETS = web.AppKey("sockets", DesktopSockets)
SOFTPHONE = web.AppKey("softphone", Softphone)


def build_app(settings: Settings) -> web.Application:
    if settings.mongo_url is None or settings.redis_url is None:
        missing = "HUILIU_MONGO_URL" if settings.mongo_url is None else "HUILIU_REDIS_URL"
        raise ValueError(f"{missing} is not set; `huiliu run` sets it when it starts the embedded server")
    app = web.Application(
        middlewares=[request_middleware, problem_middleware], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS] = settings
    app[MAX_BODY_BYTES] = settings.max_body_bytes
    app[APIS] = [
        core_api,
        omnichannel_api,
        tickets_api,
        ivr_flows_api,
        telephony_api,
        agent_desktop_api,
        channels_api,
        webchat_api,
    ]
    app.cleanup_ctx.append(_services)
    # Socket.IO routes must exist before the app starts; one Redis channel per database (tenant).
    app[SOCKETS] = DesktopSockets(redis_url=settings.redis_url, channel=f"huiliu-socketio:{settings.db_name}")
    app[SOCKETS].attach(app)
    mount_webchat(app, settings)  # the widget's own Socket.IO server; starts after _services
    for api in app[APIS]:
        api.mount(app)
    mount_core_routes(app)
    mount_ticket_pages(app)
    app.router.add_get("/", _redirect_to_admin)
    app.router.add_get("/admin", _admin_page)
    app.router.add_get("/desktop", _desktop_page)
    app.router.add_get("/wallboard", _wallboard_page)
    app.router.add_static("/static/", STATIC_DIR, name="static")
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.mongo_url is not None and settings.redis_url is not None
    db = Database.connect(settings.mongo_url, settings.db_name, settings.mongo_timeout_ms)
    redis = connect_redis(settings.redis_url)
    bus = EventBus(redis, db)
    users = UserService(
        db,
        token_ttl=dt.timedelta(seconds=settings.token_ttl_seconds),
        max_failures=settings.login_max_failures,
        lockout=dt.timedelta(seconds=settings.login_lockout_seconds),
    )
    app[DATABASE] = db
    app[REDIS] = redis
    app[BUS] = bus
    app[USERS] = users
    app[TOKEN_RESOLVER] = users.resolve
    app[AUDIT] = AuditLog(db)
    app[OMNICHANNEL] = Omnichannel.create(db, bus, default_region=settings.default_region)
    app[CHANNELS] = create_channels(db, app[OMNICHANNEL], redis, settings)
    app[TICKETS] = create_service(db, app[OMNICHANNEL], settings, notifier=app[CHANNELS].notifier)
    app[CHANNELS].attach(app[TICKETS])
    app[TELEPHONY_STORE] = TelephonyStore(db)
    app[CALL_CONTROL] = CallControl(app[TELEPHONY_STORE], redis)
    # a telephony node killed whole has nobody left to end its calls: every web process sweeps too
    lost_calls = LostCallWatch(
        app[TELEPHONY_STORE],
        app[OMNICHANNEL],
        every=max(settings.telephony_node_timeout_seconds / 2, 1.0),
        default_region=settings.default_region,
    )
    app[FLOWS] = create_flow_service(db, bus)
    app[DESKTOP] = Desktop.create(db, app[OMNICHANNEL], app[TICKETS], users, app[SOCKETS])
    app[SOCKETS].bind(users.resolve, app[DESKTOP])
    app[SOFTPHONE] = _softphone(app, redis, settings)
    app[CALL_ACCESS] = agents_own_their_calls(app[DESKTOP].store)
    app[OUTBOUND_CALLS] = OutboundCalls(app[DESKTOP]).dial
    prepared = asyncio.Event()

    async def schema_ready() -> None:
        if not prepared.is_set():
            raise RuntimeError("indexes and migrations are not applied yet")

    app[HEALTH_CHECKS] = {"mongodb": db.ping, "redis": redis.ping, "schema": schema_ready}
    preparing = asyncio.create_task(
        _prepare_until_ready(db, users, settings, prepared), name="prepare-database"
    )
    await bus.start()
    await app[SOCKETS].start()
    await app[DESKTOP].acd.start()
    await lost_calls.start()
    stop_withdrawing = bus.subscribe("timeline.call.ended", _withdraw_lost_call(app[DESKTOP]))
    reconciling = asyncio.create_task(
        _when_prepared(prepared, lambda: withdraw_ended_calls(app[TELEPHONY_STORE], app[DESKTOP])),
        name="withdraw-ended-calls",
    )
    yield
    stop_withdrawing()
    await stop_tasks(reconciling, preparing)
    # Each step bounded: a client stuck on a server that is gone must not keep the process from exiting.
    await _bounded("lost_calls", lost_calls.stop())
    await _bounded("softphone", app[SOFTPHONE].close())
    await _bounded("acd", app[DESKTOP].acd.stop())
    await _bounded("sockets", app[SOCKETS].stop())
    await _bounded("channels", app[CHANNELS].close())
    await _bounded("bus", bus.stop())
    await _bounded("redis", redis.aclose())
    await _bounded("mongodb", db.close())


STOP_STEP_SECONDS = 10.0


async def _bounded(step: str, stopping: Awaitable[object]) -> None:
    try:
        async with asyncio.timeout(STOP_STEP_SECONDS):
            await stopping
    except TimeoutError:
        log.error("app.stop_step_timed_out", step=step, seconds=STOP_STEP_SECONDS)


async def _when_prepared(prepared: asyncio.Event, work: Callable[[], Awaitable[object]]) -> None:
    """Run ``work`` once the database is prepared; a failure is logged (MongoDB may be away at start)."""
    await prepared.wait()
    try:
        await work()
    except Exception as exc:
        log.warning("app.startup_work_failed", error=repr(exc))


async def withdraw_ended_calls(store: TelephonyStore, desktop: Desktop) -> int:
    """Queued calls whose call has already ended leave their queue. The bus subscription above misses a
    call that ended while no web process was listening (its node died and a restarted node swept it); this
    runs at each web start so no agent is ever offered a dead call. Returns how many were withdrawn."""
    withdrawn = 0
    for contact in await desktop.store.contacts_with_status(*LIVE_CONTACT_STATUSES):
        if contact.kind is not ContactKind.call or not contact.external_ref:
            continue
        call = await store.call(contact.external_ref)
        if call is not None and call.get("status") == ENDED:
            if await desktop.acd.withdraw(contact.id, str(call.get("cause") or "ended")) is not None:
                withdrawn += 1
    if withdrawn:
        log.info("acd.ended_calls_withdrawn", count=withdrawn)
    return withdrawn


def _withdraw_lost_call(desktop: Desktop) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """A call that ended with its telephony node (``node_lost``, whoever swept it) leaves its queue: the
    worker that would have withdrawn it is gone, and no agent must be offered a dead call."""

    async def withdraw(event: dict[str, Any]) -> None:
        body = event.get("body") or {}
        if body.get("cause") == HangupCause.node_lost.value and body.get("call_id"):
            await desktop.gateway.withdraw(str(body["call_id"]), HangupCause.node_lost.value)

    return withdraw


def _softphone(app: web.Application, redis: aioredis.Redis, settings: Settings) -> Softphone:
    """Web softphone legs for agents and supervisors (listen / whisper / barge), on the desktop's sockets."""
    sio = app[SOCKETS].sio
    audit = app[AUDIT]

    async def notify(agent_id: str, payload: dict[str, object]) -> None:
        await sio.emit("supervision", payload, room=agent_room(agent_id), namespace="/agent")

    async def record(user: User, action: str, call_id: str, details: dict[str, object]) -> None:
        actor = {"id": user.id, "username": user.username, "role": user.role.value}
        await audit.record(actor=actor, action=action, target=f"call:{call_id}", status=200, details=details)

    use_host_addresses([part.strip() for part in settings.webrtc_host_addresses.split(",") if part.strip()])
    softphone = Softphone(
        redis,
        db_name=settings.db_name,
        authorize=call_access(app[DESKTOP].store, app[TELEPHONY_STORE], app[CALL_CONTROL]),
        notify=notify,
        audit=record,
    )
    softphone.attach(sio)
    return softphone


async def _prepare_until_ready(
    db: Database, users: UserService, settings: Settings, prepared: asyncio.Event
) -> None:
    """Indexes, migrations and the demo tenant; retried while MongoDB is not reachable yet."""
    delay = 0.5
    while True:
        try:
            applied = await db.prepare()
            if applied:
                log.info("database.migrated", applied=applied)
            if settings.demo:
                await seed_demo(users)
                await seed_demo_kb(db)
            log.info("database.ready")
            prepared.set()
            return
        except Exception as exc:
            log.warning("database.not_ready", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _redirect_to_admin(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/admin")


async def _admin_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "admin.html")


async def _desktop_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "desktop.html")


async def _wallboard_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "wallboard.html")
