"""Agent states the agent chooses (available, break with a reason code, offline) and the ones the ACD sets
(wrap-up, not-ready after a missed offer). The live state is in ``agents``; every change of the derived
state, the presence or the break reason is appended to ``agent_state_history`` for reports
(``GET /api/desktop/agents/{id}/states``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from agent_desktop.models import Agent, AgentSkills, Presence, StateChange
from agent_desktop.store import AcdStore, agent_from_doc
from core.auth import User
from core.db import utcnow
from core.errors import Conflict

MISSED_OFFER = "missed_offer"


class AgentListener(Protocol):
    async def agent_changed(self, agent: Agent) -> None:
        """Called after an agent's state changed (for the wallboard)."""


OfferDropped = Callable[[str, str, str], Awaitable[None]]  # (agent id, contact id, reason)


class AgentService:
    def __init__(self, store: AcdStore, listener: AgentListener) -> None:
        self.store = store
        self.listener = listener
        self._offer_dropped: list[OfferDropped] = []

    def on_offer_dropped(self, listener: OfferDropped) -> Callable[[], None]:
        """Call ``listener`` when an agent leaves (offline, break) with an offer ringing: the contact must
        go to someone else now, not when the offer times out. Returns the unsubscribe."""
        self._offer_dropped.append(listener)
        return lambda: self._offer_dropped.remove(listener)

    async def ensure(self, user: User) -> Agent:
        return await self.store.ensure_agent(user.id, user.username, user.display_name)

    async def get(self, user: User) -> Agent:
        return await self.ensure(user)

    async def set_state(self, user: User, change: StateChange) -> Agent:
        """Available, break (with ``reason``) or offline. Going offline with a call or chats is refused.
        Leaving availability gives up the offer ringing for the agent (its contact goes to the next one)."""
        current = await self.ensure(user)
        if change.state == "offline" and (current.call or current.chats):
            raise Conflict("finish your call and chats before going offline", code="agent_busy")
        now = utcnow()
        update: dict[str, object] = {
            "presence": Presence(change.state).value,
            "reason": change.reason if change.state == "break" else None,
            "since": now,
            "wrap_up_until": None,
        }
        if change.state == "available" and current.presence is not Presence.available:
            update["idle_since"] = now
        doc = await self.store.update_agent({"_id": user.id}, {"$set": update})
        assert doc is not None
        offer = doc.get("offer")
        if change.state != "available" and offer is not None:
            # No new offer can reach them now (offers need ``available``): release the one ringing.
            released = await self.store.update_agent(
                {"_id": user.id, "offer": offer}, {"$set": {"offer": None}}
            )
            if released is not None:
                doc = released
                for listener in list(self._offer_dropped):
                    await listener(user.id, offer, f"agent_{change.state}")
        agent = agent_from_doc(doc)
        await self.listener.agent_changed(agent)
        return agent

    async def set_skills(self, user_id: str, skills: AgentSkills) -> Agent:
        agent = await self.store.set_skills(user_id, skills)
        await self.listener.agent_changed(agent)
        return agent

    async def not_ready(self, user_id: str, contact_id: str) -> Agent | None:
        """The agent let an offer ring out: no more offers until they say they are back."""
        doc = await self.store.update_agent(
            {"_id": user_id, "offer": contact_id},
            {
                "$set": {
                    "offer": None,
                    "presence": Presence.break_.value,
                    "reason": MISSED_OFFER,
                    "since": utcnow(),
                }
            },
        )
        if doc is None:
            return None
        agent = agent_from_doc(doc)
        await self.listener.agent_changed(agent)
        return agent

    async def end_wrap_ups(self) -> None:
        """Timed wrap-up is over: back to available."""
        now = utcnow()
        for doc in await self.store.agents_where(
            {"presence": Presence.wrap_up.value, "wrap_up_until": {"$lte": now}}
        ):
            updated = await self.store.update_agent(
                {
                    "_id": doc["_id"],
                    "presence": Presence.wrap_up.value,
                    "wrap_up_until": doc["wrap_up_until"],
                },
                {
                    "$set": {
                        "presence": Presence.available.value,
                        "since": now,
                        "idle_since": now,
                        "wrap_up_until": None,
                    }
                },
            )
            if updated is not None:
                await self.listener.agent_changed(agent_from_doc(updated))
