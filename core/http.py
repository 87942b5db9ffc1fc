"""The web layer shared by every package: middlewares (request ids, problem+json, audit, metrics), the
core operations (login, users, audit), health, metrics and the OpenAPI documents."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler as AiohttpHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from pymongo.errors import ConnectionFailure, PyMongoError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.api import OPERATION_KEY, USER_KEY, Api, Operation, current_user, json_response, openapi_spec
from core.audit import AuditEntry, AuditLog
from core.auth import NewUser, Role, User, UserPatch, UserService
from core.db import utcnow
from core.errors import HuiliuError, Unauthorized, Unavailable
from core.log import get_logger
from core.metrics import AUDIT_FAILURES, DEPENDENCY_UP, HTTP_LATENCY, HTTP_REQUESTS
from core.settings import Settings

log = get_logger(__name__)

SETTINGS = web.AppKey("settings", Settings)
USERS = web.AppKey("users", UserService)
AUDIT = web.AppKey("audit", AuditLog)
HEALTH_CHECKS = web.AppKey("health_checks", dict)
APIS = web.AppKey("apis", list)
AUDIT_DETAILS_KEY = web.RequestKey("audit_details", dict)
STATIC_DIR = Path(__file__).parent / "web"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

HealthCheck = Callable[[], Awaitable[None]]


def problem_response(error: HuiliuError) -> web.Response:
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    response = json_response(error.to_problem(), status=error.status, headers=headers)
    response.content_type = "application/problem+json"
    return response


_HTTP_CODES = {
    404: ("route_not_found", "no such route"),
    405: ("method_not_allowed", "method not allowed on this route"),
    413: ("payload_too_large", "request body too large"),
}


def _as_huiliu_error(exc: BaseException) -> HuiliuError | None:
    if isinstance(exc, HuiliuError):
        return exc
    if isinstance(exc, ConnectionFailure):
        return Unavailable("the database is unreachable; retry shortly", code="mongodb_unavailable")
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return Unavailable("the message bus is unreachable; retry shortly", code="redis_unavailable")
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        code, detail = _HTTP_CODES.get(exc.status, (f"http_{exc.status}", exc.reason))
        error = HuiliuError(detail, code=code)
        error.status = exc.status
        error.title = exc.reason
        return error
    return None


@web.middleware
async def problem_middleware(request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
    """Every failure leaves as problem+json with a stable code; nothing leaks a traceback."""
    try:
        return await handler(request)
    except Exception as exc:
        error = _as_huiliu_error(exc)
        if error is None:
            if isinstance(exc, web.HTTPException):
                raise
            log.exception("http.unhandled", path=request.path)
            if isinstance(exc, PyMongoError):
                error = Unavailable("the database failed this request; retry shortly", code="mongodb_error")
            else:
                error = HuiliuError("unexpected server error; it has been logged")
        return problem_response(error)


@web.middleware
async def request_middleware(request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
    """Request id, access log, metrics and the audit trail around everything else."""
    request_id = request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        return response
    finally:
        status = response.status if response is not None else 500
        operation = request.get(OPERATION_KEY)
        route = (
            operation.path
            if operation
            else (
                request.match_info.route.resource.canonical
                if request.match_info.route.resource
                else "unmatched"
            )
        )
        elapsed = time.perf_counter() - started
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        HTTP_LATENCY.labels(route).observe(elapsed)
        if response is not None:
            response.headers["X-Request-Id"] = request_id
        user = request.get(USER_KEY)
        log.info(
            "http.request",
            method=request.method,
            route=route,
            status=status,
            ms=round(elapsed * 1000, 1),
            user=user.username if user else None,
        )
        if operation is not None and (request.method in MUTATING or status == 403):
            await _audit(request, operation, status, request_id, user)
        structlog.contextvars.unbind_contextvars("request_id")


async def _audit(
    request: web.Request, operation: Operation, status: int, request_id: str, user: User | None
) -> None:
    details: dict[str, Any] = {"method": request.method, "params": dict(request.match_info)}
    details.update(request.get(AUDIT_DETAILS_KEY, {}))
    actor: dict[str, Any] = (
        {"id": user.id, "username": user.username, "role": user.role.value}
        if user
        else {"id": None, "username": details.pop("username", None), "role": None}
    )
    try:
        await request.app[AUDIT].record(
            actor=actor,
            action=operation.operation_id,
            target=request.path,
            status=status,
            ip=request.remote,
            request_id=request_id,
            details=details,
        )
    except Exception as exc:  # the response is already decided; a lost audit row must be visible
        AUDIT_FAILURES.inc()
        log.error("audit.write_failed", action=operation.operation_id, error=str(exc))


def audit_details(request: web.Request, **details: Any) -> None:
    """Add facts to the audit row of this request (e.g. what a merge moved)."""
    request.setdefault(AUDIT_DETAILS_KEY, {}).update(details)


# ----------------------------------------------------------------------------------------- core routes

api = Api("auth")


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginResponse(BaseModel):
    token: str
    user: User
    expires_in: int


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=1000)
    actor_id: str | None = None
    target: str | None = None


@api.route(
    "POST",
    "/api/auth/login",
    summary="Log in; returns a bearer token",
    role=None,
    body=LoginRequest,
    response=LoginResponse,
)
async def login(request: web.Request, body: LoginRequest) -> LoginResponse:
    audit_details(request, username=body.username)
    token, user = await request.app[USERS].login(body.username, body.password, request.remote)
    request[USER_KEY] = user
    return LoginResponse(token=token, user=user, expires_in=request.app[SETTINGS].token_ttl_seconds)


@api.route("POST", "/api/auth/logout", summary="Revoke the token used for this request", status=204)
async def logout(request: web.Request) -> None:
    user = await current_user(request)
    header = request.headers.get("Authorization", "")
    await request.app[USERS].logout(header.partition(" ")[2].strip())
    await _announce(request, "auth.logged_out", user.id)


@api.route("GET", "/api/auth/me", summary="The logged-in user", response=User)
async def me(request: web.Request) -> User:
    return await current_user(request)


@api.route("GET", "/api/users", summary="List users", role=Role.admin, response=list[User])
async def list_users(request: web.Request) -> list[User]:
    return await request.app[USERS].list()


@api.route(
    "POST", "/api/users", summary="Create a user", role=Role.admin, body=NewUser, response=User, status=201
)
async def create_user(request: web.Request, body: NewUser) -> User:
    return await request.app[USERS].create(body)


@api.route(
    "PATCH",
    "/api/users/{user_id}",
    summary="Change a user (role, language, password, disabled)",
    role=Role.admin,
    body=UserPatch,
    response=User,
)
async def update_user(request: web.Request, body: UserPatch) -> User:
    user = await request.app[USERS].update(request.match_info["user_id"], body)
    await _announce(request, "user.updated", user.id)
    return user


async def _announce(request: web.Request, topic: str, user_id: str) -> None:
    """Tell every web node that ``user_id``'s sign-in or role changed: their open sockets are checked at
    once (``agent_desktop.socket.SESSION_TOPICS``) instead of living on with what the user no longer has."""
    from core.app import BUS  # core.app builds on this module

    bus = request.app.get(BUS)
    if bus is not None:
        await bus.publish(topic, {"id": secrets.token_hex(8), "ts": utcnow(), "user_id": user_id})


@api.route(
    "GET",
    "/api/audit",
    summary="Recent audit entries, newest first",
    role=Role.admin,
    query=AuditQuery,
    response=list[AuditEntry],
)
async def list_audit(request: web.Request, query: AuditQuery) -> list[AuditEntry]:
    return await request.app[AUDIT].recent(limit=query.limit, actor_id=query.actor_id, target=query.target)


# ------------------------------------------------------------------------------- health, metrics, docs


async def healthz(request: web.Request) -> web.Response:
    checks: dict[str, HealthCheck] = request.app[HEALTH_CHECKS]

    async def run(name: str, check: HealthCheck) -> tuple[str, dict[str, Any]]:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(check(), timeout=2.0)
        except Exception as exc:
            DEPENDENCY_UP.labels(name).set(0)
            return name, {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        DEPENDENCY_UP.labels(name).set(1)
        return name, {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}

    results = dict(await asyncio.gather(*(run(name, check) for name, check in checks.items())))
    down = sorted(name for name, result in results.items() if not result["ok"])
    body = {"status": "ok" if not down else "degraded", "down": down, "checks": results}
    return json_response(body, status=200 if not down else 503)


async def metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    header = request.headers.get("Authorization", "")
    token = header.partition(" ")[2].strip()
    if settings.metrics_token is not None and token:
        if not hmac.compare_digest(token, settings.metrics_token.get_secret_value()):
            raise Unauthorized("wrong metrics token", code="invalid_token")
    elif request.remote not in ("127.0.0.1", "::1"):
        await current_user(request, Role.admin)
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(openapi_spec(request.app[APIS], title="Huiliu API", version="0.1.0"))


async def api_docs(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "apidocs.html")


def mount_core_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/metrics", metrics, name="metrics")
    app.router.add_get("/api/openapi.json", openapi_json, name="openapi")
    app.router.add_get("/api/docs", api_docs, name="api_docs")
