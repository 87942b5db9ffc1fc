"""Declared REST operations: one decorator gives the route, its auth rule, body/query validation and its
OpenAPI entry, so the spec at ``/api/openapi.json`` cannot drift from what the server does.

A handler receives the request plus the validated ``body`` / ``query`` models and returns a pydantic model,
a list of them, a plain dict, or an aiohttp response.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from core.auth import Role, User, parse_bearer
from core.errors import Forbidden, Invalid, PayloadTooLarge
from core.jsonutil import dumps

Handler = Callable[..., Awaitable[Any]]
USER_KEY = web.RequestKey("user", User)

# Set by core.app; the API layer only needs "token -> user".
TokenResolver = Callable[[str], Awaitable[User]]
TOKEN_RESOLVER = web.AppKey("token_resolver", object)
MAX_BODY_BYTES = web.AppKey("max_body_bytes", int)


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    role: Role | None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    tags: tuple[str, ...] = ()
    audit_target: str | None = None  # match_info key naming the object acted on

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


OPERATION_KEY = web.RequestKey("operation", Operation)


@dataclass
class Api:
    """A package's set of operations; ``core.app`` mounts every package's ``Api`` on one application."""

    tag: str
    operations: list[Operation] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        role: Role | None = Role.agent,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        audit_target: str | None = None,
    ) -> Callable[[Handler], Handler]:
        """``role=None`` makes an operation public (login, health); everything else needs a token."""

        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method.upper(),
                    path,
                    handler,
                    summary,
                    role,
                    body,
                    query,
                    response,
                    status,
                    (self.tag,),
                    audit_target,
                )
            )
            return handler

        return register

    def mount(self, app: web.Application) -> None:
        for operation in self.operations:
            app.router.add_route(
                operation.method, operation.path, _wrap(operation), name=operation.operation_id
            )


async def current_user(request: web.Request, required: Role = Role.agent) -> User:
    """The authenticated user of ``request``; ``Unauthorized`` / ``Forbidden`` otherwise."""
    user = request.get(USER_KEY)
    if user is None:
        resolver: TokenResolver = request.app[TOKEN_RESOLVER]  # type: ignore[assignment]
        user = await resolver(parse_bearer(request.headers.get("Authorization")))
        request[USER_KEY] = user
    if not user.allows(required):
        raise Forbidden(
            f"this needs the {required.value} role; you are {user.role.value}", code="forbidden_role"
        )
    return user


async def read_json(request: web.Request) -> Any:
    limit = request.app[MAX_BODY_BYTES]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {limit}", limit=limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes", limit=limit) from None
    if not raw:
        raise Invalid("a JSON body is required", code="body_required")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"body is not valid JSON: {exc}", code="invalid_json") from None


def validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(part) for part in error["loc"]) or where,
                "message": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors(include_url=False, include_input=False)
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise Invalid(f"{where}: {detail}", code="validation_failed", errors=errors) from None


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json", headers=headers)


def _dump(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    if isinstance(result, list):
        return [_dump(item) for item in result]
    return result


def _wrap(operation: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        request[OPERATION_KEY] = operation
        if operation.role is not None:
            await current_user(request, operation.role)
        kwargs: dict[str, Any] = {}
        if operation.body is not None:
            kwargs["body"] = validate(operation.body, await read_json(request), "body")
        if operation.query is not None:
            kwargs["query"] = validate(operation.query, dict(request.query), "query")
        result = await operation.handler(request, **kwargs)
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        return json_response(_dump(result), status=operation.status)

    handle.__name__ = operation.operation_id
    return handle


# ---------------------------------------------------------------------------------------------- OpenAPI


def openapi_spec(apis: list[Api], *, title: str, version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}

    def schema_of(annotation: Any) -> dict[str, Any]:
        generated = TypeAdapter(annotation).json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(generated.pop("$defs", {}))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            schemas[annotation.__name__] = generated
            return {"$ref": f"#/components/schemas/{annotation.__name__}"}
        return generated

    for api in apis:
        for op in api.operations:
            entry: dict[str, Any] = {
                "operationId": op.operation_id,
                "summary": op.summary,
                "tags": list(op.tags),
                "parameters": [
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                    for name in re.findall(r"{(\w+)}", op.path)
                ],
                "responses": {},
            }
            if op.role is None:
                entry["security"] = []
            else:
                entry["x-required-role"] = op.role.value
                entry["responses"]["401"] = {"$ref": "#/components/responses/Problem"}
                entry["responses"]["403"] = {"$ref": "#/components/responses/Problem"}
            if op.query is not None:
                for name, info in op.query.model_fields.items():
                    entry["parameters"].append(
                        {
                            "name": info.alias or name,
                            "in": "query",
                            "required": info.is_required(),
                            "description": info.description or "",
                            "schema": schema_of(info.annotation),
                        }
                    )
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": schema_of(op.body)}},
                }
                entry["responses"]["400"] = {"$ref": "#/components/responses/Problem"}
                entry["responses"]["413"] = {"$ref": "#/components/responses/Problem"}
            if op.response is None:
                entry["responses"][str(op.status)] = {"description": "Done"}
            else:
                entry["responses"][str(op.status)] = {
                    "description": "OK",
                    "content": {"application/json": {"schema": schema_of(op.response)}},
                }
            openapi_path = re.sub(r"{(\w+)(:[^}]*)?}", r"{\1}", op.path)
            paths.setdefault(openapi_path, {})[op.method.lower()] = entry

    schemas["Problem"] = {
        "type": "object",
        "description": "RFC 9457 problem details; `code` is stable and machine-readable.",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "code": {"type": "string"},
            "detail": {"type": "string"},
        },
        "required": ["status", "code", "detail"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Problem": {
                    "description": "Error",
                    "content": {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                    },
                }
            },
        },
    }
