"""The supervisor's wallboard: per-queue waiting, longest wait, service level, ASA and abandon rate over a
window; agents by state and chats per agent; the bot's deflection rate from ``bot_outcomes``; alert rules.

The metrics are pure functions of plain data (``queue_board``, ``bot_deflection``, ``alert_conditions``) so
they are unit-tested without a database; ``WallboardService`` reads MongoDB and keeps ``alerts``.

Alerts are stored once per episode: a raised alert carries ``key`` = ``rule:subject`` under a unique sparse
index, so two web nodes evaluating the same condition store it once, and nothing new is stored while the
condition holds. When it clears, ``key`` is removed (the document stays as history) and the next breach is a
new alert.

Contract of ``bot_outcomes`` (written by the bot, one document per finished bot conversation):
``{conversation_id, customer_id, intent, outcome: "resolved" | "handed_off", channel, at: datetime}``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from agent_desktop.models import (
    OUTBOUND_QUEUE_ID,
    Agent,
    AgentLoad,
    AgentState,
    Alert,
    AlertRule,
    BotDeflection,
    Contact,
    ContactStatus,
    IntentDeflection,
    QueueBoard,
    QueueConfig,
    Wallboard,
    WallboardConfig,
    WallboardConfigPatch,
)
from agent_desktop.store import AcdStore, contact_from_doc
from core.db import Database, as_utc, register_indexes, utcnow
from ivr_flows.models import HoursOverride
from ivr_flows.store import FlowStore

Doc = dict[str, Any]

register_indexes(
    "alerts",
    IndexModel([("key", ASCENDING)], unique=True, sparse=True),
    IndexModel([("raised_at", DESCENDING)]),
)
register_indexes("bot_outcomes", IndexModel([("at", ASCENDING)]))
register_indexes("queue_contacts", IndexModel([("enqueued_at", ASCENDING)]))

CONFIG_ID = "wallboard"
# What the metrics read of a contact: not its IVR context, which can be large.
_METRIC_FIELDS = {
    field: 1
    for field in (
        "queue",
        "kind",
        "status",
        "customer_id",
        "priority",
        "enqueued_at",
        "queue_entered_at",
        "connected_at",
        "ended_at",
    )
}
_WAITING = (ContactStatus.waiting, ContactStatus.routing)
_LIVE = (*_WAITING, ContactStatus.offered, ContactStatus.connected)
WINDOW_REREAD_SECONDS = 60.0
CHANGE_SKEW = dt.timedelta(seconds=2)
_NOT_ANSWERED = (ContactStatus.withdrawn, ContactStatus.overflowed)


def queue_board(
    queue: QueueConfig, contacts: list[Contact], now: dt.datetime, config: WallboardConfig
) -> QueueBoard:
    """One queue's figures from its contacts (live ones plus those that entered within the window).

    Answered = connected within the window; abandoned = withdrawn (the caller hung up, the chat left) or
    overflowed before anyone answered. SL = answered within ``sl_threshold_seconds`` / (answered +
    abandoned); ASA = mean time from entering the queue to the answer."""
    since = now - dt.timedelta(seconds=config.window_seconds)
    mine = [contact for contact in contacts if contact.queue == queue.id]
    waiting = [contact for contact in mine if contact.status in _WAITING]
    answered = [
        contact for contact in mine if contact.connected_at is not None and contact.connected_at >= since
    ]
    abandoned = [
        contact
        for contact in mine
        if contact.status in _NOT_ANSWERED
        and contact.connected_at is None
        and (contact.ended_at or contact.enqueued_at) >= since
    ]
    waits = [
        (contact.connected_at - contact.queue_entered_at).total_seconds()
        for contact in answered
        if contact.connected_at is not None
    ]
    handled = len(answered) + len(abandoned)
    within = sum(1 for wait in waits if wait <= config.sl_threshold_seconds)
    if queue.id == OUTBOUND_QUEUE_ID:  # calls agents dialed: answered at once by definition
        handled, waits = 0, []
    return QueueBoard(
        queue=queue.id,
        name=queue.name or queue.id,
        waiting=len(waiting),
        offered=sum(1 for contact in mine if contact.status is ContactStatus.offered),
        connected=sum(1 for contact in mine if contact.status is ContactStatus.connected),
        longest_wait_seconds=max(
            ((now - contact.queue_entered_at).total_seconds() for contact in waiting), default=0.0
        ),
        answered=len(answered),
        abandoned=len(abandoned),
        service_level=within / handled if handled else None,
        asa_seconds=sum(waits) / len(waits) if waits else None,
        abandon_rate=len(abandoned) / handled if handled else None,
    )


def _tally(outcomes: list[str]) -> dict[str, Any]:
    resolved = outcomes.count("resolved")
    handed_off = outcomes.count("handed_off")
    abandoned = outcomes.count("abandoned")
    total = resolved + handed_off + abandoned
    return {
        "resolved": resolved,
        "handed_off": handed_off,
        "abandoned": abandoned,
        "rate": resolved / total if total else None,
    }


def bot_deflection(
    outcomes: list[str],
    intents: list[str] | None = None,
    labels: Callable[[str], dict[str, str]] = lambda intent: {"zh": intent, "en": intent},
) -> BotDeflection:
    """The share of finished bot conversations the bot resolved without an agent; a visitor who left
    without a useful answer (``abandoned``) counts against it, not for it. With ``intents`` (one per
    outcome), the same per intent, most conversations first."""
    by_intent: dict[str, list[str]] = {}
    for intent, outcome in zip(intents or [], outcomes, strict=False):
        by_intent.setdefault(intent, []).append(outcome)
    ranked = sorted(by_intent.items(), key=lambda item: (-len(item[1]), item[0]))
    return BotDeflection(
        **_tally(outcomes),
        by_intent=[
            IntentDeflection(intent=intent, label=labels(intent), **_tally(found)) for intent, found in ranked
        ],
    )


@functools.cache
def _intent_labels() -> dict[str, dict[str, str]]:
    from asr.nlu import load_config  # the NLU's catalogue (YAML); the web process has it loaded anyway

    return {name: {"zh": i.label.zh, "en": i.label.en} for name, i in load_config().intents.items()}


def intent_label(intent: str) -> dict[str, str]:
    """An intent's display name in both languages (the intent's own name when the NLU does not know it)."""
    return _intent_labels().get(intent, {"zh": intent, "en": intent})


def agent_loads(agents: list[Agent]) -> list[AgentLoad]:
    return [
        AgentLoad(
            user_id=agent.user_id,
            username=agent.username,
            display_name=agent.display_name,
            state=agent.state,
            chats=len(agent.chats),
            max_chats=agent.max_chats,
        )
        for agent in agents
        if agent.state is not AgentState.offline or agent.chats
    ]


@dataclass(frozen=True)
class Condition:
    """An alert rule that holds right now."""

    rule: AlertRule
    subject: str
    value: float
    threshold: float

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.subject}"


def alert_conditions(
    queues: list[QueueBoard], bot: BotDeflection, config: WallboardConfig
) -> list[Condition]:
    """The rules that hold: a queue waiting longer than ``max_wait_seconds``, a queue's service level
    below ``sl_target``, the bot resolving less than ``bot_resolution_min``."""
    held: list[Condition] = []
    for board in queues:
        if board.longest_wait_seconds > config.max_wait_seconds:
            held.append(
                Condition("queue_wait", board.queue, board.longest_wait_seconds, config.max_wait_seconds)
            )
        if board.service_level is not None and board.service_level < config.sl_target:
            held.append(Condition("service_level", board.queue, board.service_level, config.sl_target))
    if bot.rate is not None and bot.rate < config.bot_resolution_min:
        held.append(Condition("bot_resolution", "bot", bot.rate, config.bot_resolution_min))
    return held


def alert_from_doc(doc: Doc) -> Alert:
    return Alert(
        id=str(doc["_id"]),
        rule=doc["rule"],
        subject=doc["subject"],
        value=doc["value"],
        threshold=doc["threshold"],
        active=doc.get("key") is not None,
        raised_at=as_utc(doc["raised_at"]),
        cleared_at=as_utc(doc["cleared_at"]) if doc.get("cleared_at") else None,
    )


@dataclass(frozen=True)
class AlertChanges:
    raised: list[Alert]
    cleared: list[Alert]


class WallboardService:
    def __init__(self, db: Database, store: AcdStore) -> None:
        self.store = store
        self.settings = db["desktop_settings"]
        self.outcomes = db["bot_outcomes"]
        self.alerts = db["alerts"]
        self.flows = FlowStore(db)
        self._window: dict[str, Contact] | None = None  # the contacts the queue boards count, by id
        self._window_read_at = utcnow()
        self._changes_read_at: dt.datetime | None = None

    async def config(self) -> WallboardConfig:
        doc = await self.settings.find_one({"_id": CONFIG_ID})
        data = {key: value for key, value in (doc or {}).items() if key != "_id"}
        return WallboardConfig.model_validate(data)

    async def update_config(self, patch: WallboardConfigPatch) -> WallboardConfig:
        changes = patch.model_dump(exclude_unset=True, exclude_none=True)
        merged = WallboardConfig.model_validate({**(await self.config()).model_dump(), **changes})
        await self.settings.update_one({"_id": CONFIG_ID}, {"$set": merged.model_dump()}, upsert=True)
        return merged

    async def queue_boards(self, config: WallboardConfig) -> list[QueueBoard]:
        now = utcnow()
        contacts = await self._contacts(now - dt.timedelta(seconds=config.window_seconds))
        return [queue_board(queue, contacts, now, config) for queue in await self.store.all_queues()]

    async def bot(self, config: WallboardConfig) -> BotDeflection:
        since = utcnow() - dt.timedelta(seconds=config.bot_window_seconds)
        docs = [doc async for doc in self.outcomes.find({"at": {"$gte": since}}, {"outcome": 1, "intent": 1})]
        outcomes = [str(doc.get("outcome")) for doc in docs]
        intents = [str(doc.get("intent") or "unknown") for doc in docs]
        return bot_deflection(outcomes, intents, intent_label)

    async def snapshot(self, agents: list[Agent] | None = None) -> Wallboard:
        """Everything the wallboard shows, as of now (active alerts as last evaluated); ``agents`` when the
        caller keeps them current itself (reading 1,000 agents for every push is the expensive part)."""
        config = await self.config()
        queues = await self.queue_boards(config)
        if agents is None:
            agents = await self.store.all_agents()
        by_state = {state.value: 0 for state in AgentState}
        for agent in agents:
            by_state[agent.state.value] += 1
        return Wallboard(
            at=utcnow(),
            queues=queues,
            agents_by_state=by_state,
            agents=agents,
            chats_per_agent=agent_loads(agents),
            bot=await self.bot(config),
            alerts=await self.active_alerts(),
            config=config,
            lines=await self.line_overrides(),
        )

    async def line_overrides(self) -> list[HoursOverride]:
        """Office-hours overrides in force (a line closed for a typhoon shows on the wall, not only in
        the admin page)."""
        now = utcnow()
        overrides = (await self.flows.hours_overrides()).values()
        return sorted((o for o in overrides if o.in_force(now)), key=lambda o: o.flow)

    async def _contacts(self, since: dt.datetime) -> list[Contact]:
        """The live contacts and those that entered within the window. Read whole once (and every
        ``WINDOW_REREAD_SECONDS``), then only what changed since the last read (``updated_at``, minus
        ``CHANGE_SKEW`` for writers whose clocks or commits lag): a busy hour holds tens of thousands of
        contacts, far too many to re-read for every push."""
        now = utcnow()
        cached = self._window
        if cached is None or (now - self._window_read_at).total_seconds() > WINDOW_REREAD_SECONDS:
            cached = {}
            live = [status.value for status in _LIVE]
            async for doc in self.store.contacts.find({"status": {"$in": live}}, _METRIC_FIELDS):
                cached[str(doc["_id"])] = contact_from_doc(doc)
            async for doc in self.store.contacts.find({"enqueued_at": {"$gte": since}}, _METRIC_FIELDS):
                cached.setdefault(str(doc["_id"]), contact_from_doc(doc))
            self._window_read_at = now
        else:
            assert self._changes_read_at is not None
            for doc in await self.store.contacts_changed_since(
                self._changes_read_at - CHANGE_SKEW, _METRIC_FIELDS
            ):
                cached[str(doc["_id"])] = contact_from_doc(doc)
        self._changes_read_at = now
        self._window = {
            key: contact
            for key, contact in cached.items()
            if contact.status in _LIVE or contact.enqueued_at >= since
        }
        return list(self._window.values())

    async def active_alerts(self) -> list[Alert]:
        return [
            alert_from_doc(doc)
            async for doc in self.alerts.find({"key": {"$exists": True}}, sort=[("raised_at", 1)])
        ]

    async def recent_alerts(self, limit: int = 100) -> list[Alert]:
        return [
            alert_from_doc(doc) async for doc in self.alerts.find({}, sort=[("raised_at", -1)], limit=limit)
        ]

    async def evaluate(
        self, queues: list[QueueBoard], bot: BotDeflection, config: WallboardConfig
    ) -> AlertChanges:
        """Store alerts whose condition started to hold, clear those that stopped; returns both."""
        held = {condition.key: condition for condition in alert_conditions(queues, bot, config)}
        raised: list[Alert] = []
        cleared: list[Alert] = []
        active = {f"{alert.rule}:{alert.subject}" for alert in await self.active_alerts()}
        for key, condition in held.items():
            if key in active:
                continue
            doc: Doc = {
                "_id": ObjectId(),
                "key": key,
                "rule": condition.rule,
                "subject": condition.subject,
                "value": condition.value,
                "threshold": condition.threshold,
                "raised_at": utcnow(),
            }
            try:
                await self.alerts.insert_one(doc)
            except DuplicateKeyError:
                continue  # another node stored it first, or it is still active
            raised.append(alert_from_doc(doc))
        for key in active - held.keys():
            done = await self.alerts.find_one_and_update(
                {"key": key},
                {"$unset": {"key": ""}, "$set": {"cleared_at": utcnow()}},
                return_document=ReturnDocument.AFTER,
            )
            if done is not None:
                cleared.append(alert_from_doc(done))
        return AlertChanges(raised, cleared)
