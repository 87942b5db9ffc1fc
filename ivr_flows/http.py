"""REST for IVR flows: supervisors read and validate and override office hours (an emergency closure,
a late opening), admins upload, activate and roll back.

Uploading an invalid flow answers 400 ``flow_invalid`` with ``errors`` — each with file, line, column,
node, code and message — and stores nothing: the active version keeps serving.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from core.api import Api, current_user
from core.auth import Role
from core.db import utcnow
from core.errors import NotFound
from ivr_flows.loader import MAX_SOURCE_BYTES
from ivr_flows.models import FlowSummary, FlowVersion, HoursOverride, OverrideState
from ivr_flows.service import FlowService

FLOWS = web.AppKey("flows", FlowService)
api = Api("ivr flows")


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yaml: str = Field(min_length=1, max_length=MAX_SOURCE_BYTES, description="The flow document")
    activate: bool = Field(default=False, description="Activate the new version at once")


class ValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yaml: str = Field(min_length=1, max_length=MAX_SOURCE_BYTES)
    name: str = Field(default="flow", description="Flow name, used as the file name in error positions")


class OverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: OverrideState = Field(description="What every business_hours node of the flow answers")
    until: AwareDatetime | None = Field(default=None, description="When the override ends (with a timezone)")
    minutes: int | None = Field(default=None, gt=0, le=31 * 24 * 60, description="Or: for this many minutes")
    reason: str = Field(min_length=1, max_length=200, description="Shown in every caller's IVR path")

    @model_validator(mode="after")
    def _one_end(self) -> OverrideRequest:
        if (self.until is None) == (self.minutes is None):
            raise ValueError("give either until or minutes")
        return self

    def ends(self) -> dt.datetime:
        return self.until if self.until is not None else utcnow() + dt.timedelta(minutes=self.minutes or 0)


class FlowErrorOut(BaseModel):
    file: str
    line: int
    column: int
    node: str | None
    code: str
    message: str


class ValidationReport(BaseModel):
    valid: bool
    errors: list[FlowErrorOut]
    nodes: int = Field(description="Number of nodes of a valid flow (0 when invalid)")


class FlowVersionInfo(BaseModel):
    """A version without its YAML (listings)."""

    name: str
    version: int
    author: str
    created_at: dt.datetime
    active: bool
    activated_at: dt.datetime | None
    checksum: str


class FlowDetail(BaseModel):
    name: str
    active_version: int | None
    versions: list[FlowVersionInfo]


def _info(version: FlowVersion) -> FlowVersionInfo:
    return FlowVersionInfo.model_validate(
        version.model_dump(exclude={"yaml", "activated_by", "previous_active"})
    )


def _version_number(request: web.Request) -> int:
    raw = request.match_info["version"]
    if not raw.isdigit():
        raise NotFound(f"no version {raw!r}", code="flow_version_not_found")
    return int(raw)


@api.route(
    "GET",
    "/api/flows",
    summary="IVR flows with their active and latest versions",
    role=Role.supervisor,
    response=list[FlowSummary],
)
async def list_flows(request: web.Request) -> list[FlowSummary]:
    return await request.app[FLOWS].summaries()


@api.route(
    "GET",
    "/api/flows/{name}",
    summary="One flow's versions, newest first",
    role=Role.supervisor,
    response=FlowDetail,
)
async def get_flow(request: web.Request) -> FlowDetail:
    name = request.match_info["name"]
    versions = await request.app[FLOWS].versions(name)
    if not versions:
        raise NotFound(f"no flow {name!r}", code="flow_not_found")
    active = max(
        (v for v in versions if v.active), key=lambda v: v.activated_at or v.created_at, default=None
    )
    return FlowDetail(
        name=name, active_version=active.version if active else None, versions=[_info(v) for v in versions]
    )


@api.route(
    "GET",
    "/api/flows/{name}/versions/{version}",
    summary="One version of a flow, with its YAML",
    role=Role.supervisor,
    response=FlowVersion,
)
async def get_flow_version(request: web.Request) -> FlowVersion:
    return await request.app[FLOWS].get(request.match_info["name"], _version_number(request))


@api.route(
    "POST",
    "/api/flows/{name}/versions",
    summary="Upload a new version (validated; refused with line-precise errors when invalid)",
    role=Role.admin,
    body=UploadRequest,
    response=FlowVersion,
    status=201,
    audit_target="name",
)
async def upload_flow_version(request: web.Request, body: UploadRequest) -> FlowVersion:
    user = await current_user(request, Role.admin)
    return await request.app[FLOWS].upload(
        request.match_info["name"], body.yaml, user.username, activate=body.activate
    )


@api.route(
    "POST",
    "/api/flows/{name}/versions/{version}/activate",
    summary="Make a version the one new calls run (calls in progress keep theirs)",
    role=Role.admin,
    response=FlowVersion,
    audit_target="name",
)
async def activate_flow_version(request: web.Request) -> FlowVersion:
    user = await current_user(request, Role.admin)
    return await request.app[FLOWS].activate(
        request.match_info["name"], _version_number(request), user.username
    )


@api.route(
    "POST",
    "/api/flows/{name}/rollback",
    summary="Activate the version that was active before",
    role=Role.admin,
    response=FlowVersion,
    audit_target="name",
)
async def rollback_flow(request: web.Request) -> FlowVersion:
    user = await current_user(request, Role.admin)
    return await request.app[FLOWS].rollback(request.match_info["name"], user.username)


@api.route(
    "GET",
    "/api/flows/{name}/hours-override",
    summary="The office-hours override in force (404 override_not_found when the calendar rules)",
    role=Role.supervisor,
    response=HoursOverride,
)
async def get_hours_override(request: web.Request) -> HoursOverride:
    return await request.app[FLOWS].hours_override(request.match_info["name"])


@api.route(
    "PUT",
    "/api/flows/{name}/hours-override",
    summary="Open or close the flow's line whatever its calendar says, until a time (new calls only)",
    role=Role.supervisor,
    body=OverrideRequest,
    response=HoursOverride,
    audit_target="name",
)
async def set_hours_override(request: web.Request, body: OverrideRequest) -> HoursOverride:
    user = await current_user(request, Role.supervisor)
    return await request.app[FLOWS].set_hours_override(
        request.match_info["name"], body.state, body.ends(), body.reason, user.username
    )


@api.route(
    "DELETE",
    "/api/flows/{name}/hours-override",
    summary="End the override: the flow's calendar rules again",
    role=Role.supervisor,
    audit_target="name",
)
async def clear_hours_override(request: web.Request) -> None:
    user = await current_user(request, Role.supervisor)
    await request.app[FLOWS].clear_hours_override(request.match_info["name"], user.username)


@api.route(
    "POST",
    "/api/flows/validate",
    summary="Validate a flow without storing it",
    role=Role.supervisor,
    body=ValidateRequest,
    response=ValidationReport,
)
async def validate_flow(request: web.Request, body: ValidateRequest) -> ValidationReport:
    flow, errors = await request.app[FLOWS].check(body.name, body.yaml)
    return ValidationReport(
        valid=flow is not None,
        errors=[FlowErrorOut.model_validate(error.to_json()) for error in errors],
        nodes=len(flow.nodes) if flow else 0,
    )
