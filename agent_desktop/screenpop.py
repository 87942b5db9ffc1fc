"""The screen-pop: one payload with everything an agent needs when an offer arrives, read concurrently
from the customer, the unified timeline and the tickets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agent_desktop.models import Contact, ScreenPop
from omnichannel import Customer, Omnichannel, TimelineEvent
from tickets import SYSTEM, Ticket, TicketService
from tickets.models import TicketQuery

OPEN_STATUSES = "new,open,pending-customer,pending-internal,reopened"
TRANSCRIPT_KIND = "transcript.final"
BOT_SUMMARY_KIND = "bot.summary"
IVR_FIELDS = ("flow", "version", "language", "called", "path", "variables", "intents", "ticket")


@dataclass(frozen=True)
class PopParts:
    customer: Customer
    history: list[TimelineEvent]
    open_tickets: list[Ticket]
    transcript: list[TimelineEvent]
    bot_summary: str | None


class ScreenPopBuilder:
    """``history`` is the customer's latest ``history_limit`` events, plus the latest ``message_limit``
    messages the customer wrote, on any channel: a call's own steps, or a chat's bot answers and notices,
    must not push yesterday's WeChat or SMS out of view."""

    def __init__(
        self, omni: Omnichannel, tickets: TicketService, *, history_limit: int = 20, message_limit: int = 10
    ) -> None:
        self.omni = omni
        self.tickets = tickets
        self.history_limit = history_limit
        self.message_limit = message_limit

    async def build(self, contact: Contact, decided_at: float) -> ScreenPop:
        return self.assemble(await self.gather(contact), contact, decided_at)

    async def gather(self, contact: Contact) -> PopParts:
        """What the pop shows of the customer: it does not depend on which agent gets the offer, so the ACD
        reads it while it picks the agent."""
        customer, latest, messages, open_tickets, transcript, summary = await asyncio.gather(
            self.omni.customers.get(contact.customer_id),
            self.omni.timeline.page(contact.customer_id, limit=self.history_limit),
            self.omni.timeline.page(contact.customer_id, limit=self.message_limit, kinds=["message.in"]),
            self._open_tickets(contact.customer_id),
            self._transcript(contact),
            self._bot_summary(contact),
        )
        seen = {event.id for event in latest.events}
        history = latest.events + [event for event in messages.events if event.id not in seen]
        history.sort(key=lambda event: event.ts, reverse=True)
        return PopParts(customer, history, open_tickets, transcript, summary)

    @staticmethod
    def assemble(parts: PopParts, contact: Contact, decided_at: float) -> ScreenPop:
        """The pop for ``contact`` as it is once offered (its offer expiry, who it is offered to)."""
        return ScreenPop(
            contact=contact,
            customer=parts.customer,
            history=parts.history,
            open_tickets=parts.open_tickets,
            ivr={key: contact.context[key] for key in IVR_FIELDS if key in contact.context},
            transcript=parts.transcript,
            bot_summary=parts.bot_summary,
            offer_expires_at=contact.offer_expires_at,
            decided_at=decided_at,
        )

    async def _open_tickets(self, customer_id: str) -> list[Ticket]:
        page = await self.tickets.search(
            TicketQuery(customer_id=customer_id, status=OPEN_STATUSES, limit=20), SYSTEM
        )
        return page.tickets

    async def _transcript(self, contact: Contact) -> list[TimelineEvent]:
        if contact.conversation_id is None:
            return []
        page = await self.omni.timeline.page(
            contact.customer_id, limit=200, kinds=[TRANSCRIPT_KIND], conversation_id=contact.conversation_id
        )
        return list(reversed(page.events))

    async def _bot_summary(self, contact: Contact) -> str | None:
        page = await self.omni.timeline.page(
            contact.customer_id,
            limit=1,
            kinds=[BOT_SUMMARY_KIND],
            conversation_id=contact.conversation_id,
        )
        if not page.events:
            return None
        body = page.events[0].body
        summary = body.get("summary") or body.get("text")
        return str(summary) if summary else None
