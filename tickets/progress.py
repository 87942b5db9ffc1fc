"""The customer's progress page: a signed, expiring link to one ticket, and what that page may show.

A link is ``<ticket id>.<expiry, unix seconds>.<HMAC-SHA256>`` under a key derived from the core secret
key, so only this platform makes links, a changed id or expiry breaks the signature, and no login is
needed. The view holds only what the customer may see of that one ticket: its number, subject, status,
the workflow's hops (title, department, state, times) and the public milestones — no internal notes, no
staff names, nothing of other tickets.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from html import escape
from pathlib import Path
from string import Template
from typing import Any

from core.errors import Forbidden, HuiliuError
from tickets.config import Department
from tickets.models import Language, ProgressEvent, ProgressStep, ProgressView, StepState, Text

Doc = dict[str, Any]
_TOKEN = re.compile(r"^([0-9a-f]{24})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$")
PAGE = Path(__file__).parent / "web" / "progress.html"


class LinkExpired(HuiliuError):
    status = 410
    code = "progress_link_expired"
    title = "Link expired"


class ProgressLinks:
    """Makes and checks progress links. ``base_url`` is where customers reach the web process."""

    def __init__(self, secret: str, base_url: str, ttl: dt.timedelta = dt.timedelta(days=30)) -> None:
        self._key = hashlib.sha256(b"huiliu-progress-link\x00" + secret.encode()).digest()
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl

    def _signature(self, ticket_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{ticket_id}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def token(self, ticket_id: str, now: dt.datetime) -> str:
        expires = int((now + self.ttl).timestamp())
        return f"{ticket_id}.{expires}.{self._signature(ticket_id, expires)}"

    def url(self, ticket_id: str, now: dt.datetime) -> str:
        return f"{self.base_url}/p/{self.token(ticket_id, now)}"

    def verify(self, token: str, now: dt.datetime) -> str:
        """The ticket id the token was made for; 403 ``progress_link_invalid`` when it was not made here
        or was changed, 410 ``progress_link_expired`` when its time is over."""
        match = _TOKEN.match(token)
        if match is None or not hmac.compare_digest(
            match.group(3), self._signature(match.group(1), int(match.group(2)))
        ):
            raise Forbidden("this progress link is not valid", code="progress_link_invalid")
        if int(match.group(2)) <= now.timestamp():
            raise LinkExpired("this progress link has expired; ask us for a new one")
        return match.group(1)


STATUS = {
    "new": Text(zh="已受理", en="Received"),
    "open": Text(zh="处理中", en="In progress"),
    "pending-customer": Text(zh="等待您的回复", en="Waiting for your reply"),
    "pending-internal": Text(zh="处理中", en="In progress"),
    "resolved": Text(zh="已解决", en="Resolved"),
    "closed": Text(zh="已关闭", en="Closed"),
    "reopened": Text(zh="已重新打开，处理中", en="Reopened, in progress"),
}
STEP_STATE = {
    StepState.pending: Text(zh="未开始", en="Not started"),
    StepState.waiting: Text(zh="等待其他环节", en="Waiting for other steps"),
    StepState.active: Text(zh="进行中", en="In progress"),
    StepState.done: Text(zh="已完成", en="Done"),
    StepState.rejected: Text(zh="未通过", en="Declined"),
    StepState.handed_back: Text(zh="退回重办", en="Sent back for rework"),
    StepState.cancelled: Text(zh="已取消", en="Cancelled"),
    StepState.skipped: Text(zh="无需办理", en="Not needed"),
}
# The history entries a customer sees, and how they read.
MILESTONES = {
    "ticket.created": Text(zh="工单已受理", en="Ticket received"),
    "ticket.step_started": Text(zh="开始：{step}", en="Started: {step}"),
    "ticket.step_completed": Text(zh="完成：{step}", en="Done: {step}"),
    "ticket.workflow_completed": Text(zh="所有环节已完成", en="All steps done"),
    "ticket.resolved": Text(zh="已解决", en="Resolved"),
    "ticket.reopened": Text(zh="已重新打开", en="Reopened"),
    "ticket.closed": Text(zh="已关闭", en="Closed"),
    "ticket.pending_customer": Text(zh="等待您的回复", en="Waiting for your reply"),
    "ticket.csat_recorded": Text(zh="感谢您的评价", en="Thank you for your rating"),
}
_STATUS_MILESTONE = {
    "resolved": "ticket.resolved",
    "reopened": "ticket.reopened",
    "closed": "ticket.closed",
    "pending-customer": "ticket.pending_customer",
}
_HIDDEN_STEPS = {StepState.pending, StepState.skipped}


def progress_view(
    doc: Doc,
    history: list[Doc],
    departments: dict[str, Department],
    language: Language,
    expires_at: dt.datetime,
) -> ProgressView:
    """What the customer may see of the ticket ``doc`` (a ticket document) and its ``history``."""

    def department_name(department: str | None) -> str:
        known = departments.get(department or "")
        return known.name(language) if known else ""

    steps: list[ProgressStep] = []
    run = doc.get("workflow")
    if run:
        for step in run["steps"].values():
            state = StepState(step["state"])
            if state in _HIDDEN_STEPS:
                continue
            steps.append(
                ProgressStep(
                    title=Text(**step["title"])(language),
                    department=department_name(step["department"]),
                    state=state,
                    state_label=STEP_STATE[state](language),
                    started_at=step.get("started_at"),
                    completed_at=step.get("completed_at"),
                )
            )
        steps.sort(key=lambda item: (item.started_at is None, item.started_at or expires_at))
    events: list[ProgressEvent] = []
    for entry in history:
        kind = entry["kind"]
        if kind == "ticket.status_changed":
            kind = _STATUS_MILESTONE.get(entry["body"].get("to", ""), "")
        text = MILESTONES.get(kind)
        if text is None:
            continue
        title = entry["body"].get("title")
        step = Text(**title)(language) if isinstance(title, dict) else ""
        events.append(ProgressEvent(at=entry["ts"], kind=kind, text=text(language).format(step=step)))
    status = doc["status"]
    return ProgressView(
        number=doc["number"],
        subject=doc["subject"],
        language=language,
        status=status,
        status_label=STATUS[status](language),
        department=department_name(doc.get("department")),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        resolved_at=doc.get("resolved_at"),
        workflow=Text(**run["title"])(language) if run else None,
        steps=steps,
        events=events,
        expires_at=expires_at,
    )


# ------------------------------------------------------------------------------------------- the page

_PAGE_TEXT = {
    "title": Text(zh="工单进度", en="Ticket progress"),
    "status": Text(zh="当前状态", en="Status"),
    "steps": Text(zh="办理环节", en="Steps"),
    "history": Text(zh="进展记录", en="History"),
    "created": Text(zh="受理时间", en="Opened"),
    "department": Text(zh="处理部门", en="Handled by"),
    "expires": Text(zh="本链接有效期至", en="This link works until"),
    "other": Text(zh="English", en="中文"),
}
_ERRORS = {
    "progress_link_invalid": Text(
        zh="链接无效：它可能被修改过或不完整。请使用短信或消息中的原始链接。",
        en="This link is not valid: it may have been changed or cut short. Use the link from our message.",
    ),
    "progress_link_expired": Text(
        zh="链接已过期。回复我们的消息即可获取新的进度链接。",
        en="This link has expired. Reply to our message and we will send you a new one.",
    ),
}


def _when(value: dt.datetime | None, zone: dt.tzinfo) -> str:
    if value is None:
        return ""
    local = value.astimezone(zone)
    return f'<time datetime="{escape(value.isoformat())}">{local:%Y-%m-%d %H:%M}</time>'


def render_page(view: ProgressView, zone: dt.tzinfo, other_language_href: str) -> str:
    """The progress page as HTML (everything from the ticket escaped)."""
    lang = view.language

    def say(key: str) -> str:
        return escape(_PAGE_TEXT[key](lang))

    steps = "".join(
        f'<li class="step {escape(step.state.value)}" data-state="{escape(step.state.value)}">'
        f'<span class="dot"></span><div><strong>{escape(step.title)}</strong>'
        f'<span class="state">{escape(step.state_label)}</span>'
        f"<small>{escape(step.department)} {_when(step.completed_at or step.started_at, zone)}</small>"
        "</div></li>"
        for step in view.steps
    )
    events = "".join(
        f'<li data-kind="{escape(item.kind)}">{_when(item.at, zone)} {escape(item.text)}</li>'
        for item in view.events
    )
    body = (
        f'<h1>{say("title")} <span class="number">{escape(view.number)}</span></h1>'
        f'<p class="subject">{escape(view.subject)}</p>'
        f'<p class="status {escape(view.status)}" id="status">{say("status")}：'
        f"<strong>{escape(view.status_label)}</strong></p>"
        f"<dl><dt>{say('created')}</dt><dd>{_when(view.created_at, zone)}</dd>"
        + (f"<dt>{say('department')}</dt><dd>{escape(view.department)}</dd>" if view.department else "")
        + "</dl>"
        + (
            f"<h2>{say('steps')} · {escape(view.workflow or '')}</h2>"
            f'<ol class="steps" id="steps">{steps}</ol>'
            if view.steps
            else ""
        )
        + f'<h2>{say("history")}</h2><ul class="events" id="events">{events}</ul>'
        + f"<footer>{say('expires')} {_when(view.expires_at, zone)} · "
        f'<a href="{escape(other_language_href)}" lang="{"zh" if lang == "en" else "en"}">{say("other")}</a>'
        "</footer>"
    )
    return _page(lang, _PAGE_TEXT["title"](lang), body)


def render_error(code: str) -> str:
    """A page for a link that does not work, in both languages: the link says nothing trustworthy."""
    text = _ERRORS.get(code, _ERRORS["progress_link_invalid"])
    body = (
        f"<h1>{escape(_PAGE_TEXT['title'].zh)} · {escape(_PAGE_TEXT['title'].en)}</h1>"
        f'<p class="problem" id="problem" data-code="{escape(code)}">{escape(text.zh)}</p>'
        f'<p class="problem" lang="en">{escape(text.en)}</p>'
    )
    return _page("zh", f"{_PAGE_TEXT['title'].zh} · {_PAGE_TEXT['title'].en}", body)


def _page(lang: str, title: str, body: str) -> str:
    template = Template(PAGE.read_text(encoding="utf-8"))
    return template.substitute(lang="zh-CN" if lang == "zh" else "en", title=escape(title), body=body)
