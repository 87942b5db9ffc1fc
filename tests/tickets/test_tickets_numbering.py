"""Ticket numbers people can read out on the phone: T-YYYYMMDD-NNNN, unique under any concurrency."""

from __future__ import annotations

import asyncio

from omnichannel import Customer
from tests.tickets.conftest import Staff
from tickets import FakeClock, NewTicket, TicketService


async def test_fifty_parallel_creations_get_fifty_consecutive_numbers(
    tickets: TicketService, customer: Customer, staff: Staff
) -> None:
    async def create(n: int) -> str:
        new = NewTicket(customer_id=customer.id, category="question", subject=f"问题 {n}")
        return (await tickets.create(new, staff.who("li"))).number

    numbers = await asyncio.gather(*(create(n) for n in range(50)))
    assert sorted(numbers) == [f"T-20261125-{seq:04d}" for seq in range(1, 51)]


async def test_numbers_follow_the_local_day(
    tickets: TicketService, customer: Customer, staff: Staff, clock: FakeClock
) -> None:
    new = NewTicket(customer_id=customer.id, category="question", subject="晚上的问题")
    clock.advance(hours=13, minutes=59)  # 23:59 in Shanghai
    assert (await tickets.create(new, staff.who("li"))).number == "T-20261125-0001"
    clock.advance(minutes=2)  # 00:01 the next day, still the 25th in UTC
    assert (await tickets.create(new, staff.who("li"))).number == "T-20261126-0001"
