"""The ticket service: tickets made from what customers said (or by agents), their status machine,
dispatch, comments, watchers, collaboration requests and workflows, each change recorded.

How a change is made: read the ticket, decide (raising ``Conflict`` / ``Forbidden`` when it is not
allowed), then one update guarded by the ticket's ``version`` applies it together with
its consequences — history and timeline events, customer notifications, SLA timer starts and stops — put
in the ticket's ``outbox``. The outbox is then carried out under a short lease, in order and idempotently
(``_flush``); what a crash leaves behind, the periodic sweep finishes. So a change and its consequences
cannot come apart, and concurrent changes retry instead of overwriting each other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bson import ObjectId
from celery import Celery
from pymongo.errors import DuplicateKeyError

from core.auth import Role, User
from core.db import Database, as_utc
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.log import get_logger
from core.settings import Settings
from omnichannel import Actor, Channel, Customer, IdentityKind, Omnichannel, normalize_phone
from tickets.clock import Clock, SystemClock
from tickets.config import TicketsConfig, load_config
from tickets.dispatch import Case, Dispatcher
from tickets.journal import Journal
from tickets.models import (
    ALLOWED_TRANSITIONS,
    Collaboration,
    CollaborationStatus,
    Csat,
    CustomerMessage,
    CustomerMessageOutcome,
    DispatchDecision,
    HistoryEntry,
    IntentOutcome,
    IntentSignal,
    Language,
    NewTicket,
    Notification,
    NotificationChannel,
    Priority,
    ProgressView,
    Reason,
    Recipient,
    StaffInput,
    StaffProfile,
    StepState,
    Ticket,
    TicketPage,
    TicketQuery,
    TicketStatus,
    WorkflowRun,
    WorkflowStatus,
)
from tickets.notify import Notifier, TimelineNotifier
from tickets.numbering import TicketNumbers
from tickets.outbox import Fact, Item, Notice, Outbox, TimerOp
from tickets.progress import ProgressLinks, progress_view
from tickets.reports import Reports
from tickets.rules import IntentRule
from tickets.scheduler import CeleryScheduler, Scheduler
from tickets.sla import SlaEngine
from tickets.store import TicketStore
from tickets.webhooks import CeleryDeliveryQueue, Webhooks
from tickets.workflow import Happening, WorkflowEngine, WorkflowTemplate, parse_template

log = get_logger(__name__)

Doc = dict[str, Any]
_ATTEMPTS = 8
_LIVE_STEPS = (StepState.active.value, StepState.waiting.value, StepState.handed_back.value)
_VIP = Reason(code="vip", zh="VIP 客户", en="VIP customer")
# The customer notifications that carry the progress link.
_WITH_PROGRESS_LINK = frozenset(
    {"ticket.created", "ticket.step_started", "ticket.resolved", "ticket.reopened"}
)


@dataclass(frozen=True)
class Who:
    """Who is acting: a logged-in user, or (``user`` None) the system, a bot or a channel."""

    actor: Actor
    user: User | None = None

    @classmethod
    def staff(cls, user: User) -> Who:
        return cls(Actor(type="agent", id=user.id, name=user.display_name), user)

    @property
    def supervises(self) -> bool:
        return self.user is None or self.user.allows(Role.supervisor)


SYSTEM = Who(Actor(type="system", name="tickets"))


Decide = Callable[[Doc], Awaitable[tuple[Doc, list[Item]]]]


class _AlreadyApplied(Exception):
    def __init__(self, doc: Doc) -> None:
        self.doc = doc


class _NotConcerned(Exception):
    """The ticket changed meanwhile and no longer waits for the customer."""


_RATING = re.compile(
    r"^\s*([1-5１-５一二三四五])\s*(?:分|星|颗星|stars?|/\s*5)?\s*(?:[,，.。:：;；!！、~\-—\s]+(.*))?$",
    re.IGNORECASE | re.DOTALL,
)
_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "１": 1, "２": 2, "３": 3, "４": 4, "５": 5}


def parse_rating(text: str) -> tuple[int, str] | None:
    """A CSAT answer — a score from 1 to 5 first, then an optional comment ("5 很满意", "4分，还行") —
    or None when the text is something else."""
    match = _RATING.match(text)
    if match is None:
        return None
    digit = match.group(1)
    score = _DIGITS.get(digit) or int(digit)
    return score, (match.group(2) or "").strip()[:2000]


def ticket_from_doc(doc: Doc) -> Ticket:
    return Ticket(
        id=str(doc["_id"]),
        number=doc["number"],
        customer_id=doc["customer_id"],
        channel=Channel(doc["channel"]),
        conversation_id=doc.get("conversation_id"),
        category=doc["category"],
        intent=doc.get("intent"),
        subject=doc["subject"],
        description=doc.get("description", ""),
        language=doc["language"],
        entities=doc.get("entities", {}),
        priority=Priority(doc["priority"]),
        priority_reasons=[Reason(**reason) for reason in doc.get("priority_reasons", [])],
        status=TicketStatus(doc["status"]),
        department=doc.get("department"),
        assignee_id=doc.get("assignee_id"),
        assignee_name=doc.get("assignee_name"),
        watchers=doc.get("watchers", []),
        dispatch=DispatchDecision(**doc["dispatch"]) if doc.get("dispatch") else None,
        reassign_count=doc.get("reassign_count", 0),
        bounce_count=doc.get("bounce_count", 0),
        appended_count=doc.get("appended_count", 0),
        workflow=WorkflowRun(**doc["workflow"]) if doc.get("workflow") else None,
        collaborations=[Collaboration(**item) for item in (doc.get("collaborations") or {}).values()],
        created_by=Actor(**doc["created_by"]),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        first_response_at=doc.get("first_response_at"),
        resolved_at=doc.get("resolved_at"),
        closed_at=doc.get("closed_at"),
        version=doc["version"],
        reopen_count=doc.get("reopen_count", 0),
        csat=Csat(**doc["csat"]) if doc.get("csat") else None,
    )


def _reach(customer: Customer, origin: Channel) -> tuple[str, str] | None:
    """The channel and address to tell the customer on: where they came from, else what we have."""
    by_kind = {identity.kind: identity.value for identity in customer.identities}
    preferred = {
        Channel.voice: [(IdentityKind.phone, "sms")],
        Channel.sms: [(IdentityKind.phone, "sms")],
        Channel.wechat: [(IdentityKind.wechat_openid, "wechat")],
        Channel.email: [(IdentityKind.email, "email")],
        Channel.webchat: [(IdentityKind.web_visitor, "webchat")],
        Channel.internal: [],
    }[origin]
    fallback = [
        (IdentityKind.phone, "sms"),
        (IdentityKind.wechat_openid, "wechat"),
        (IdentityKind.email, "email"),
    ]
    for kind, channel in [*preferred, *fallback]:
        if kind in by_kind:
            return channel, by_kind[kind]
    return None


class TicketService:
    def __init__(
        self,
        store: TicketStore,
        omni: Omnichannel,
        config: TicketsConfig,
        *,
        clock: Clock,
        notifier: Notifier,
        scheduler: Scheduler,
        default_region: str = "CN",
        progress: ProgressLinks | None = None,
        webhooks: Webhooks | None = None,
    ) -> None:
        self.store = store
        self.progress_links = progress
        self.webhooks = webhooks
        self.omni = omni
        self.config = config
        self.clock = clock
        self.notifier = notifier
        self.default_region = default_region
        self.numbers = TicketNumbers(store.counters, config.timezone, config.number_prefix)
        self.journal = Journal(store, omni.timeline, webhooks)
        self.dispatcher = Dispatcher(store, config.dispatch, clock)
        self.sla = SlaEngine(
            store,
            config.sla,
            clock=clock,
            notifier=notifier,
            scheduler=scheduler,
            journal=self.journal,
            messages=config.messages,
            lease=config.lease,
            department_names={dep.id: dep.name for dep in config.departments.values()},
        )
        self.outbox = Outbox(store, self.journal, notifier, self.sla, clock=clock, lease=config.lease)
        self.reports = Reports(store, config.departments, clock)

    # ------------------------------------------------------------------------------------ reading

    async def get(self, ref: str) -> Ticket:
        return ticket_from_doc(await self.store.get(ref))

    async def history(self, ref: str) -> list[HistoryEntry]:
        doc = await self.store.get(ref)
        return [
            HistoryEntry(
                ticket_id=entry["ticket_id"],
                ts=entry["ts"],
                kind=entry["kind"],
                actor=Actor(**entry["actor"]),
                body=entry["body"],
            )
            for entry in await self.store.history_of(str(doc["_id"]))
        ]

    async def progress(self, token: str, language: Language | None = None) -> ProgressView:
        """What the customer's progress link shows (403 / 410 for a bad or expired link)."""
        if self.progress_links is None:
            raise NotFound("progress links are not enabled", code="progress_disabled")
        ticket_id = self.progress_links.verify(token, self.clock.now())
        try:
            doc = await self.store.get(ticket_id)
        except NotFound:
            raise Forbidden("this progress link is not valid", code="progress_link_invalid") from None
        expires = dt.datetime.fromtimestamp(int(token.split(".")[1]), dt.UTC)
        history = await self.store.history_of(ticket_id)
        return progress_view(
            doc, history, self.config.departments, language or doc["language"], expires_at=expires
        )

    async def search(self, query: TicketQuery, who: Who) -> TicketPage:
        mongo: Doc = {}
        if query.status:
            statuses = [part for part in query.status.split(",") if part]
            unknown = [part for part in statuses if part not in {s.value for s in TicketStatus}]
            if unknown:
                raise Invalid(f"unknown status {', '.join(unknown)}", code="invalid_status")
            mongo["status"] = {"$in": statuses}
        if query.assignee_id:
            user_id = who.user.id if query.assignee_id == "me" and who.user else query.assignee_id
            mongo["$or"] = [{"assignee_id": user_id}, {"workflow_assignees": user_id}]
        for name in ("department", "customer_id", "category", "intent"):
            value = getattr(query, name)
            if value:
                mongo[name] = value
        if query.priority:
            mongo["priority"] = query.priority.value
        docs, cursor = await self.store.page(mongo, query.limit, query.cursor)
        return TicketPage(tickets=[ticket_from_doc(doc) for doc in docs], next_cursor=cursor)

    # ----------------------------------------------------------------------------------- creating

    async def create(self, new: NewTicket, who: Who) -> Ticket:
        """A ticket opened by hand. With an ``intent``, a second active one for the same customer and
        intent is refused (409 ``duplicate_ticket``)."""
        customer = await self.omni.customers.live(new.customer_id)
        await self._check_conversation(new.conversation_id, customer)
        if new.department is not None:
            self._known_department(new.department)
        template = await self.template(new.workflow) if new.workflow else None
        open_key = f"{customer.id}:{new.intent}" if new.intent else None
        try:
            doc = await self._open(
                customer=customer,
                channel=new.channel,
                conversation_id=new.conversation_id,
                category=new.category,
                intent=new.intent,
                subject=new.subject,
                description=new.description,
                language=new.language or customer.language or "zh",
                entities=new.entities,
                priority=new.priority,
                reasons=new.priority_reasons,
                department=new.department,
                template=template,
                facts=new.facts,
                who=who,
                open_key=open_key,
                signal_key=None,
            )
        except DuplicateKeyError:
            existing = await self.store.find_active(open_key or "")
            number = existing["number"] if existing else "?"
            raise Conflict(
                f"the customer already has an active {new.intent} ticket: {number}",
                code="duplicate_ticket",
                ticket=number,
            ) from None
        return ticket_from_doc(doc)

    async def from_intent(self, signal: IntentSignal, who: Who = SYSTEM) -> IntentOutcome:
        """Turn what the customer said into a ticket, an addition to their active ticket for the same
        intent, or the question to ask first. Safe under concurrency (two signals at once make one
        ticket) and to retry (with ``idempotency_key``)."""
        rule = await self.rule(signal.intent)
        if rule is None or not rule.create:
            why = "no rule" if rule is None else "the rule says no ticket"
            return IntentOutcome(action="ignored", reason=f"{why} for intent {signal.intent!r}")
        if signal.confidence < rule.min_confidence:
            return IntentOutcome(
                action="ignored",
                reason=f"{signal.intent}: confidence {signal.confidence:.2f} < {rule.min_confidence:.2f}",
            )
        customer = await self.omni.customers.live(signal.customer_id)
        await self._check_conversation(signal.conversation_id, customer)
        signal_key = f"{customer.id}:{signal.idempotency_key}" if signal.idempotency_key else None
        if signal_key is not None:
            seen = await self.store.find_by_signal(signal_key)
            if seen is not None:
                action: Literal["created", "appended"] = (
                    "created" if seen.get("created_by_signal") == signal_key else "appended"
                )
                return IntentOutcome(action=action, ticket=ticket_from_doc(seen), reason="already handled")
        language: Language = signal.language or customer.language or "zh"
        open_key = f"{customer.id}:{signal.intent}"
        for _ in range(_ATTEMPTS):
            active = await self.store.find_active(open_key)
            if active is not None:
                try:
                    doc = await self._append(str(active["_id"]), signal, signal_key, who)
                except _AlreadyApplied as seen_in:
                    doc = seen_in.doc
                except NotFound:
                    continue
                return IntentOutcome(action="appended", ticket=ticket_from_doc(doc))
            missing = rule.missing(signal.entities)
            if missing:
                return IntentOutcome(
                    action="needs_input",
                    missing=missing,
                    prompt=missing[0].prompt(language),
                    reason=f"{', '.join(item.field for item in missing)} needed for a {rule.category} ticket",
                )
            try:
                doc = await self._open(
                    customer=customer,
                    channel=signal.channel,
                    conversation_id=signal.conversation_id,
                    category=rule.category,
                    intent=signal.intent,
                    subject=rule.subject(language),
                    description=signal.text,
                    language=language,
                    entities=signal.entities,
                    priority=max(signal.priority, rule.priority or Priority.low, key=lambda p: p.rank),
                    reasons=signal.reasons,
                    department=rule.department,
                    template=await self.template(rule.workflow) if rule.workflow else None,
                    facts=signal.facts,
                    who=who,
                    open_key=open_key,
                    signal_key=signal_key,
                    confidence=signal.confidence,
                )
            except DuplicateKeyError:
                continue  # a concurrent signal opened it first: append to theirs
            return IntentOutcome(action="created", ticket=ticket_from_doc(doc))
        raise Conflict("the customer's tickets kept changing; try again", code="ticket_busy")

    async def _open(
        self,
        *,
        customer: Customer,
        channel: Channel,
        conversation_id: str | None,
        category: str,
        intent: str | None,
        subject: str,
        description: str,
        language: Language,
        entities: dict[str, str],
        priority: Priority,
        reasons: list[Reason],
        department: str | None,
        template: WorkflowTemplate | None,
        facts: dict[str, Any],
        who: Who,
        open_key: str | None,
        signal_key: str | None,
        confidence: float | None = None,
    ) -> Doc:
        now = self.clock.now()
        if customer.vip and priority.rank < Priority.high.rank:
            priority, reasons = Priority.high, [*reasons, _VIP]
        oid = ObjectId()
        doc: Doc = {
            "_id": oid,
            "number": await self.numbers.next(now),
            "customer_id": customer.id,
            "channel": channel.value,
            "conversation_id": conversation_id,
            "category": category,
            "intent": intent,
            "subject": subject,
            "description": description,
            "language": language,
            "region": customer.profile.get("region"),
            "entities": entities,
            "priority": priority.value,
            "priority_reasons": [reason.model_dump() for reason in reasons],
            "status": TicketStatus.new.value,
            "watchers": [],
            "reassign_count": 0,
            "bounce_count": 0,
            "appended_count": 0,
            "resolution_cycle": 1,
            "collaborations": {},
            "created_by": who.actor.model_dump(mode="json"),
            "created_at": now,
            "updated_at": now,
            "first_response_at": None,
            "resolved_at": None,
            "closed_at": None,
            "signal_keys": [signal_key] if signal_key else [],
            "created_by_signal": signal_key,
            "version": 1,
        }
        if open_key is not None:
            doc["open_key"] = open_key
        decision = await self.dispatcher.decide(self._case(doc, department=department))
        self._assign(doc, decision)
        items: list[Item] = [
            Fact(
                "ticket.created",
                {
                    "category": category,
                    "intent": intent,
                    "confidence": confidence,
                    "subject": subject,
                    "priority": priority.value,
                    "reasons": doc["priority_reasons"],
                    "entities": entities,
                    "text": description,
                },
                channel=channel,
                conversation_id=conversation_id,
            ),
            self._assigned_event(decision, None),
            *self._ticket_timers(doc, cycle=1, first_response=True),
        ]
        if template is not None:
            run, happenings = WorkflowEngine(template).start(facts, now)
            doc["workflow_template"] = template.model_dump(mode="json")
            items += await self._after_engine(doc, template, run, happenings)
            self._store_run(doc, run)
        notice = await self._customer_notice(doc, "ticket.created", {"subject": subject})
        if notice is not None:
            items.insert(1, notice)
        doc["outbox"] = self.outbox.stamp(doc, items, who.actor, now, version=1)
        doc["outbox_since"] = now
        await self.store.insert(doc)
        await self.outbox.flush(oid)
        return doc

    async def _append(self, ref: str, signal: IntentSignal, signal_key: str | None, who: Who) -> Doc:
        async def decide(doc: Doc) -> tuple[Doc, list[Item]]:
            if doc.get("open_key") is None:
                raise NotFound("the active ticket was just resolved", code="ticket_not_active")
            if signal_key is not None and signal_key in doc.get("signal_keys", []):
                raise _AlreadyApplied(doc)
            sets: Doc = {
                f"entities.{key}": value
                for key, value in signal.entities.items()
                if key not in doc["entities"]
            }
            if signal.priority.rank > Priority(doc["priority"]).rank:
                sets["priority"] = signal.priority.value
                sets["priority_reasons"] = [reason.model_dump() for reason in signal.reasons]
            items: list[Item] = [
                Fact(
                    "ticket.appended",
                    {
                        "intent": signal.intent,
                        "confidence": signal.confidence,
                        "text": signal.text,
                        "entities": signal.entities,
                        "priority": signal.priority.value,
                    },
                    channel=signal.channel,
                    conversation_id=signal.conversation_id,
                )
            ]
            if doc["status"] == TicketStatus.pending_customer:
                sets["status"] = TicketStatus.open.value
                items.append(
                    Fact(
                        "ticket.status_changed",
                        {
                            "from": doc["status"],
                            "to": TicketStatus.open.value,
                            "reason": "the customer answered",
                        },
                    )
                )
                items.append(TimerOp("resume", {}))
            update: Doc = {"$inc": {"appended_count": 1}}
            if sets:
                update["$set"] = sets
            if signal_key is not None:
                update["$push"] = {"signal_keys": signal_key}
            return update, items

        return await self._mutate(ref, who, decide)

    # ------------------------------------------------------------------------------ status machine

    async def transition(self, ref: str, to: TicketStatus, reason: str, who: Who) -> Ticket:
        """Move the ticket to ``to``; 409 ``invalid_transition`` when the status machine does not allow
        it, 409 ``workflow_incomplete`` when resolving with workflow steps still open."""

        async def decide(doc: Doc) -> tuple[Doc, list[Item]]:
            self._may_work_on(doc, who)
            current = TicketStatus(doc["status"])
            allowed = ALLOWED_TRANSITIONS[current]
            if to not in allowed:
                raise Conflict(
                    f"a {current.value} ticket cannot become {to.value}; it can become "
                    + ", ".join(sorted(status.value for status in allowed)),
                    code="invalid_transition",
                    current=current.value,
                    allowed=sorted(status.value for status in allowed),
                )
            run = doc.get("workflow")
            if to in (TicketStatus.resolved, TicketStatus.closed) and run and run["status"] == "running":
                open_steps = [step for step, state in run["steps"].items() if state["state"] in _LIVE_STEPS]
                raise Conflict(
                    f"the {run['template']} workflow is still running (open: {', '.join(open_steps)});"
                    " complete it first",
                    code="workflow_incomplete",
                    open_steps=open_steps,
                )
            now = self.clock.now()
            sets: Doc = {"status": to.value}
            unset: Doc = {}
            items: list[Item] = [
                Fact("ticket.status_changed", {"from": current.value, "to": to.value, "reason": reason})
            ]
            if to == TicketStatus.pending_customer:
                items.append(TimerOp("pause", {}))
            elif current == TicketStatus.pending_customer:
                items.append(TimerOp("resume", {}))
            if to == TicketStatus.resolved:
                sets["resolved_at"] = now
                unset["open_key"] = ""
                items.append(TimerOp("stop", {"kinds": ["first_response", "resolution"], "outcome": "met"}))
                notice = await self._customer_notice(doc, "ticket.resolved", {})
                if notice is not None:
                    items.append(notice)
                    # The rating request goes out on the same channel, right after the news.
                    csat_request = await self._customer_notice(doc, "ticket.csat_request", {})
                    assert csat_request is not None
                    items.append(csat_request)
                    sets["csat"] = Csat(
                        cycle=doc.get("resolution_cycle", 1),
                        channel=notice.notification.channel,
                        requested_at=now,
                    ).model_dump(mode="python")
                    items.append(Fact("ticket.csat_requested", {"channel": notice.notification.channel}))
            elif to == TicketStatus.closed:
                sets["closed_at"] = now
                unset["open_key"] = ""
                items.append(TimerOp("stop", {"outcome": "cancelled"}))
            elif to == TicketStatus.reopened:
                items += await self._reopening(doc, sets)
            update: Doc = {"$set": sets}
            if unset:
                update["$unset"] = unset
            if to == TicketStatus.reopened:
                update["$inc"] = {"reopen_count": 1}
            return update, items

        return ticket_from_doc(await self._mutate(ref, who, decide))

    async def _reopening(self, doc: Doc, sets: Doc) -> list[Item]:
        """What reopening ``doc`` sets and starts: it is active for its intent again (unless another
        ticket took that place meanwhile: 409) and a new resolution clock runs (SLA policy: the
        first-response target was met or missed once and for all)."""
        if doc.get("intent"):
            open_key = f"{doc['customer_id']}:{doc['intent']}"
            other = await self.store.find_active(open_key)
            if other is not None and other["_id"] != doc["_id"]:
                raise Conflict(
                    f"the customer has another active {doc['intent']} ticket: {other['number']}",
                    code="duplicate_ticket",
                    ticket=other["number"],
                )
            sets["open_key"] = open_key
        cycle = doc.get("resolution_cycle", 1) + 1
        sets.update({"resolved_at": None, "closed_at": None, "resolution_cycle": cycle})
        return self._ticket_timers(doc, cycle=cycle, first_response=False)

    # ------------------------------------------------------------------------- the customer writes

    async def on_customer_message(self, message: CustomerMessage) -> CustomerMessageOutcome:
        """What a customer's inbound message means for their tickets, for every channel to call before
        its own handling. A rating ("5 很满意") after a resolution is recorded as the CSAT answer; any
        other message on a resolved ticket's conversation (or on the channel its resolution was sent
        on) within ``reopen_days`` reopens it, and on a ticket waiting for the customer it resumes the
        work. Safe to repeat with the same ``message_key``."""
        key = f"{message.customer_id}:{message.message_key}"
        seen = await self.store.find_by_customer_message(key)
        if seen is not None:
            actions = [item["action"] for item in seen["customer_messages"] if item["key"] == key]
            return CustomerMessageOutcome(action=actions[0], ticket=ticket_from_doc(seen))
        customer = await self.omni.customers.live(message.customer_id)
        doc = await self._concerned_ticket(customer, message)
        if doc is None:
            return CustomerMessageOutcome(action="none")
        actor = Actor(type="customer", id=customer.id, name=customer.name)
        who = Who(actor)
        outcome: dict[str, Any] = {}

        async def decide(current: Doc) -> tuple[Doc, list[Item]]:
            outcome.clear()  # a retry after a concurrent change decides afresh
            if any(item["key"] == key for item in current.get("customer_messages", [])):
                raise _AlreadyApplied(current)
            status = TicketStatus(current["status"])
            csat = current.get("csat")
            rating = parse_rating(message.text) if csat and csat.get("score") is None else None
            push: Doc = {"customer_messages": {"key": key, "action": ""}}
            sets: Doc = {}
            items: list[Item] = []
            said = Fact(
                "ticket.customer_replied",
                {"text": message.text},
                channel=message.channel,
                conversation_id=message.conversation_id,
            )
            if status == TicketStatus.resolved and rating is not None:
                score, comment = rating
                outcome["action"] = "csat_recorded"
                sets.update(
                    {"csat.score": score, "csat.comment": comment, "csat.answered_at": self.clock.now()}
                )
                items.append(
                    Fact(
                        "ticket.csat_recorded",
                        {"score": score, "comment": comment, "cycle": csat["cycle"] if csat else 1},
                        channel=message.channel,
                        conversation_id=message.conversation_id,
                    )
                )
                thanks = await self._customer_notice(current, "ticket.csat_thanks", {})
                if thanks is not None:
                    items.append(thanks)
                    outcome["notified"] = thanks.notification.text
            elif status == TicketStatus.resolved:
                outcome["action"] = "reopened"
                sets["status"] = TicketStatus.reopened.value
                items += [
                    said,
                    Fact(
                        "ticket.status_changed",
                        {
                            "from": status.value,
                            "to": TicketStatus.reopened.value,
                            "reason": "the customer wrote again",
                        },
                    ),
                    *await self._reopening(current, sets),
                ]
                notice = await self._customer_notice(current, "ticket.reopened", {})
                if notice is not None:
                    items.append(notice)
                    outcome["notified"] = notice.notification.text
            elif status == TicketStatus.pending_customer:
                outcome["action"] = "resumed"
                sets["status"] = TicketStatus.open.value
                items += [
                    said,
                    Fact(
                        "ticket.status_changed",
                        {
                            "from": status.value,
                            "to": TicketStatus.open.value,
                            "reason": "the customer answered",
                        },
                    ),
                    TimerOp("resume", {}),
                ]
            else:
                raise _NotConcerned()
            push["customer_messages"]["action"] = outcome["action"]
            update: Doc = {"$push": push}
            if sets:
                update["$set"] = sets
            if outcome["action"] == "reopened":
                update["$inc"] = {"reopen_count": 1}
            return update, items

        try:
            after = await self._mutate(str(doc["_id"]), who, decide)
        except _AlreadyApplied as seen_in:
            actions = [item["action"] for item in seen_in.doc["customer_messages"] if item["key"] == key]
            return CustomerMessageOutcome(action=actions[0], ticket=ticket_from_doc(seen_in.doc))
        except _NotConcerned:
            return CustomerMessageOutcome(action="none")
        return CustomerMessageOutcome(
            action=outcome["action"], ticket=ticket_from_doc(after), notified=outcome.get("notified")
        )

    async def _concerned_ticket(self, customer: Customer, message: CustomerMessage) -> Doc | None:
        """The customer's most recent ticket a message on this conversation/channel answers, if any."""
        now = self.clock.now()
        window = self.config.reopen_window
        candidates = []
        for doc in await self.store.awaiting_customer(customer.id):
            reach = _reach(customer, Channel(doc["channel"]))
            on_its_conversation = (
                message.conversation_id is not None and doc.get("conversation_id") == message.conversation_id
            )
            on_its_channel = reach is not None and reach[0] == message.channel.value
            if not (on_its_conversation or on_its_channel):
                continue
            if doc["status"] == TicketStatus.resolved and (
                doc.get("resolved_at") is None or as_utc(doc["resolved_at"]) < now - window
            ):
                continue
            candidates.append(doc)
        return max(candidates, key=lambda doc: doc["updated_at"], default=None)

    # ------------------------------------------------------------------------------------ dispatch

    async def assign(
        self, ref: str, *, assignee_id: str | None, department: str | None, reason: str, who: Who
    ) -> Ticket:
        """A supervisor's reassignment: to a person, or to a department (dispatched within it)."""
        if not who.supervises:
            raise Forbidden("only supervisors reassign tickets", code="forbidden_role")
        if assignee_id is None and department is None:
            raise Invalid("give an assignee_id or a department", code="assignee_required")
        if department is not None:
            self._known_department(department)
        person = None
        if assignee_id is not None:
            person = await self.store.staff_member(assignee_id)
            if person is None:
                raise NotFound(f"no staff profile for user {assignee_id}", code="staff_not_found")

        async def decide(doc: Doc) -> tuple[Doc, list[Item]]:
            now = self.clock.now()
            if person is not None:
                homes = person["departments"]
                target = department or (doc.get("department") if doc.get("department") in homes else None)
                target = target or (homes[0] if homes else doc.get("department"))
                if target is None:
                    raise Invalid(
                        f"{person['username']} is in no department; give one", code="department_required"
                    )
                name = person.get("display_name") or person["username"]
                decision = DispatchDecision(
                    rule="manual",
                    department=target,
                    assignee_id=person["_id"],
                    assignee_name=name,
                    strategy="manual",
                    summary=f"assigned to {name} by {who.actor.name}: {reason or 'no reason given'}",
                    at=now,
                )
            else:
                decision = await self.dispatcher.decide(self._case(doc, department=department))
            return self._reassignment(doc, decision, who, reason)

        return ticket_from_doc(await self._mutate(ref, who, decide))

    async def redispatch(self, ref: str, who: Who) -> Ticket:
        """Run the dispatch rules again (e.g. after staff or shifts changed)."""

        async def decide(doc: Doc) -> tuple[Doc, list[Item]]:
            decision = await self.dispatcher.decide(self._case(doc, exclude=doc.get("bounced_by", [])))
            return self._reassignment(doc, decision, who, "dispatched again")

        return ticket_from_doc(await self._mutate(ref, who, decide))

    async def bounce(self, ref: str, reason: str, who: Who) -> Ticket:
        """The assignee hands the ticket back as not theirs; it is dispatched again without them, and the
        bounce is counted (misdispatch rate)."""

        async def decide(doc: Doc) -> tuple[Doc, list[Item]]:
            if who.user is None or doc.get("assignee_id") != who.user.id:
                raise Forbidden("only the assignee can hand a ticket back", code="not_your_ticket")
            excluded = [*doc.get("bounced_by", []), who.user.id]
            decision = await self.dispatcher.decide(self._case(doc, exclude=excluded))
            update, items = self._reassignment(doc, decision, who, reason, count_reassign=False)
            update.setdefault("$inc", {})["bounce_count"] = 1
            update["$push"] = {"bounced_by": who.user.id}
            items.insert(0, Fact("ticket.bounced", {"by": who.user.id, "reason": reason}))
            return update, items

        return ticket_from_doc(await self._mutate(ref, who, decide))

    def _reassignment(
        self, doc: Doc, decision: DispatchDecision, who: Who, reason: str, *, count_reassign: bool = True
    ) -> tuple[Doc, list[Item]]:
        sets: Doc = {}
        self._assign(sets, decision)
        update: Doc = {"$set": sets}
        previous = doc.get("assignee_id")
        if count_reassign and previous is not None and previous != decision.assignee_id:
            update["$inc"] = {"reassign_count": 1}
        event_ = self._assigned_event(decision, previous)
        event_.body["reason"] = reason
        return update, [event_]

    @staticmethod
    def _assign(target: Doc, decision: DispatchDecision) -> None:
        target.update(
            department=decision.department,
            assignee_id=decision.assignee_id,
            assignee_name=decision.assignee_name,
            dispatch=decision.model_dump(mode="python"),
        )

    @staticmethod
    def _assigned_event(decision: DispatchDecision, previous: str | None) -> Fact:
        return Fact(
            "ticket.assigned" if decision.assignee_id else "ticket.queued",
            {
                "from": previous,
                "to": decision.assignee_id,
                "to_name": decision.assignee_name,
                "department": decision.department,
                "rule": decision.rule,
                "summary": decision.summary,
            },
        )

    def _case(self, doc: Doc, *, department: str | None = None, exclude: list[str] | None = None) -> Case:
        return Case(
            category=doc["category"],
            intent=doc.get("intent"),
            channel=doc["channel"],
            language=doc["language"],
            priority=doc["priority"],
            region=doc.get("region"),
            department=department,
            exclude=frozenset(exclude or []),
        )

    # ------------------------------------------------------------------------ comments, watchers

    async def comment(self, ref: str, text: str, public: bool, who: Who) -> Ticket:
        """An internal note, or (``public``) a reply to the customer — the first one meets the
        first-response target."""

        async def decide(doc: Doc) -> tuple[Doc, list[Item]]:
            items: list[Item] = [Fact("ticket.commented", {"text": text, "public": public})]
            update: Doc = {}
            if public:
                self._may_work_on(doc, who)
                notice = await self._customer_notice(doc, "ticket.reply", {}, text=text)
                if notice is not None:
                    items.append(notice)
                if doc.get("first_response_at") is None and who.user is not None:
                    update["$set"] = {"first_response_at": self.clock.now()}
                    items.append(TimerOp("stop", {"kinds": ["first_response"], "outcome": "met"}))
            return update, items

        return ticket_from_doc(await self._mutate(ref, who, decide))

    async def watch(self, ref: str, user_id: str, watching: bool, who: Who) -> Ticket:
        async def decide(doc: Doc) -> tuple[Doc, list[Item]]:
            if who.user is not None and user_id != who.user.id and not who.supervises:
                raise Forbidden("agents add or remove only themselves as watchers", code="forbidden_role")
            kind = "ticket.watcher_added" if watching else "ticket.watcher_removed"
            operator = "$addToSet" if watching else "$pull"
            return {operator: {"watchers": user_id}}, [Fact(kind, {"user_id": user_id})]

        return ticket_from_doc(await self._mutate(ref, who, decide))

    # ---------------------------------------------------------------------------- collaboration

    async def request_collaboration(
        self, ref: str, department: str, question: str, who: Who
    ) -> Collaboration:
        """Ask another department for help; unanswered within the policy's time, its lead is texted."""
        self._known_department(department)
        collaboration_id = str(ObjectId())
        policy = self.config.sla.collaboration

        async def decide(doc: Doc) -> tuple[Doc, list[Item]]:
            record = Collaboration(
                id=collaboration_id,
                ticket_id=str(doc["_id"]),
                department=department,
                question=question,
                status=CollaborationStatus.open,
                requested_by=who.actor,
                requested_at=self.clock.now(),
            )
            timer = TimerOp(
                "start",
                {
                    "timer_id": f"{doc['_id']}:collaboration:{collaboration_id}",
                    "kind": "collaboration",
                    "label": collaboration_id,
                    "target_seconds": policy.answer_within.total_seconds(),
                    "calendar": policy.calendar,
                    "chain": [step.model_dump() for step in policy.escalation],
                    "department": department,
                },
            )
            body = {"collaboration_id": collaboration_id, "department": department, "question": question}
            return (
                {"$set": {f"collaborations.{collaboration_id}": record.model_dump(mode="python")}},
                [Fact("ticket.collaboration_requested", body), timer],
            )

        doc = await self._mutate(ref, who, decide)
        return Collaboration(**doc["collaborations"][collaboration_id])

    async def answer_collaboration(
        self, ref: str, collaboration_id: str, text: str, who: Who
    ) -> Collaboration:
        async def decide(doc: Doc) -> tuple[Doc, list[Item]]:
            record = (doc.get("collaborations") or {}).get(collaboration_id)
            if record is None:
                raise NotFound(f"no collaboration request {collaboration_id}", code="collaboration_not_found")
            if record["status"] == CollaborationStatus.answered:
                raise Conflict("this collaboration request is already answered", code="already_answered")
            await self._in_department(record["department"], who)
            prefix = f"collaborations.{collaboration_id}"
            sets = {
                f"{prefix}.status": CollaborationStatus.answered.value,
                f"{prefix}.answer": text,
                f"{prefix}.answered_by": who.actor.model_dump(mode="json"),
                f"{prefix}.answered_at": self.clock.now(),
            }
            timer = TimerOp(
                "stop", {"timer_id": f"{doc['_id']}:collaboration:{collaboration_id}", "outcome": "met"}
            )
            body = {"collaboration_id": collaboration_id, "department": record["department"], "answer": text}
            return {"$set": sets}, [Fact("ticket.collaboration_answered", body), timer]

        doc = await self._mutate(ref, who, decide)
        return Collaboration(**doc["collaborations"][collaboration_id])

    # ---------------------------------------------------------------------------------- workflow

    async def start_workflow(self, ref: str, name: str, facts: dict[str, Any], who: Who) -> Ticket:
        template = await self.template(name)

        async def decide(doc: Doc) -> tuple[Doc, list[Item]]:
            self._may_work_on(doc, who)
            if doc.get("workflow") and doc["workflow"]["status"] == WorkflowStatus.running:
                raise Conflict(
                    f"workflow {doc['workflow']['template']!r} is already running", code="workflow_running"
                )
            run, happenings = WorkflowEngine(template).start(facts, self.clock.now())
            items = await self._after_engine(doc, template, run, happenings)
            sets: Doc = {"workflow_template": template.model_dump(mode="json")}
            self._store_run(sets, run)
            return {"$set": sets}, items

        return ticket_from_doc(await self._mutate(ref, who, decide))

    async def complete_step(
        self, ref: str, step: str, *, facts: dict[str, Any], note: str, who: Who
    ) -> Ticket:
        async def operate(engine: WorkflowEngine, run: WorkflowRun, doc: Doc) -> list[Happening]:
            await self._may_work_on_step(doc, run, step, who)
            return engine.complete(run, step, facts=facts, note=note, now=self.clock.now())

        return await self._workflow_change(ref, who, operate)

    async def decide_step(self, ref: str, step: str, *, approved: bool, note: str, who: Who) -> Ticket:
        async def operate(engine: WorkflowEngine, run: WorkflowRun, doc: Doc) -> list[Happening]:
            definition = engine.template.steps.get(step)
            if definition is not None and definition.approver is not None:
                await self._may_approve(definition.approver, definition.department, who)
            return engine.decide(run, step, approved=approved, note=note, now=self.clock.now())

        return await self._workflow_change(ref, who, operate)

    async def hand_back_step(self, ref: str, step: str, *, to: str, note: str, who: Who) -> Ticket:
        async def operate(engine: WorkflowEngine, run: WorkflowRun, doc: Doc) -> list[Happening]:
            await self._may_work_on_step(doc, run, step, who)
            return engine.hand_back(run, step, to=to, note=note, now=self.clock.now())

        return await self._workflow_change(ref, who, operate)

    async def _workflow_change(
        self,
        ref: str,
        who: Who,
        operate: Callable[[WorkflowEngine, WorkflowRun, Doc], Awaitable[list[Happening]]],
    ) -> Ticket:
        async def decide(doc: Doc) -> tuple[Doc, list[Item]]:
            if not doc.get("workflow"):
                raise Conflict("this ticket has no workflow", code="no_workflow")
            template = WorkflowTemplate.model_validate(doc["workflow_template"])
            run = WorkflowRun(**doc["workflow"])
            happenings = await operate(WorkflowEngine(template), run, doc)
            items = await self._after_engine(doc, template, run, happenings)
            sets: Doc = {}
            self._store_run(sets, run)
            return {"$set": sets}, items

        return ticket_from_doc(await self._mutate(ref, who, decide))

    async def _after_engine(
        self, doc: Doc, template: WorkflowTemplate, run: WorkflowRun, happenings: list[Happening]
    ) -> list[Item]:
        """Dispatch the steps that started, and turn what happened into events, timers and notices."""
        items: list[Item] = []
        # The customer hears of the first step with the ticket itself, of every later hop on its own.
        starting = any(happening.kind == "ticket.workflow_started" for happening in happenings)
        for happening in happenings:
            body: Doc = {"template": run.template, **happening.body}
            if happening.step is None:
                items.append(Fact(happening.kind, body))
                continue
            step = run.steps[happening.step]
            definition = template.steps[happening.step]
            timer_id = f"{doc['_id']}:step:{step.step}:{step.round}"
            body.update(
                step=step.step, title=step.title.model_dump(), department=step.department, round=step.round
            )
            if happening.kind == "ticket.step_started":
                if (
                    step.assignee_id is None
                    and step.department == doc.get("department")
                    and doc.get("assignee_id")
                ):
                    step.assignee_id, step.assignee_name = doc["assignee_id"], doc.get("assignee_name")
                    step.dispatch = DispatchDecision(
                        rule="ticket-owner",
                        department=step.department,
                        assignee_id=step.assignee_id,
                        assignee_name=step.assignee_name,
                        strategy="owner",
                        summary=f"{step.assignee_name} owns the ticket in {step.department}",
                        at=self.clock.now(),
                    )
                if step.assignee_id is None:
                    case = dataclasses.replace(
                        self._case(doc, department=step.department),
                        skills=tuple(definition.skills),
                        language=None,
                    )
                    decision = await self.dispatcher.decide(case)
                    step.assignee_id, step.assignee_name, step.dispatch = (
                        decision.assignee_id,
                        decision.assignee_name,
                        decision,
                    )
                body.update(
                    assignee_id=step.assignee_id,
                    assignee_name=step.assignee_name,
                    summary=step.dispatch.summary if step.dispatch else "",
                )
                items.append(Fact(happening.kind, body))
                if definition.sla is not None:
                    items.append(
                        TimerOp(
                            "start",
                            {
                                "timer_id": timer_id,
                                "kind": "step",
                                "label": step.step,
                                "target_seconds": definition.sla.total_seconds(),
                                "calendar": self.config.sla.steps.calendar,
                                "chain": [item.model_dump() for item in self.config.sla.steps.escalation],
                                "department": step.department,
                            },
                        )
                    )
                if definition.notify_customer and not starting and "handed_back_from" not in happening.body:
                    notice = await self._customer_notice(
                        doc, "ticket.step_started", {"step": step.title(doc["language"])}
                    )
                    if notice is not None:
                        items.append(notice)
                continue
            items.append(Fact(happening.kind, body))
            if happening.kind == "ticket.step_handed_back":
                items.append(TimerOp("pause", {"timer_id": timer_id}))
            elif happening.kind == "ticket.step_resumed":
                items.append(TimerOp("resume", {"timer_id": timer_id}))
            else:
                outcome = "cancelled" if happening.kind == "ticket.step_cancelled" else "met"
                items.append(TimerOp("stop", {"timer_id": timer_id, "outcome": outcome}))
        return items

    @staticmethod
    def _store_run(target: Doc, run: WorkflowRun) -> None:
        target["workflow"] = run.model_dump(mode="python")
        target["workflow_assignees"] = sorted(
            {
                step.assignee_id
                for step in run.steps.values()
                if step.state == StepState.active and step.assignee_id is not None
            }
        )

    # ------------------------------------------------------------------- templates, rules, staff

    async def template(self, name: str) -> WorkflowTemplate:
        stored = await self.store.template(name)
        if stored is not None:
            return parse_template(stored["definition"], self.config.departments)
        if name in self.config.templates:
            return self.config.templates[name]
        raise NotFound(f"no workflow template {name!r}", code="template_not_found")

    async def templates(self) -> list[WorkflowTemplate]:
        found = dict(self.config.templates)
        for stored in await self.store.stored_templates():
            found[stored["_id"]] = parse_template(stored["definition"], self.config.departments)
        return [found[name] for name in sorted(found)]

    def check_template(self, definition: Doc) -> WorkflowTemplate:
        """The parsed template, or ``TemplateInvalid`` (400 ``invalid_template``) naming each problem."""
        return parse_template(definition, self.config.departments)

    async def put_template(self, name: str, definition: Doc, who: Who) -> WorkflowTemplate:
        template = self.check_template(definition)
        if template.name != name:
            raise Invalid(f"the template is named {template.name!r}, not {name!r}", code="name_mismatch")
        await self.store.put_template(
            name, template.model_dump(mode="json"), self.clock.now(), who.actor.name or ""
        )
        return template

    async def rule(self, intent: str) -> IntentRule | None:
        stored = await self.store.rule(intent)
        if stored is not None:
            return IntentRule.model_validate(stored["definition"])
        return self.config.intents.intents.get(intent)

    async def rules(self) -> dict[str, IntentRule]:
        found = dict(self.config.intents.intents)
        for stored in await self.store.stored_rules():
            found[stored["_id"]] = IntentRule.model_validate(stored["definition"])
        return dict(sorted(found.items()))

    async def put_rule(self, intent: str, rule: IntentRule, who: Who) -> IntentRule:
        if rule.department is not None:
            self._known_department(rule.department)
        if rule.workflow is not None:
            try:
                await self.template(rule.workflow)
            except NotFound:
                raise Invalid(
                    f"unknown workflow template {rule.workflow!r}", code="unknown_template"
                ) from None
        await self.store.put_rule(
            intent, rule.model_dump(mode="json"), self.clock.now(), who.actor.name or ""
        )
        return rule

    async def put_staff(self, user: User, profile: StaffInput) -> StaffProfile:
        """Create or replace a user's staff profile (departments, skills, phone, shifts…)."""
        for department in [*profile.departments, *profile.lead_of]:
            self._known_department(department)
        for department in profile.supervisor_of:
            if department != "*":
                self._known_department(department)
        try:
            ZoneInfo(profile.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid(f"unknown timezone {profile.timezone!r}", code="invalid_timezone") from None
        phone = normalize_phone(profile.phone, self.default_region) if profile.phone else None
        staff = StaffProfile(
            user_id=user.id,
            username=user.username,
            **{
                **profile.model_dump(),
                "phone": phone,
                "display_name": profile.display_name or user.display_name,
            },
        )
        await self.store.put_staff(user.id, {"_id": user.id, **staff.model_dump(exclude={"user_id"})})
        return staff

    async def staff(self) -> list[StaffProfile]:
        return [
            StaffProfile(user_id=doc["_id"], **{k: v for k, v in doc.items() if k != "_id"})
            for doc in await self.store.all_staff()
        ]

    # ------------------------------------------------------------------------------- maintenance

    async def sweep(self) -> int:
        """The safety net (Celery beat): fire due SLA timers and finish outboxes a crash left behind."""
        fired = await self.sla.sweep()
        await self.outbox.sweep()
        return fired

    # --------------------------------------------------------------------------------- internals

    async def _mutate(self, ref: str, who: Who, decide: Decide) -> Doc:
        for _ in range(_ATTEMPTS):
            doc = await self.store.get(ref)
            update, items = await decide(doc)
            now = self.clock.now()
            stamped = self.outbox.stamp(doc, items, who.actor, now, version=doc["version"] + 1)
            update.setdefault("$set", {})["updated_at"] = now
            update.setdefault("$inc", {})["version"] = 1
            if stamped:
                update.setdefault("$push", {})["outbox"] = {"$each": stamped}
                update["$min"] = {"outbox_since": now}
            try:
                after = await self.store.update({"_id": doc["_id"], "version": doc["version"]}, update)
            except DuplicateKeyError:
                raise Conflict(
                    "the customer has another active ticket for this intent", code="duplicate_ticket"
                ) from None
            if after is not None:
                await self.outbox.flush(doc["_id"])
                return after
        raise Conflict("the ticket kept changing meanwhile; try again", code="ticket_busy")

    def _ticket_timers(self, doc: Doc, *, cycle: int, first_response: bool) -> list[Item]:
        targets = self.config.sla.targets_for(Priority(doc["priority"]), doc["category"])
        chain = [step.model_dump() for step in self.config.sla.chain_for(Priority(doc["priority"]))]
        wanted = [("resolution", targets.resolution, f"{doc['_id']}:resolution:{cycle}")]
        if first_response:
            wanted.insert(0, ("first_response", targets.first_response, f"{doc['_id']}:first_response"))
        return [
            TimerOp(
                "start",
                {
                    "timer_id": timer_id,
                    "kind": kind,
                    "label": kind,
                    "target_seconds": target.total_seconds(),
                    "calendar": targets.calendar,
                    "chain": chain,
                    "department": None,
                },
            )
            for kind, target, timer_id in wanted
            if target is not None
        ]

    async def _customer_notice(
        self, doc: Doc, template: str, params: Doc, *, text: str | None = None
    ) -> Notice | None:
        customer = await self.omni.customers.live(doc["customer_id"])
        reach = _reach(customer, Channel(doc["channel"]))
        if reach is None:
            return None
        channel, address = reach
        language: Language = doc["language"]
        params = {"number": doc["number"], **params}
        rendered = text if text is not None else self.config.messages.render(template, language, params)
        if self.progress_links is not None and template in _WITH_PROGRESS_LINK:
            params["link"] = self.progress_links.url(str(doc["_id"]), self.clock.now())
            rendered += self.config.messages.render("progress.link", language, params)
        return Notice(
            Notification(
                idempotency_key="(set when stamped)",
                channel=cast(NotificationChannel, channel),
                recipient=Recipient(
                    kind="customer", customer_id=customer.id, name=customer.name, address=address
                ),
                template=template,
                language=language,
                text=rendered,
                ticket_id=str(doc["_id"]),
                customer_id=customer.id,
                params=params,
            )
        )

    async def _check_conversation(self, conversation_id: str | None, customer: Customer) -> None:
        if conversation_id is None:
            return
        conversation = await self.omni.conversations.get(conversation_id)
        if conversation.customer_id not in {customer.id, *customer.merged_from}:
            raise Invalid(
                f"conversation {conversation_id} belongs to another customer", code="conversation_mismatch"
            )

    def _known_department(self, department: str) -> None:
        if department not in self.config.departments:
            known = ", ".join(sorted(self.config.departments))
            raise Invalid(f"unknown department {department!r} (known: {known})", code="unknown_department")

    def _may_work_on(self, doc: Doc, who: Who) -> None:
        if who.supervises:
            return
        assert who.user is not None
        if doc.get("assignee_id") in (None, who.user.id) or who.user.id in doc.get("watchers", []):
            return
        raise Forbidden(
            f"ticket {doc['number']} is assigned to {doc.get('assignee_name')}; ask them or a supervisor",
            code="not_your_ticket",
        )

    async def _may_work_on_step(self, doc: Doc, run: WorkflowRun, step_id: str, who: Who) -> None:
        if who.supervises:
            return
        assert who.user is not None
        step = run.steps.get(step_id)
        if step is None or step.assignee_id in (None, who.user.id):
            return
        await self._in_department(step.department, who)

    async def _in_department(self, department: str, who: Who) -> None:
        if who.supervises:
            return
        assert who.user is not None
        profile = await self.store.staff_member(who.user.id)
        if profile is None or department not in profile.get("departments", []):
            raise Forbidden(f"you do not work in {department}", code="not_in_department")

    async def _may_approve(self, approver: str, department: str, who: Who) -> None:
        if who.user is None or who.user.allows(Role.supervisor):
            return
        profile = await self.store.staff_member(who.user.id)
        if approver == "department_lead" and profile is not None and department in profile.get("lead_of", []):
            return
        needed = (
            f"the lead of {department} or a supervisor" if approver == "department_lead" else "a supervisor"
        )
        raise Forbidden(f"this approval needs {needed}", code="not_an_approver")


def create_service(
    db: Database, omni: Omnichannel, settings: Settings, *, notifier: Notifier | None = None
) -> TicketService:
    """The service as the web process and the worker run it: real clock, notifications through
    ``notifier`` (the channels' senders; by default on the timeline), SLA checks as Celery ETA tasks."""
    producer = Celery("huiliu-tickets", broker=settings.redis_url)
    # Fail fast when Redis is away: a lost ETA task costs at most one sweep, a hung request much more.
    producer.conf.update(
        broker_connection_retry_on_startup=False,
        broker_connection_retry=False,
        broker_connection_max_retries=0,
        broker_connection_timeout=1,
        broker_transport_options={"socket_connect_timeout": 1, "socket_timeout": 2, "max_retries": 0},
    )
    config = load_config(settings)
    options = config.options
    clock = SystemClock()
    base_url = settings.public_url or f"http://{settings.web_host}:{settings.web_port}"
    return TicketService(
        TicketStore(db),
        omni,
        config,
        clock=clock,
        notifier=notifier or TimelineNotifier(omni.timeline),
        scheduler=CeleryScheduler(producer),
        default_region=settings.default_region,
        progress=ProgressLinks(settings.secret(), base_url, dt.timedelta(days=options.progress_link_days)),
        webhooks=Webhooks(
            db,
            clock=clock,
            queue=CeleryDeliveryQueue(producer),
            max_attempts=options.webhook_max_attempts,
            backoff=dt.timedelta(seconds=options.webhook_backoff_seconds),
            timeout=dt.timedelta(seconds=options.webhook_timeout_seconds),
        ),
    )
