"""Agent desktop: the ACD (queues, skills, strategies, agent states, atomic offers in MongoDB), Socket.IO
``/agent`` and ``/supervisor`` with the screen-pop, REST for states, offers, wrap-up, queues and wallboard,
agent chat replies (``message.sent`` on the conversation, see ``chat.py``), the wallboard's metrics and alerts
(``wallboard.py``, reading ``bot_outcomes``), and the pages ``/desktop`` and ``/wallboard`` (core/web).

desktop = Desktop.create(db, omni, tickets, users, sockets)   # sockets: agent_desktop.socket.DesktopSockets
await desktop.acd.start()                                     # routing loop (every web node runs one)
await desktop.gateway.enqueue(queue_request)                  # the IVR's ivr_flows.QueueGateway

The Socket.IO side (``agent_desktop.socket``) is imported by the web process alone: telephony workers and the
Celery worker, which enqueue calls and route contacts, do not load python-socketio.
"""

from agent_desktop.acd import Acd, AcdQueueGateway, DesktopNotifier, RecordingNotifier
from agent_desktop.chat import REPLY_KIND, ChatService
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
    WallboardConfig,
    WrapUp,
)
from agent_desktop.service import Desktop
from agent_desktop.wallboard import WallboardService

__all__ = [
    "REPLY_KIND",
    "Acd",
    "AcdQueueGateway",
    "Agent",
    "AgentSkills",
    "AgentState",
    "ChatService",
    "Contact",
    "ContactKind",
    "ContactStatus",
    "Desktop",
    "DesktopNotifier",
    "NewContact",
    "Overflow",
    "QueueConfig",
    "RecordingNotifier",
    "ScreenPop",
    "StateChange",
    "Strategy",
    "Wallboard",
    "WallboardConfig",
    "WallboardService",
    "WrapUp",
]
