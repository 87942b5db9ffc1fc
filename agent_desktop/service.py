"""The desktop's services wired together, as the web process runs them."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from agent_desktop.acd import Acd, AcdQueueGateway, DesktopNotifier
from agent_desktop.agents import AgentService
from agent_desktop.screenpop import ScreenPopBuilder
from agent_desktop.store import AcdStore
from core.auth import UserService
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
        return cls(store, agents, acd, AcdQueueGateway(acd, omni), users)


DESKTOP = web.AppKey("desktop", Desktop)
