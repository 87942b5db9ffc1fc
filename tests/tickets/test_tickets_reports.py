"""Supervisor reports over a morning of work with a controllable clock: stage handling times, department
response times, SLA compliance, bounce-backs, CSAT, volumes — as JSON, as CSV, and on the report page."""

from __future__ import annotations

import csv
import datetime as dt
import io

from omnichannel import Channel, Customer
from tests.conftest import ApiClient
from tests.tickets.conftest import Staff, advance, said
from tests.tickets.test_tickets_http import assert_problem
from tests.tickets.test_tickets_progress_http import open_ticket
from tickets import FakeClock, InMemoryScheduler, Priority, TicketService, TicketStatus
from tickets.models import CustomerMessage
from tickets.reports import ReportQuery, report_csv


async def test_a_mornings_work_in_figures(
    tickets: TicketService,
    customer: Customer,
    call: str,
    staff: Staff,
    clock: FakeClock,
    scheduler: InMemoryScheduler,
) -> None:
    opened_at = clock.now()
    urgent = await tickets.from_intent(
        said(customer, "cancel_order", entities={"order_number": "3"}, priority=Priority.urgent)
    )
    exchange = await tickets.from_intent(
        said(
            customer,
            "exchange_request",
            entities={"order_number": "1"},
            conversation_id=call,
            facts={"paid": True, "stock": "out_of_stock"},
        )
    )
    misrouted = await tickets.from_intent(said(customer, "return_request", entities={"order_number": "2"}))
    assert urgent.ticket and exchange.ticket and misrouted.ticket
    owner = staff.assignee(exchange.ticket)
    ticket_id = exchange.ticket.id

    await advance(clock, scheduler, minutes=30)
    await tickets.comment(ticket_id, "您好，正在处理", True, owner)
    await tickets.complete_step(ticket_id, "review", facts={}, note="", who=owner)
    await tickets.bounce(misrouted.ticket.id, "不是我的", staff.assignee(misrouted.ticket))
    await advance(clock, scheduler, hours=2)
    for step, person in (("restock", "wh"), ("pickup", "lg")):
        await tickets.complete_step(ticket_id, step, facts={}, note="", who=staff.who(person))
    finance = (await tickets.get(ticket_id)).workflow.steps["hold_payment"].assignee_name  # type: ignore[union-attr]
    await tickets.complete_step(ticket_id, "hold_payment", facts={}, note="", who=staff.who(finance or ""))
    await advance(clock, scheduler, hours=1)
    await tickets.complete_step(ticket_id, "confirm", facts={}, note="", who=owner)
    await tickets.transition(ticket_id, TicketStatus.resolved, "done", owner)
    rated = await tickets.on_customer_message(
        CustomerMessage(
            customer_id=customer.id,
            channel=Channel.voice,
            conversation_id=call,
            text="4 不错",
            message_key="r",
        )
    )
    assert rated.action == "csat_recorded"

    report = await tickets.reports.tickets(
        ReportQuery(since=opened_at - dt.timedelta(minutes=1), until=clock.now() + dt.timedelta(minutes=1))
    )
    assert report.tickets == 3 and not report.truncated
    stages = {row.step: row for row in report.stages if row.template == "exchanges"}
    assert stages["review"].completed.avg_seconds == 1800
    assert stages["restock"].completed.avg_seconds == stages["pickup"].completed.avg_seconds == 7200
    assert stages["confirm"].completed.p50_seconds == 3600 and stages["confirm"].open == 0
    assert stages["ship_replacement"].completed.count == 0
    after_sales = next(row for row in report.departments if row.department == "after_sales")
    assert after_sales.name.zh == "售后" and after_sales.first_response.avg_seconds == 1800
    assert after_sales.tickets == 3 and after_sales.unanswered == 2
    first_response = next(row for row in report.sla if row.kind == "first_response")
    assert (first_response.met, first_response.breached) == (1, 1)  # the urgent one waited 30 minutes
    assert first_response.compliance == 0.5
    assert report.dispatch.bounced_tickets == 1 and report.dispatch.bounce_rate == round(1 / 3, 4)
    assert (report.csat.requested, report.csat.answered, report.csat.average) == (1, 1, 4.0)
    assert report.csat.distribution == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0}
    assert {row.key: row.count for row in report.by_intent} == {
        "cancel_order": 1,
        "exchange_request": 1,
        "return_request": 1,
    }
    assert [(row.key, row.count) for row in report.by_channel] == [("voice", 3)]

    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    figures = {(row["section"], row["key"], row["metric"]): row["value"] for row in rows}
    assert figures[("stage", "exchanges/review", "handling_avg_seconds")] == "1800.0"
    assert figures[("sla", "first_response", "compliance")] == "0.5"
    assert figures[("csat", "4", "answers")] == "1"
    assert next(row for row in rows if row["key"] == "exchanges/restock")["name_zh"] == "仓库补货"


async def test_reports_are_for_supervisors_as_json_and_csv(agent: ApiClient, supervisor: ApiClient) -> None:
    await open_ticket(agent)
    assert_problem(await agent.request("GET", "/api/reports/tickets"), 403, "forbidden_role")
    assert_problem(await agent.request("GET", "/api/reports/tickets.csv"), 403, "forbidden_role")
    assert_problem(
        await supervisor.request("GET", "/api/reports/tickets?since=2026-01-01T00:00:00"),
        400,
        "validation_failed",
    )
    assert_problem(
        await supervisor.request(
            "GET", "/api/reports/tickets?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z"
        ),
        400,
        "invalid_period",
    )
    status, report, _ = await supervisor.request("GET", "/api/reports/tickets")
    assert (
        status == 200
        and report["tickets"] == 1
        and report["by_intent"] == [{"key": "return_request", "count": 1}]
    )
    status, text, headers = await supervisor.request("GET", "/api/reports/tickets.csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert "attachment" in headers["Content-Disposition"]
    assert text.lstrip("\ufeff").startswith("section,key,name_zh,name_en,metric,value\n")
    assert "intent,return_request,,,tickets,1" in text
