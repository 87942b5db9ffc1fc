"""The omnichannel services bundled for the web process and for other packages."""

from __future__ import annotations

from dataclasses import dataclass

from core.bus import EventBus
from core.db import Database
from omnichannel.conversations import ConversationService
from omnichannel.customers import CustomerService
from omnichannel.timeline import TimelineService


@dataclass(frozen=True)
class Omnichannel:
    customers: CustomerService
    conversations: ConversationService
    timeline: TimelineService

    @classmethod
    def create(cls, db: Database, bus: EventBus | None, *, default_region: str = "CN") -> Omnichannel:
        customers = CustomerService(db, bus, default_region=default_region)
        timeline = TimelineService(db, customers, bus)
        return cls(customers, ConversationService(db, customers, timeline.conversation_exists), timeline)
