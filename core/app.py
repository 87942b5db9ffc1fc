"""The web process's composition root: settings → clients → services → routes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web

from agent_desktop import DESKTOP, Desktop, DesktopSockets
from agent_desktop.http import api as agent_desktop_api
from core.api import MAX_BODY_BYTES, TOKEN_RESOLVER
from core.audit import AuditLog
from core.auth import UserService
from core.bus import EventBus
from core.db import Database
from core.demo import seed_demo
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
from ivr_flows import FLOWS, create_flow_service
from ivr_flows.http import api as ivr_flows_api
from omnichannel import OMNICHANNEL, Omnichannel
from omnichannel.channels import CHANNELS, create_channels
from omnichannel.channels.http import api as channels_api
from omnichannel.http import api as omnichannel_api
from telephony.control import CallControl
from telephony.http import CALL_CONTROL, TELEPHONY_STORE
from telephony.http import api as telephony_api
from telephony.store import TelephonyStore
from tickets import TICKETS, create_service
from tickets.http import api as tickets_api

log = get_logger(__name__)

DATABASE = web.AppKey("database", Database)
REDIS = web.AppKey("redis", aioredis.Redis)
BUS = web.AppKey("bus", EventBus)
SOCKETS = web.AppKey("sockets", DesktopSockets)


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
    ]
    app.cleanup_ctx.append(_services)
    # Socket.IO routes must exist before the app starts; one Redis channel per database (tenant).
    app[SOCKETS] = DesktopSockets(redis_url=settings.redis_url, channel=f"huiliu-socketio:{settings.db_name}")
    app[SOCKETS].attach(app)
    for api in app[APIS]:
        api.mount(app)
    mount_core_routes(app)
    app.router.add_get("/", _redirect_to_admin)
    app.router.add_get("/admin", _admin_page)
    app.router.add_static("/static/", STATIC_DIR, name="static")
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.mongo_url is not None and settings.redis_url is not None
    db = Database.connect(settings.mongo_url, settings.db_name, settings.mongo_timeout_ms)
    redis = aioredis.from_url(
        settings.redis_url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=15
    )
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
    app[FLOWS] = create_flow_service(db, bus)
    app[DESKTOP] = Desktop.create(db, app[OMNICHANNEL], app[TICKETS], users, app[SOCKETS])
    app[SOCKETS].bind(users.resolve, app[DESKTOP].acd)
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
    yield
    await app[DESKTOP].acd.stop()
    await app[SOCKETS].stop()
    preparing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await preparing
    await app[CHANNELS].close()
    await bus.stop()
    await redis.aclose()
    await db.close()


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
