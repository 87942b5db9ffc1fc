"""Customers and the unified timeline — the public surface every channel uses.

omni = Omnichannel.create(db, bus)
customer, created = await omni.customers.resolve([Identity(kind=IdentityKind.phone, value="13800138000")])
await omni.timeline.append(customer.id, NewEvent(kind="call.started", channel=Channel.voice,
                           idempotency_key=f"call:{call_id}:started"), Actor(type="system"))
"""

from omnichannel.identity import normalize, normalize_email, normalize_phone
from omnichannel.models import (
    Actor,
    Channel,
    Conversation,
    Customer,
    Identity,
    IdentityKind,
    NewConversation,
    NewEvent,
    TimelineEvent,
    TimelinePage,
)
from omnichannel.service import Omnichannel

__all__ = [
    "Actor",
    "Channel",
    "Conversation",
    "Customer",
    "Identity",
    "IdentityKind",
    "NewConversation",
    "NewEvent",
    "Omnichannel",
    "TimelineEvent",
    "TimelinePage",
    "normalize",
    "normalize_email",
    "normalize_phone",
]
