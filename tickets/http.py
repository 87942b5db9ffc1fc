"""REST operations for tickets: agents create and work their tickets, supervisors reassign, admins manage
workflow templates, intent rules and staff profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel

from core.api import Api, current_user, json_response
from core.auth import Role
from core.errors import HuiliuError
from core.http import USERS
from tickets.config import Department
from tickets.models import (
    Collaboration,
    HistoryEntry,
    IntentOutcome,
    IntentSignal,
    Language,
    NewTicket,
    ProgressView,
    SlaTimer,
    StaffInput,
    StaffProfile,
    Ticket,
    TicketPage,
    TicketQuery,
    TicketStatus,
)
from tickets.progress import render_error, render_page
from tickets.reports import ReportQuery, TicketReport, report_csv
from tickets.rules import IntentRule
from tickets.service import TicketService, Who
from tickets.webhooks import DeliveryQuery, Webhook, WebhookCreated, WebhookDelivery, WebhookInput, Webhooks
from tickets.workflow import WorkflowTemplate

TICKETS = web.AppKey("tickets", TicketService)
api = Api("tickets")


class TransitionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: TicketStatus
    reason: str = Field(default="", max_length=1000)


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee_id: str | None = None
    department: str | None = None
    reason: str = Field(default="", max_length=1000)


class BounceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000)


class CommentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=10_000)
    public: bool = Field(default=False, description="A reply to the customer, not an internal note")


class CollaborationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    department: str
    question: str = Field(min_length=1, max_length=5000)


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=10_000)


class StartWorkflowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str
    facts: dict[str, Any] = {}


class CompleteStepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=5000)
    facts: dict[str, Any] = Field(default={}, description="Facts learnt in this step (route the next one)")


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approved: bool
    note: str = Field(default="", max_length=5000)


class HandBackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str
    note: str = Field(min_length=1, max_length=5000)


class TemplateDefinition(RootModel[dict[str, Any]]):
    """A workflow template as in ``tickets/schemas/workflows/*.yaml``."""


class ProgressQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lang: Language | None = Field(default=None, description="Override the ticket's language")


async def _who(request: web.Request) -> Who:
    return Who.staff(await current_user(request))


def _ref(request: web.Request) -> str:
    return request.match_info["ticket_id"]


# ---------------------------------------------------------------------------------------------- tickets


@api.route(
    "POST", "/api/tickets", summary="Open a ticket by hand", body=NewTicket, response=Ticket, status=201
)
async def create_ticket(request: web.Request, body: NewTicket) -> Ticket:
    return await request.app[TICKETS].create(body, await _who(request))


@api.route(
    "POST",
    "/api/tickets/intents",
    summary="What a customer said → a new ticket, an addition to their open one, or what to ask first",
    body=IntentSignal,
    response=IntentOutcome,
)
async def ticket_from_intent(request: web.Request, body: IntentSignal) -> web.Response:
    outcome = await request.app[TICKETS].from_intent(body, await _who(request))
    return json_response(outcome.model_dump(mode="json"), status=201 if outcome.action == "created" else 200)


@api.route(
    "GET", "/api/tickets", summary="Find tickets, newest first", query=TicketQuery, response=TicketPage
)
async def list_tickets(request: web.Request, query: TicketQuery) -> TicketPage:
    return await request.app[TICKETS].search(query, await _who(request))


@api.route("GET", "/api/tickets/{ticket_id}", summary="One ticket, by id or number", response=Ticket)
async def get_ticket(request: web.Request) -> Ticket:
    return await request.app[TICKETS].get(_ref(request))


@api.route(
    "GET", "/api/tickets/{ticket_id}/history", summary="Everything that happened", response=list[HistoryEntry]
)
async def ticket_history(request: web.Request) -> list[HistoryEntry]:
    return await request.app[TICKETS].history(_ref(request))


@api.route("GET", "/api/tickets/{ticket_id}/sla", summary="The ticket's SLA timers", response=list[SlaTimer])
async def ticket_sla(request: web.Request) -> list[SlaTimer]:
    service = request.app[TICKETS]
    ticket = await service.get(_ref(request))
    return await service.sla.timers_of(ticket.id)


@api.route(
    "POST",
    "/api/tickets/{ticket_id}/transition",
    summary="Change the status (409 invalid_transition if the status machine forbids it)",
    body=TransitionRequest,
    response=Ticket,
)
async def transition_ticket(request: web.Request, body: TransitionRequest) -> Ticket:
    return await request.app[TICKETS].transition(_ref(request), body.to, body.reason, await _who(request))


@api.route(
    "POST",
    "/api/tickets/{ticket_id}/assign",
    summary="Reassign to a person or a department",
    role=Role.supervisor,
    body=AssignRequest,
    response=Ticket,
)
async def assign_ticket(request: web.Request, body: AssignRequest) -> Ticket:
    return await request.app[TICKETS].assign(
        _ref(request),
        assignee_id=body.assignee_id,
        department=body.department,
        reason=body.reason,
        who=await _who(request),
    )


@api.route(
    "POST",
    "/api/tickets/{ticket_id}/dispatch",
    summary="Run the dispatch rules again",
    role=Role.supervisor,
    response=Ticket,
)
async def redispatch_ticket(request: web.Request) -> Ticket:
    return await request.app[TICKETS].redispatch(_ref(request), await _who(request))


@api.route(
    "POST",
    "/api/tickets/{ticket_id}/bounce",
    summary="Hand the ticket back as not yours (counted as a bounce)",
    body=BounceRequest,
    response=Ticket,
)
async def bounce_ticket(request: web.Request, body: BounceRequest) -> Ticket:
    return await request.app[TICKETS].bounce(_ref(request), body.reason, await _who(request))


@api.route(
    "POST",
    "/api/tickets/{ticket_id}/comments",
    summary="Add an internal note or a reply to the customer",
    body=CommentRequest,
    response=Ticket,
)
async def comment_ticket(request: web.Request, body: CommentRequest) -> Ticket:
    return await request.app[TICKETS].comment(_ref(request), body.text, body.public, await _who(request))


@api.route("PUT", "/api/tickets/{ticket_id}/watchers/{user_id}", summary="Watch the ticket", response=Ticket)
async def add_watcher(request: web.Request) -> Ticket:
    return await request.app[TICKETS].watch(
        _ref(request), request.match_info["user_id"], True, await _who(request)
    )


@api.route("DELETE", "/api/tickets/{ticket_id}/watchers/{user_id}", summary="Stop watching", response=Ticket)
async def remove_watcher(request: web.Request) -> Ticket:
    return await request.app[TICKETS].watch(
        _ref(request), request.match_info["user_id"], False, await _who(request)
    )


@api.route(
    "POST",
    "/api/tickets/{ticket_id}/collaborations",
    summary="Ask another department for help (its lead is texted if nobody answers in time)",
    body=CollaborationRequest,
    response=Collaboration,
    status=201,
)
async def request_collaboration(request: web.Request, body: CollaborationRequest) -> Collaboration:
    return await request.app[TICKETS].request_collaboration(
        _ref(request), body.department, body.question, await _who(request)
    )


@api.route(
    "POST",
    "/api/tickets/{ticket_id}/collaborations/{collaboration_id}/answer",
    summary="Answer a collaboration request",
    body=AnswerRequest,
    response=Collaboration,
)
async def answer_collaboration(request: web.Request, body: AnswerRequest) -> Collaboration:
    return await request.app[TICKETS].answer_collaboration(
        _ref(request), request.match_info["collaboration_id"], body.text, await _who(request)
    )


@api.route(
    "POST",
    "/api/tickets/{ticket_id}/workflow",
    summary="Start a workflow template on the ticket",
    body=StartWorkflowRequest,
    response=Ticket,
)
async def start_workflow(request: web.Request, body: StartWorkflowRequest) -> Ticket:
    return await request.app[TICKETS].start_workflow(
        _ref(request), body.template, body.facts, await _who(request)
    )


@api.route(
    "POST",
    "/api/tickets/{ticket_id}/workflow/steps/{step}/complete",
    summary="Complete a workflow step",
    body=CompleteStepRequest,
    response=Ticket,
)
async def complete_step(request: web.Request, body: CompleteStepRequest) -> Ticket:
    return await request.app[TICKETS].complete_step(
        _ref(request), request.match_info["step"], facts=body.facts, note=body.note, who=await _who(request)
    )


@api.route(
    "POST",
    "/api/tickets/{ticket_id}/workflow/steps/{step}/decision",
    summary="Approve or reject an approval step",
    body=DecisionRequest,
    response=Ticket,
)
async def decide_step(request: web.Request, body: DecisionRequest) -> Ticket:
    return await request.app[TICKETS].decide_step(
        _ref(request),
        request.match_info["step"],
        approved=body.approved,
        note=body.note,
        who=await _who(request),
    )


@api.route(
    "POST",
    "/api/tickets/{ticket_id}/workflow/steps/{step}/hand-back",
    summary="Hand the step's work back to an earlier step",
    body=HandBackRequest,
    response=Ticket,
)
async def hand_back_step(request: web.Request, body: HandBackRequest) -> Ticket:
    return await request.app[TICKETS].hand_back_step(
        _ref(request), request.match_info["step"], to=body.to, note=body.note, who=await _who(request)
    )


# ------------------------------------------------------------------------ templates, rules, staff


@api.route(
    "GET", "/api/workflow-templates", summary="Workflow templates in use", response=list[WorkflowTemplate]
)
async def list_templates(request: web.Request) -> list[WorkflowTemplate]:
    return await request.app[TICKETS].templates()


@api.route(
    "POST",
    "/api/workflow-templates/check",
    summary="Check a template without saving it (400 invalid_template names each problem)",
    role=Role.admin,
    body=TemplateDefinition,
    response=WorkflowTemplate,
)
async def check_template(request: web.Request, body: TemplateDefinition) -> WorkflowTemplate:
    return request.app[TICKETS].check_template(body.root)


@api.route(
    "PUT",
    "/api/workflow-templates/{name}",
    summary="Create or replace a workflow template",
    role=Role.admin,
    body=TemplateDefinition,
    response=WorkflowTemplate,
)
async def put_template(request: web.Request, body: TemplateDefinition) -> WorkflowTemplate:
    return await request.app[TICKETS].put_template(request.match_info["name"], body.root, await _who(request))


@api.route("GET", "/api/intent-rules", summary="What each intent does", response=dict[str, IntentRule])
async def list_rules(request: web.Request) -> dict[str, Any]:
    rules = await request.app[TICKETS].rules()
    return {intent: rule.model_dump(mode="json") for intent, rule in rules.items()}


@api.route(
    "PUT",
    "/api/intent-rules/{intent}",
    summary="Create or replace the rule of an intent",
    role=Role.admin,
    body=IntentRule,
    response=IntentRule,
)
async def put_rule(request: web.Request, body: IntentRule) -> IntentRule:
    return await request.app[TICKETS].put_rule(request.match_info["intent"], body, await _who(request))


@api.route("GET", "/api/departments", summary="Departments", response=list[Department])
async def list_departments(request: web.Request) -> list[Department]:
    return list(request.app[TICKETS].config.departments.values())


@api.route("GET", "/api/staff", summary="Staff profiles", response=list[StaffProfile])
async def list_staff(request: web.Request) -> list[StaffProfile]:
    return await request.app[TICKETS].staff()


@api.route(
    "PUT",
    "/api/staff/{user_id}",
    summary="Set a user's departments, skills, languages, shifts, phone and leads",
    role=Role.admin,
    body=StaffInput,
    response=StaffProfile,
)
async def put_staff(request: web.Request, body: StaffInput) -> StaffProfile:
    user = await request.app[USERS].get(request.match_info["user_id"])
    return await request.app[TICKETS].put_staff(user, body)


# ------------------------------------------------------------------------- the customer's progress


@api.route(
    "GET",
    "/api/progress/{token}",
    summary="What a customer's signed progress link shows (public; 403 tampered, 410 expired)",
    role=None,
    query=ProgressQuery,
    response=ProgressView,
)
async def ticket_progress(request: web.Request, query: ProgressQuery) -> ProgressView:
    return await request.app[TICKETS].progress(request.match_info["token"], query.lang)


async def progress_page(request: web.Request) -> web.Response:
    """The customer's progress page (HTML, no login); a bad link gets a page saying so, and nothing else."""
    headers = {
        "Cache-Control": "no-store",
        "X-Robots-Tag": "noindex",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    }
    language = request.query.get("lang")
    try:
        view = await request.app[TICKETS].progress(
            request.match_info["token"],
            language if language in ("zh", "en") else None,  # type: ignore[arg-type]
        )
    except HuiliuError as error:
        if error.status >= 500:
            raise
        return web.Response(
            text=render_error(error.code), status=error.status, content_type="text/html", headers=headers
        )
    zone = request.app[TICKETS].config.timezone
    other = f"?lang={'zh' if view.language == 'en' else 'en'}"
    return web.Response(
        text=render_page(view, zone, other), content_type="text/html", charset="utf-8", headers=headers
    )


WEB = Path(__file__).parent / "web"


async def reports_page(request: web.Request) -> web.FileResponse:
    """The supervisors' report page (it signs in and calls the reports API itself)."""
    return web.FileResponse(WEB / "reports.html")


async def reports_script(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB / "reports.js")


def mount_pages(app: web.Application) -> None:
    """The pages of the tickets package that are not API operations."""
    app.router.add_get("/p/{token}", progress_page, name="ticket_progress_page")
    app.router.add_get("/supervisor/reports", reports_page, name="ticket_reports_page")
    app.router.add_get("/supervisor/reports.js", reports_script, name="ticket_reports_script")


# ------------------------------------------------------------------------------------------ reports


@api.route(
    "GET",
    "/api/reports/tickets",
    summary="Stage handling times, department response times, SLA compliance, bounces, CSAT, volumes",
    role=Role.supervisor,
    query=ReportQuery,
    response=TicketReport,
)
async def ticket_report(request: web.Request, query: ReportQuery) -> TicketReport:
    return await request.app[TICKETS].reports.tickets(query)


@api.route(
    "GET",
    "/api/reports/tickets.csv",
    summary="The same report as CSV (section, key, name_zh, name_en, metric, value)",
    role=Role.supervisor,
    query=ReportQuery,
)
async def ticket_report_csv(request: web.Request, query: ReportQuery) -> web.Response:
    report = await request.app[TICKETS].reports.tickets(query)
    filename = f"tickets-{report.since:%Y%m%d}-{report.until:%Y%m%d}.csv"
    return web.Response(
        body=("\ufeff" + report_csv(report)).encode(),  # the BOM makes Excel read the Chinese right
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ------------------------------------------------------------------------------ outgoing webhooks


def _webhooks(request: web.Request) -> Webhooks:
    webhooks = request.app[TICKETS].webhooks
    assert webhooks is not None, "create_service always sets webhooks"
    return webhooks


@api.route(
    "POST",
    "/api/webhooks",
    summary="Subscribe a URL to ticket events (signed with HMAC-SHA256; the secret is shown once)",
    role=Role.admin,
    body=WebhookInput,
    response=WebhookCreated,
    status=201,
)
async def create_webhook(request: web.Request, body: WebhookInput) -> WebhookCreated:
    user = await current_user(request, Role.admin)
    return await _webhooks(request).create(body, user.username)


@api.route("GET", "/api/webhooks", summary="Webhook subscriptions", role=Role.admin, response=list[Webhook])
async def list_webhooks(request: web.Request) -> list[Webhook]:
    return await _webhooks(request).all()


@api.route(
    "DELETE",
    "/api/webhooks/{webhook_id}",
    summary="Remove a webhook subscription",
    role=Role.admin,
    status=204,
)
async def delete_webhook(request: web.Request) -> None:
    await _webhooks(request).remove(request.match_info["webhook_id"])


@api.route(
    "GET",
    "/api/webhooks/{webhook_id}/deliveries",
    summary="Recent deliveries of a webhook, newest first, with each attempt",
    role=Role.admin,
    query=DeliveryQuery,
    response=list[WebhookDelivery],
)
async def webhook_deliveries(request: web.Request, query: DeliveryQuery) -> list[WebhookDelivery]:
    return await _webhooks(request).history(request.match_info["webhook_id"], query)


@api.route(
    "POST",
    "/api/webhooks/deliveries/{delivery_id}/retry",
    summary="Send a failed delivery again",
    role=Role.admin,
    response=WebhookDelivery,
)
async def retry_webhook_delivery(request: web.Request) -> WebhookDelivery:
    return await _webhooks(request).retry(request.match_info["delivery_id"])
