"""Fixtures for the ticket tests: the ticket service on the real embedded MongoDB with a clock that only
moves when a test moves it, a notifier that records, and a scheduler that runs the requested SLA checks
when the test says time has come. A small organisation of staff, and a customer who calls in."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

import pytest
from bson import ObjectId

from core.auth import Role, User
from core.db import Database
from omnichannel import Channel, Customer, Identity, IdentityKind, NewConversation, Omnichannel
from tickets import (
    SYSTEM,
    FakeClock,
    InMemoryScheduler,
    IntentSignal,
    RecordingNotifier,
    Ticket,
    TicketsConfig,
    TicketService,
    TicketStore,
    Who,
    load_config,
)
from tickets.models import StaffInput, TicketQuery
from tickets.progress import ProgressLinks
from tickets.webhooks import InMemoryDeliveryQueue, Webhooks

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
PROGRESS_SECRET = "test-secret-key-not-for-production"
PROGRESS_BASE = "http://progress.test"
# Wednesday 2026-11-25, 10:00 in Shanghai: inside office hours.
START = dt.datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture(scope="session")
def config() -> TicketsConfig:
    return load_config()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


@pytest.fixture
def scheduler() -> InMemoryScheduler:
    return InMemoryScheduler()


@pytest.fixture
def deliveries() -> InMemoryDeliveryQueue:
    return InMemoryDeliveryQueue()


@pytest.fixture
async def omni(db: Database) -> Omnichannel:
    return Omnichannel.create(db, None)


@pytest.fixture
async def tickets(
    db: Database,
    omni: Omnichannel,
    config: TicketsConfig,
    clock: FakeClock,
    notifier: RecordingNotifier,
    scheduler: InMemoryScheduler,
    deliveries: InMemoryDeliveryQueue,
) -> TicketService:
    service = TicketService(
        TicketStore(db),
        omni,
        config,
        clock=clock,
        notifier=notifier,
        scheduler=scheduler,
        progress=ProgressLinks(PROGRESS_SECRET, PROGRESS_BASE),
        webhooks=Webhooks(db, clock=clock, queue=deliveries),
    )
    scheduler.bind(service.sla.check)
    return service


def user(username: str, role: Role = Role.agent, name: str | None = None) -> User:
    return User(
        id=str(ObjectId()),
        username=username,
        display_name=name or username,
        role=role,
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )


@dataclass
class Staff:
    """The organisation the tests work in: users by username, as ``Who`` when they act."""

    users: dict[str, User]

    def __getitem__(self, username: str) -> User:
        return self.users[username]

    def who(self, username: str) -> Who:
        return Who.staff(self.users[username])

    def id(self, username: str) -> str:
        return self.users[username].id

    def assignee(self, ticket: Ticket) -> Who:
        """The person the ticket went to, acting."""
        [found] = [user for user in self.users.values() if user.id == ticket.assignee_id]
        return Who.staff(found)


ORGANISATION: dict[str, tuple[Role, dict[str, Any]]] = {
    "li": (Role.agent, {"departments": ["after_sales"], "skills": ["after_sales"], "languages": ["zh"]}),
    "alex": (Role.agent, {"departments": ["after_sales"], "skills": ["after_sales"], "languages": ["en"]}),
    "zhao": (
        Role.agent,
        {
            "departments": ["after_sales"],
            "skills": ["after_sales"],
            "languages": ["zh"],
            "lead_of": ["after_sales"],
            "phone": "13900000001",
            "max_open": 1,
        },
    ),
    "wh": (Role.agent, {"departments": ["warehouse"]}),
    "lg": (Role.agent, {"departments": ["logistics"]}),
    "fi": (Role.agent, {"departments": ["finance"]}),
    "fi_lead": (Role.agent, {"departments": ["finance"], "lead_of": ["finance"], "phone": "13900000002"}),
    "cs1": (Role.agent, {"departments": ["customer_service"], "skills": ["complaints"]}),
    "wang": (Role.supervisor, {"supervisor_of": ["*"], "phone": "13900000009", "languages": ["zh", "en"]}),
}


async def hire(service: TicketService) -> Staff:
    """Give ``ORGANISATION`` its staff profiles."""
    users = {}
    for username, (role, profile) in ORGANISATION.items():
        users[username] = user(username, role)
        await service.put_staff(users[username], StaffInput(**profile))
    return Staff(users)


@pytest.fixture
async def staff(tickets: TicketService) -> Staff:
    return await hire(tickets)


@pytest.fixture
async def customer(omni: Omnichannel) -> Customer:
    found, _ = await omni.customers.resolve(
        [Identity(kind=IdentityKind.phone, value="13800138000")], name="李娜", language="zh"
    )
    return found


@pytest.fixture
async def call(omni: Omnichannel, customer: Customer) -> str:
    """The id of the customer's phone call."""
    conversation, _ = await omni.conversations.open(
        customer.id, NewConversation(channel=Channel.voice, external_ref="call-1")
    )
    return conversation.id


def said(customer: Customer, intent: str, **fields: Any) -> IntentSignal:
    """What the NLU heard a customer say, adapted to the ticket engine's input."""
    values: dict[str, Any] = {"confidence": 0.9, "channel": Channel.voice, "language": "zh"}
    values.update(fields)
    return IntentSignal(customer_id=customer.id, intent=intent, **values)


async def all_tickets(service: TicketService) -> list[Ticket]:
    return (await service.search(TicketQuery(limit=200), SYSTEM)).tickets


async def advance(clock: FakeClock, scheduler: InMemoryScheduler, **units: float) -> None:
    """Let time pass and run the SLA checks that fall due meanwhile."""
    clock.advance(**units)
    await scheduler.run_due(clock.now())
