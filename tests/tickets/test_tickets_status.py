"""The status machine: only the allowed moves, each one on the record."""

from __future__ import annotations

import pytest

from core.errors import Conflict, Forbidden
from omnichannel import Customer
from tests.tickets.conftest import Staff, said
from tickets import NewTicket, TicketService, TicketStatus


async def test_a_ticket_goes_through_its_life_and_every_step_is_recorded(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    ticket = (await tickets.from_intent(said(customer, "invoice", text="开发票"))).ticket
    assert ticket is not None and ticket.status == "new"
    fi = staff.assignee(ticket)
    for status in ("open", "pending-customer", "open", "pending-internal", "resolved", "closed", "reopened"):
        ticket = await tickets.transition(ticket.id, TicketStatus(status), f"→ {status}", fi)
        assert ticket.status == status
    changes = [e.body for e in await tickets.history(ticket.id) if e.kind == "ticket.status_changed"]
    assert [(c["from"], c["to"]) for c in changes] == [
        ("new", "open"),
        ("open", "pending-customer"),
        ("pending-customer", "open"),
        ("open", "pending-internal"),
        ("pending-internal", "resolved"),
        ("resolved", "closed"),
        ("closed", "reopened"),
    ]
    assert ticket.closed_at is None and ticket.resolved_at is None


async def test_a_move_the_status_machine_does_not_allow_is_a_conflict(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    ticket = (await tickets.from_intent(said(customer, "invoice"))).ticket
    assert ticket is not None
    fi = staff.assignee(ticket)
    await tickets.transition(ticket.id, TicketStatus.resolved, "done", fi)
    with pytest.raises(Conflict) as refused:
        await tickets.transition(ticket.id, TicketStatus.pending_customer, "", fi)
    assert refused.value.code == "invalid_transition"
    assert refused.value.extra == {"current": "resolved", "allowed": ["closed", "reopened"]}
    assert "a resolved ticket cannot become pending-customer" in refused.value.detail
    assert (await tickets.get(ticket.id)).version == ticket.version + 1


async def test_a_ticket_cannot_be_resolved_while_its_workflow_runs(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    ticket = (await tickets.from_intent(said(customer, "refund", entities={"order_number": "55"}))).ticket
    assert ticket is not None
    with pytest.raises(Conflict) as refused:
        await tickets.transition(ticket.id, TicketStatus.resolved, "", staff.who("wang"))
    assert refused.value.code == "workflow_incomplete" and refused.value.extra["open_steps"] == ["review"]


async def test_agents_work_their_own_tickets_supervisors_any(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    new = NewTicket(customer_id=customer.id, category="invoice", subject="发票抬头")
    ticket = await tickets.create(new, staff.who("fi"))
    assert ticket.assignee_id in {staff.id("fi"), staff.id("fi_lead")}
    outsider = staff.who("lg")
    with pytest.raises(Forbidden) as refused:
        await tickets.transition(ticket.id, TicketStatus.open, "", outsider)
    assert refused.value.code == "not_your_ticket"
    await tickets.watch(ticket.id, staff.id("lg"), True, outsider)
    assert (await tickets.transition(ticket.id, TicketStatus.open, "", outsider)).status == "open"
    assert (
        await tickets.transition(ticket.id, TicketStatus.resolved, "", staff.who("wang"))
    ).status == "resolved"
