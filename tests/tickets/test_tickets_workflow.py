"""Journey 6: work that crosses departments — parallel branches, joins, approvals, hand-backs — and
templates that cannot work are refused with the step that is wrong."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from core.errors import Conflict, Forbidden
from omnichannel import Customer
from tests.tickets.conftest import Staff, said
from tickets import RecordingNotifier, TicketService, TicketStatus
from tickets.config import SCHEMAS
from tickets.workflow import TemplateInvalid


def states(ticket: Any) -> dict[str, str]:
    return {step: run.state.value for step, run in ticket.workflow.steps.items()}


async def test_exchange_paid_out_of_stock_runs_warehouse_logistics_finance_in_parallel_then_joins(
    tickets: TicketService, customer: Customer, staff: Staff, notifier: RecordingNotifier
) -> None:
    outcome = await tickets.from_intent(
        said(
            customer,
            "exchange_request",
            text="换货，已经付款了，但是新的没货",
            entities={"order_number": "88"},
            facts={"paid": True, "stock": "out_of_stock"},
        )
    )
    ticket = outcome.ticket
    assert ticket is not None and ticket.workflow is not None
    review = ticket.workflow.steps["review"]
    assert review.state == "active" and review.assignee_id == ticket.assignee_id
    owner = staff.assignee(ticket)

    ticket = await tickets.complete_step(ticket.id, "review", facts={}, note="同意换货", who=owner)
    assert {step: state for step, state in states(ticket).items() if state == "active"} == {
        "restock": "active",
        "pickup": "active",
        "hold_payment": "active",
    }
    steps = ticket.workflow.steps  # type: ignore[union-attr]
    assert (steps["restock"].assignee_name, steps["pickup"].assignee_name) == ("wh", "lg")
    assert steps["hold_payment"].assignee_name in {"fi", "fi_lead"}
    timers = {timer.label: timer for timer in await tickets.sla.timers_of(ticket.id) if timer.kind == "step"}
    assert set(timers) == {"review", "restock", "pickup", "hold_payment"}
    assert timers["review"].state == "met" and timers["pickup"].state == "running"

    ticket = await tickets.complete_step(ticket.id, "restock", facts={}, note="已补货", who=staff.who("wh"))
    ticket = await tickets.complete_step(ticket.id, "pickup", facts={}, note="已取件", who=staff.who("lg"))
    assert states(ticket)["confirm"] == "waiting"
    with pytest.raises(Conflict) as early:
        await tickets.complete_step(ticket.id, "confirm", facts={}, note="", who=owner)
    assert early.value.code == "step_not_active"
    finance = staff.who(steps["hold_payment"].assignee_name or "")
    ticket = await tickets.complete_step(ticket.id, "hold_payment", facts={}, note="已冻结", who=finance)
    assert states(ticket)["confirm"] == "active"
    assert sorted(ticket.workflow.steps["confirm"].arrived_from) == ["hold_payment", "pickup", "restock"]  # type: ignore[union-attr]

    ticket = await tickets.complete_step(ticket.id, "confirm", facts={}, note="客户确认", who=owner)
    assert ticket.workflow is not None and ticket.workflow.status == "completed"
    assert states(ticket)["ship_replacement"] == "skipped" and states(ticket)["collect_payment"] == "skipped"
    assert (
        await tickets.transition(ticket.id, TicketStatus.resolved, "换货完成", owner)
    ).status == "resolved"

    hops = [n.params["step"] for n in notifier.sent if n.template == "ticket.step_started"]
    assert hops == [
        "仓库补货",
        "物流上门取件",
        "财务冻结差价",
        "售后确认完成",
    ]
    history = [e.kind for e in await tickets.history(ticket.id)]
    assert history.count("ticket.step_started") == 5 and history.count("ticket.step_completed") == 5
    assert "ticket.workflow_completed" in history


async def test_refund_goes_after_sales_then_warehouse_then_finance_approval(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    outcome = await tickets.from_intent(said(customer, "refund", entities={"order_number": "66"}))
    ticket = outcome.ticket
    assert ticket is not None
    owner = staff.assignee(ticket)
    ticket = await tickets.complete_step(ticket.id, "review", facts={"amount": 300}, note="", who=owner)
    assert [s for s, state in states(ticket).items() if state == "active"] == ["inspect"]
    ticket = await tickets.complete_step(ticket.id, "inspect", facts={}, note="货物完好", who=staff.who("wh"))
    assert [s for s, state in states(ticket).items() if state == "active"] == ["approve_refund"]

    with pytest.raises(Conflict) as wrong_kind:
        await tickets.complete_step(ticket.id, "approve_refund", facts={}, note="", who=staff.who("fi_lead"))
    assert wrong_kind.value.code == "step_is_approval"
    with pytest.raises(Forbidden) as not_lead:
        await tickets.decide_step(ticket.id, "approve_refund", approved=True, note="", who=staff.who("fi"))
    assert not_lead.value.code == "not_an_approver"

    ticket = await tickets.decide_step(
        ticket.id, "approve_refund", approved=False, note="金额不符", who=staff.who("fi_lead")
    )
    review = ticket.workflow.steps["review"]  # type: ignore[union-attr]
    assert (review.state, review.round) == ("active", 2)
    ticket = await tickets.complete_step(
        ticket.id, "review", facts={"amount": 280}, note="改为 280", who=owner
    )
    ticket = await tickets.complete_step(ticket.id, "inspect", facts={}, note="", who=staff.who("wh"))
    ticket = await tickets.decide_step(
        ticket.id, "approve_refund", approved=True, note="", who=staff.who("wang")
    )
    assert ticket.workflow is not None and ticket.workflow.status == "completed"
    assert ticket.workflow.facts == {"amount": 280}


async def test_a_step_hands_back_and_gets_the_work_again(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    outcome = await tickets.from_intent(said(customer, "refund", entities={"order_number": "67"}))
    ticket = outcome.ticket
    assert ticket is not None
    owner = staff.assignee(ticket)
    ticket = await tickets.complete_step(ticket.id, "review", facts={}, note="", who=owner)
    with pytest.raises(Conflict) as not_allowed:
        await tickets.hand_back_step(ticket.id, "inspect", to="approve_refund", note="?", who=staff.who("wh"))
    assert not_allowed.value.code == "hand_back_not_allowed"
    ticket = await tickets.hand_back_step(
        ticket.id, "inspect", to="review", note="缺少照片", who=staff.who("wh")
    )
    assert states(ticket)["inspect"] == "handed_back" and states(ticket)["review"] == "active"
    inspect_timer = next(
        t for t in await tickets.sla.timers_of(ticket.id) if t.id.endswith(":step:inspect:1")
    )
    assert inspect_timer.state == "paused"
    ticket = await tickets.complete_step(ticket.id, "review", facts={}, note="照片已补", who=owner)
    assert states(ticket)["inspect"] == "active" and states(ticket)["approve_refund"] == "pending"
    kinds = [e.kind for e in await tickets.history(ticket.id)]
    assert kinds[-2:] == ["ticket.step_completed", "ticket.step_resumed"]


def shipped(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((SCHEMAS / "workflows" / f"{name}.yaml").read_text())
    return data


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda t: t["steps"]["confirm"].update(next=[{"to": "review"}]),
            "step 'review': cycle: review → restock → confirm → review",
        ),
        (
            lambda t: t["steps"]["pickup"].update(department="marketing"),
            "step 'pickup': unknown department 'marketing' (known: after_sales, customer_service, finance, "
            "logistics, quality, technical, warehouse)",
        ),
        (
            lambda t: t["steps"].update(
                audit={"title": {"zh": "审计", "en": "Audit"}, "department": "finance"}
            ),
            "step 'audit': unreachable from the start step 'review'",
        ),
        (
            lambda t: t["steps"]["restock"].update(next=[{"to": "confrim"}]),
            "step 'restock': next branch 1 goes to unknown step 'confrim'",
        ),
        (
            lambda t: t["steps"]["review"]["next"][0].update(when={"paid": True, "color": "red"}),
            "step 'review': next branch 1 tests undeclared fact 'color' (declared: paid, stock)",
        ),
        (
            lambda t: t["steps"]["pickup"].update(kind="approval"),
            "step 'pickup': an approval step needs an approver (department_lead or supervisor)",
        ),
        (
            lambda t: t["steps"]["pickup"].update(sla="soon"),
            "step 'pickup': sla: Value error, not a duration: 'soon'",
        ),
    ],
)
def test_invalid_templates_are_refused_naming_the_step(
    tickets: TicketService, change: Any, problem: str
) -> None:
    template = copy.deepcopy(shipped("exchanges"))
    change(template)
    with pytest.raises(TemplateInvalid) as refused:
        tickets.check_template(template)
    assert refused.value.code == "invalid_template"
    assert problem in refused.value.detail, refused.value.detail


def test_a_join_needs_more_than_one_way_in(tickets: TicketService) -> None:
    template = shipped("refunds")
    template["steps"]["inspect"]["join"] = True
    with pytest.raises(TemplateInvalid) as refused:
        tickets.check_template(template)
    assert [p.model_dump() for p in refused.value.problems] == [
        {"step": "inspect", "message": "is a join but only review leads to it"}
    ]


def test_the_shipped_templates_are_valid(tickets: TicketService) -> None:
    for name in ("returns", "exchanges", "refunds", "repairs", "complaints"):
        assert tickets.check_template(shipped(name)).name == name
