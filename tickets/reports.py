"""Ticket reports for supervisors: how long each workflow stage takes, how fast each department answers,
SLA compliance, bounce-backs (misdispatch), CSAT, and volume by intent and channel — over tickets opened in
a period. Computed from the ticket documents and SLA timers (no separate counters to drift), as JSON or as
CSV rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections import Counter, defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import Invalid
from tickets.clock import Clock
from tickets.config import Department
from tickets.models import Text
from tickets.store import TicketStore

Doc = dict[str, Any]
MAX_TICKETS = 100_000
_MAX_SPAN = dt.timedelta(days=366)


class ReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    since: dt.datetime | None = Field(default=None, description="Tickets opened from (default: 30 days ago)")
    until: dt.datetime | None = Field(default=None, description="…until, exclusive (default: now)")

    @model_validator(mode="after")
    def _aware(self) -> ReportQuery:
        for value in (self.since, self.until):
            if value is not None and value.tzinfo is None:
                raise ValueError("times need a timezone, e.g. 2026-11-01T00:00:00+08:00")
        return self


class Durations(BaseModel):
    count: int
    avg_seconds: float | None
    p50_seconds: float | None
    p90_seconds: float | None


class StageRow(BaseModel):
    template: str
    step: str
    title: Text
    department: str
    completed: Durations
    open: int = Field(description="Steps of this stage still active or waiting")


class DepartmentRow(BaseModel):
    department: str
    name: Text
    tickets: int
    first_response: Durations
    unanswered: int


class SlaRow(BaseModel):
    kind: str
    total: int
    met: int
    breached: int
    running: int
    compliance: float | None = Field(description="Not breached / (met + breached); None with neither")


class DispatchStats(BaseModel):
    tickets: int
    bounced_tickets: int
    bounces: int
    reassigned_tickets: int
    reassignments: int
    bounce_rate: float | None = Field(description="Share of tickets handed back at least once (misdispatch)")
    reassign_rate: float | None


class CsatStats(BaseModel):
    requested: int
    answered: int
    response_rate: float | None
    average: float | None
    distribution: dict[str, int]


class Count(BaseModel):
    key: str
    count: int


class TicketReport(BaseModel):
    since: dt.datetime
    until: dt.datetime
    tickets: int
    truncated: bool
    by_status: list[Count]
    stages: list[StageRow]
    departments: list[DepartmentRow]
    sla: list[SlaRow]
    dispatch: DispatchStats
    csat: CsatStats
    reopened: int
    by_intent: list[Count]
    by_channel: list[Count]


def durations(values: list[float]) -> Durations:
    if not values:
        return Durations(count=0, avg_seconds=None, p50_seconds=None, p90_seconds=None)
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)

    return Durations(
        count=len(values),
        avg_seconds=round(statistics.fmean(values), 1),
        p50_seconds=at(0.5),
        p90_seconds=at(0.9),
    )


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _counts(counter: Counter[str]) -> list[Count]:
    return [Count(key=key, count=count) for key, count in counter.most_common()]


_FIELDS = {
    "department": 1,
    "status": 1,
    "intent": 1,
    "channel": 1,
    "created_at": 1,
    "first_response_at": 1,
    "bounce_count": 1,
    "reassign_count": 1,
    "reopen_count": 1,
    "csat": 1,
    "workflow.template": 1,
    "workflow.steps": 1,
}


class Reports:
    def __init__(self, store: TicketStore, departments: dict[str, Department], clock: Clock) -> None:
        self.store = store
        self.departments = departments
        self.clock = clock

    async def tickets(self, query: ReportQuery) -> TicketReport:
        until = query.until or self.clock.now()
        since = query.since or until - dt.timedelta(days=30)
        if since >= until or until - since > _MAX_SPAN:
            raise Invalid("the period must run forwards and span at most 366 days", code="invalid_period")
        cursor = self.store.tickets.find(
            {"created_at": {"$gte": since, "$lt": until}}, _FIELDS, limit=MAX_TICKETS + 1
        )
        docs = [doc async for doc in cursor]
        truncated = len(docs) > MAX_TICKETS
        docs = docs[:MAX_TICKETS]

        stage_times: dict[tuple[str, str], list[float]] = defaultdict(list)
        stage_open: Counter[tuple[str, str]] = Counter()
        stage_info: dict[tuple[str, str], Doc] = {}
        department_tickets: Counter[str] = Counter()
        department_times: dict[str, list[float]] = defaultdict(list)
        csat_scores: list[int] = []
        csat_requested = 0
        for doc in docs:
            department = doc.get("department") or "-"
            department_tickets[department] += 1
            if doc.get("first_response_at"):
                department_times[department].append(
                    (doc["first_response_at"] - doc["created_at"]).total_seconds()
                )
            run = doc.get("workflow")
            for step_id, step in (run or {}).get("steps", {}).items():
                key = (run["template"], step_id)
                stage_info.setdefault(key, step)
                if step["state"] == "done" and step.get("started_at") and step.get("completed_at"):
                    stage_times[key].append((step["completed_at"] - step["started_at"]).total_seconds())
                elif step["state"] in ("active", "waiting", "handed_back"):
                    stage_open[key] += 1
            csat = doc.get("csat")
            if csat:
                csat_requested += 1
                if csat.get("score"):
                    csat_scores.append(int(csat["score"]))

        ticket_ids = [str(doc["_id"]) for doc in docs]
        sla: dict[str, Counter[str]] = defaultdict(Counter)
        for start in range(0, len(ticket_ids), 5000):
            timers = self.store.timers.find(
                {"ticket_id": {"$in": ticket_ids[start : start + 5000]}},
                {"kind": 1, "state": 1, "breached_at": 1},
            )
            async for timer in timers:
                row = sla[timer["kind"]]
                row["total"] += 1
                if timer.get("breached_at") is not None:
                    row["breached"] += 1
                elif timer["state"] == "met":
                    row["met"] += 1
                elif timer["state"] in ("running", "paused"):
                    row["running"] += 1

        def name(department: str) -> Text:
            known = self.departments.get(department)
            return known.name if known else Text(zh=department, en=department)

        bounced = [doc for doc in docs if doc.get("bounce_count")]
        reassigned = [doc for doc in docs if doc.get("reassign_count")]
        return TicketReport(
            since=since,
            until=until,
            tickets=len(docs),
            truncated=truncated,
            by_status=_counts(Counter(doc["status"] for doc in docs)),
            stages=[
                StageRow(
                    template=template,
                    step=step,
                    title=Text(**stage_info[(template, step)]["title"]),
                    department=stage_info[(template, step)]["department"],
                    completed=durations(stage_times[(template, step)]),
                    open=stage_open[(template, step)],
                )
                for template, step in sorted(stage_info)
            ],
            departments=[
                DepartmentRow(
                    department=department,
                    name=name(department),
                    tickets=count,
                    first_response=durations(department_times[department]),
                    unanswered=count - len(department_times[department]),
                )
                for department, count in sorted(department_tickets.items())
            ],
            sla=[
                SlaRow(
                    kind=kind,
                    total=row["total"],
                    met=row["met"],
                    breached=row["breached"],
                    running=row["running"],
                    compliance=_rate(row["met"], row["met"] + row["breached"]),
                )
                for kind, row in sorted(sla.items())
            ],
            dispatch=DispatchStats(
                tickets=len(docs),
                bounced_tickets=len(bounced),
                bounces=sum(doc["bounce_count"] for doc in bounced),
                reassigned_tickets=len(reassigned),
                reassignments=sum(doc["reassign_count"] for doc in reassigned),
                bounce_rate=_rate(len(bounced), len(docs)),
                reassign_rate=_rate(len(reassigned), len(docs)),
            ),
            csat=CsatStats(
                requested=csat_requested,
                answered=len(csat_scores),
                response_rate=_rate(len(csat_scores), csat_requested),
                average=round(statistics.fmean(csat_scores), 2) if csat_scores else None,
                distribution={str(score): csat_scores.count(score) for score in range(1, 6)},
            ),
            reopened=sum(1 for doc in docs if doc.get("reopen_count")),
            by_intent=_counts(Counter(doc.get("intent") or "-" for doc in docs)),
            by_channel=_counts(Counter(doc["channel"] for doc in docs)),
        )


def report_csv(report: TicketReport) -> str:
    """The report as CSV rows ``section, key, name_zh, name_en, metric, value`` (one figure a row, so a
    spreadsheet pivots it any way)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "name_zh", "name_en", "metric", "value"])

    def row(section: str, key: str, metric: str, value: Any, name: Text | None = None) -> None:
        writer.writerow(
            [
                section,
                key,
                name.zh if name else "",
                name.en if name else "",
                metric,
                "" if value is None else value,
            ]
        )

    def timing(section: str, key: str, prefix: str, figures: Durations, name: Text | None) -> None:
        row(section, key, f"{prefix}count", figures.count, name)
        for metric in ("avg_seconds", "p50_seconds", "p90_seconds"):
            row(section, key, prefix + metric, getattr(figures, metric), name)

    row("period", "since", "at", report.since.isoformat())
    row("period", "until", "at", report.until.isoformat())
    row("volume", "all", "tickets", report.tickets)
    for item in report.by_status:
        row("status", item.key, "tickets", item.count)
    for item in report.by_intent:
        row("intent", item.key, "tickets", item.count)
    for item in report.by_channel:
        row("channel", item.key, "tickets", item.count)
    for stage in report.stages:
        key = f"{stage.template}/{stage.step}"
        timing("stage", key, "handling_", stage.completed, stage.title)
        row("stage", key, "open", stage.open, stage.title)
    for department in report.departments:
        timing(
            "department", department.department, "first_response_", department.first_response, department.name
        )
        row("department", department.department, "tickets", department.tickets, department.name)
        row("department", department.department, "unanswered", department.unanswered, department.name)
    for sla in report.sla:
        for metric in ("total", "met", "breached", "running", "compliance"):
            row("sla", sla.kind, metric, getattr(sla, metric))
    for metric, value in report.dispatch.model_dump().items():
        row("dispatch", "all", metric, value)
    for metric in ("requested", "answered", "response_rate", "average"):
        row("csat", "all", metric, getattr(report.csat, metric))
    for score, count in report.csat.distribution.items():
        row("csat", score, "answers", count)
    row("reopened", "all", "tickets", report.reopened)
    return out.getvalue()
