"""Tickets: made from what customers say on any channel, dispatched, carried across departments by
workflows, kept on time by SLA timers — every change on the customer's timeline.

service = create_service(db, omni, settings)        # or TicketService(store, omni, config, clock=…, …)
outcome = await service.from_intent(IntentSignal(customer_id=…, intent="return_request", confidence=0.9,
                                                 entities={"order_number": "12345"}, channel=Channel.voice))
outcome.action  # "created" | "appended" | "needs_input" (outcome.prompt says what to ask) | "ignored"
"""

from tickets.clock import Clock, FakeClock, SystemClock
from tickets.config import TicketsConfig, TicketsConfigError, load_config
from tickets.models import (
    IntentOutcome,
    IntentSignal,
    NewTicket,
    Notification,
    Priority,
    Reason,
    Ticket,
    TicketStatus,
)
from tickets.notify import Notifier, RecordingNotifier, TimelineNotifier
from tickets.scheduler import InMemoryScheduler, Scheduler
from tickets.service import SYSTEM, TICKETS, TicketService, Who, create_service
from tickets.store import TicketStore

__all__ = [
    "SYSTEM",
    "TICKETS",
    "Clock",
    "FakeClock",
    "InMemoryScheduler",
    "IntentOutcome",
    "IntentSignal",
    "NewTicket",
    "Notification",
    "Notifier",
    "Priority",
    "Reason",
    "RecordingNotifier",
    "Scheduler",
    "SystemClock",
    "Ticket",
    "TicketService",
    "TicketStatus",
    "TicketStore",
    "TicketsConfig",
    "TicketsConfigError",
    "TimelineNotifier",
    "Who",
    "create_service",
    "load_config",
]
