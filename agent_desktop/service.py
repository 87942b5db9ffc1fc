"""The desktop's services wired together, as the web process runs them."""

from __future__ import annotations

from dataclasses import dataclass

from agent_desktop.acd import Acd, AcdQueueGateway, DesktopNotifier
from agent_desktop.agents import AgentService
from agent_desktop.chat import ChatService
from agent_desktop.models import Agent, StateChange
from agent_desktop.screenpop import ScreenPopBuilder
from agent_desktop.store import AcdStore
from agent_desktop.wallboard import WallboardService
from core.audit import AuditLog
from core.auth import User, UserService
from core.db import Database
from omnichannel import Omnichannel
from tickets import TicketService


@dataclass
class Desktop:
    store: AcdStore
    agents: AgentService
    acd: Acd
    gateway: AcdQueueGateway
    users: UserService
    wallboard: WallboardService
    chat: ChatService
    audit: AuditLog

    @classmethod
    def create(
        cls,
        db: Database,
        omni: Omnichannel,
        tickets: TicketService,
        users: UserService,
        notifier: DesktopNotifier,
        *,
        tick_seconds: float = 0.25,
        history_limit: int = 20,
    ) -> Desktop:
        store = AcdStore(db)
        agents = AgentService(store, notifier)
        acd = Acd(
            store,
            agents,
            ScreenPopBuilder(omni, tickets, history_limit=history_limit),
            notifier,
            omni,
            tick_seconds=tick_seconds,
        )
        return cls(
            store,
            agents,
            acd,
            AcdQueueGateway(acd, omni),
            users,
            WallboardService(db, store),
            ChatService(store, omni),
            AuditLog(db),
        )

    async def force_state(self, supervisor: User, user_id: str, change: StateChange) -> Agent:
        """A supervisor sets an agent's state (the callers audit it)."""
        target = await self.users.get(user_id)
        await self.agents.ensure(target)
        return await self.agents.set_state(target, change)
