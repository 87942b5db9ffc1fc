"""Agent desktop: the ACD (queues, skills, strategies, agent states, atomic offers in MongoDB), Socket.IO
``/agent`` and ``/supervisor`` with the screen-pop, REST for states, offers, wrap-up, queues and wallboard.

desktop = Desktop.create(db, omni, tickets, users, sockets)   # sockets: DesktopSockets (the notifier)
await desktop.acd.start()                                     # routing loop (every web node runs one)
await desktop.gateway.enqueue(queue_request)                  # the IVR's ivr_flows.QueueGateway
"""

from agent_desktop.acd import Acd, AcdQueueGateway, DesktopNotifier, RecordingNotifier
from agent_desktop.models import (
    Agent,
    AgentSkills,
    AgentState,
    Contact,
    ContactKind,
    ContactStatus,
    NewContact,
    Overflow,
    QueueConfig,
    ScreenPop,
    StateChange,
    Strategy,
    Wallboard,
    WrapUp,
)
from agent_desktop.service import DESKTOP, Desktop
from agent_desktop.socket import AGENT_NS, SUPERVISOR_NS, DesktopSockets

__all__ = [
    "AGENT_NS",
    "DESKTOP",
    "SUPERVISOR_NS",
    "Acd",
    "AcdQueueGateway",
    "Agent",
    "AgentSkills",
    "AgentState",
    "Contact",
    "ContactKind",
    "ContactStatus",
    "Desktop",
    "DesktopNotifier",
    "DesktopSockets",
    "NewContact",
    "Overflow",
    "QueueConfig",
    "RecordingNotifier",
    "ScreenPop",
    "StateChange",
    "Strategy",
    "Wallboard",
    "WrapUp",
]
