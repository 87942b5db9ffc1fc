"""Tickets: made from what customers say on any channel, dispatched, carried across departments by
workflows, kept on time by SLA timers — every change on the customer's timeline.

service = create_service(db, omni, settings)        # or TicketService(store, omni, config, clock=…, …)
outcome = await service.from_intent(IntentSignal(customer_id=…, intent="return_request", confidence=0.9,
                                                 entities={"order_number": "12345"}, channel=Channel.voice))
outcome.action  # "created" | "appended" | "needs_input" (outcome.prompt says what to ask) | "ignored"

# Every inbound customer message, before the channel's own handling: a CSAT rating, a reopen, a resume.
reply = await service.on_customer_message(CustomerMessage(customer_id=…, channel=Channel.sms,
                                                          conversation_id=…, text="5 很满意", message_key=…))
reply.action  # "csat_recorded" (stop here) | "reopened" | "resumed" | "none"; reply.notified: sent already
"""

from tickets.clock import Clock, FakeClock, SystemClock
from tickets.config import TicketsConfig, TicketsConfigError, load_config
from tickets.models import (
    CustomerMessage,
    CustomerMessageOutcome,
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
from tickets.progress import ProgressLinks
from tickets.scheduler import InMemoryScheduler, Scheduler
from tickets.service import SYSTEM, TicketService, Who, create_service
from tickets.store import TicketStore
from tickets.webhooks import Webhooks

__all__ = [
    "SYSTEM",
    "Clock",
    "CustomerMessage",
    "CustomerMessageOutcome",
    "FakeClock",
    "InMemoryScheduler",
    "IntentOutcome",
    "IntentSignal",
    "NewTicket",
    "Notification",
    "Notifier",
    "Priority",
    "ProgressLinks",
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
    "Webhooks",
    "Who",
    "create_service",
    "load_config",
]
