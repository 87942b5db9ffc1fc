"""Dispatch: the right person by skill, language, shift and load, in turn within a group, and every
decision says why; hand-backs and reassignments are counted."""

from __future__ import annotations

import pytest

from core.errors import Forbidden
from omnichannel import Customer
from tests.tickets.conftest import Staff, said, user
from tickets import FakeClock, NewTicket, TicketService
from tickets.models import StaffInput


async def test_dispatch_explains_itself(
    tickets: TicketService, customer: Customer, staff: Staff, clock: FakeClock
) -> None:
    night = user("night_owl")
    await tickets.put_staff(
        night,
        StaffInput(
            departments=["after_sales"],
            skills=["after_sales"],
            shifts=[{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "22:00", "end": "06:00"}],
        ),
    )
    novice = user("novice")
    await tickets.put_staff(novice, StaffInput(departments=["after_sales"]))
    # zhao (max_open 1) already holds one ticket.
    await tickets.assign(
        (
            await tickets.create(
                NewTicket(customer_id=customer.id, category="q", subject="x"), staff.who("li")
            )
        ).id,
        assignee_id=staff.id("zhao"),
        department=None,
        reason="for the test",
        who=staff.who("wang"),
    )
    ticket = (
        await tickets.from_intent(said(customer, "exchange_request", entities={"order_number": "9"}))
    ).ticket
    assert ticket is not None and ticket.dispatch is not None
    decision = ticket.dispatch
    assert (decision.rule, decision.department, decision.assignee_id) == (
        "after-sales",
        "after_sales",
        staff.id("li"),
    )
    assert decision.eligible == ["li"]
    assert {item.username: item.why for item in decision.excluded} == {
        "alex": "does not speak zh",
        "night_owl": "off shift",
        "novice": "lacks skill after_sales",
        "zhao": "at capacity (1/1 open)",
    }
    assert decision.summary.startswith(
        "rule 'after-sales' → after_sales; li — least loaded (0 open) among 1 eligible"
    )
    assigned = [e for e in await tickets.history(ticket.id) if e.kind == "ticket.assigned"]
    assert assigned[0].body["summary"] == decision.summary

    clock.advance(hours=13)  # 23:00: the night shift is on, li is still on (no shifts: always)
    english = (
        await tickets.from_intent(
            said(customer, "refund", language="en", entities={"order_number": "10"}, text="refund please")
        )
    ).ticket
    assert english is not None and english.assignee_name == "alex"


async def test_round_robin_within_a_group(tickets: TicketService, customer: Customer, staff: Staff) -> None:
    for name in ("cs2", "cs3"):
        await tickets.put_staff(user(name), StaffInput(departments=["customer_service"]))
    picks = []
    for n in range(6):
        new = NewTicket(customer_id=customer.id, category="question", subject=f"问题 {n}")
        ticket = await tickets.create(new, staff.who("cs1"))
        assert ticket.dispatch is not None and ticket.dispatch.strategy == "round_robin"
        picks.append(ticket.assignee_name)
    assert picks[:3] == picks[3:] and sorted(picks[:3]) == ["cs1", "cs2", "cs3"]


async def test_bounces_and_reassignments_are_counted(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    ticket = (
        await tickets.from_intent(said(customer, "return_request", entities={"order_number": "1"}))
    ).ticket
    assert ticket is not None and ticket.assignee_name in {"li", "zhao"}
    first = ticket.assignee_name
    with pytest.raises(Forbidden):
        await tickets.bounce(ticket.id, "not mine", staff.who("alex"))
    bounced = await tickets.bounce(ticket.id, "this is a warranty repair", staff.who(first))
    assert bounced.bounce_count == 1 and bounced.assignee_name not in {first, None}
    assert first in {item.username for item in bounced.dispatch.excluded}  # type: ignore[union-attr]
    moved = await tickets.assign(
        ticket.id,
        assignee_id=staff.id("alex"),
        department=None,
        reason="speaks English",
        who=staff.who("wang"),
    )
    assert (moved.reassign_count, moved.bounce_count, moved.assignee_name) == (1, 1, "alex")
    assert moved.dispatch is not None and moved.dispatch.summary == "assigned to alex by wang: speaks English"
    with pytest.raises(Forbidden):
        await tickets.assign(
            ticket.id, assignee_id=staff.id("li"), department=None, reason="", who=staff.who("li")
        )
    kinds = [e.kind for e in await tickets.history(ticket.id)]
    assert kinds.count("ticket.bounced") == 1 and kinds.count("ticket.assigned") == 3
