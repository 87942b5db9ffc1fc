"""SLA policies, business-hours calendars and the timers that remind and escalate.

A timer is one MongoDB document (``sla_timers``) holding everything needed to fire it: when it is due,
when to remind, the escalation chain, how far along the chain it is. Firing is an atomic state transition
on that document — an update guarded by the state it expects (``generation``, ``level``,
``reminded_at``) — so of two deliveries of the same check, or a Celery ETA task racing the periodic sweep,
exactly one moves the timer on. The side effects of the move (notifications, history, timeline) are
written into the document by the same update and executed afterwards under a short lease; a worker that
dies in between leaves them there for the next check or sweep, and their idempotency keys make a repeat
harmless. Hence: never missed, never doubled.

Timers of a ticket pause while it waits for the customer: the business time left is kept and a new due
time computed on resume (``generation`` changes, so checks scheduled for the old times do nothing).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bson import ObjectId
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from core.log import get_logger
from omnichannel import Actor
from tickets.clock import Clock
from tickets.journal import Journal, event
from tickets.models import (
    EscalationStep,
    Language,
    Notification,
    NotificationChannel,
    Priority,
    Recipient,
    SlaTimer,
    Text,
    TimerState,
)
from tickets.notify import Messages, Notifier
from tickets.scheduler import Scheduler
from tickets.store import TicketStore, update_by_id

log = get_logger(__name__)

Doc = dict[str, Any]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_MAX_CALENDAR_DAYS = 3 * 366
_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(value: Any) -> dt.timedelta:
    """``30`` (minutes), ``"30m"``, ``"4h"``, ``"1h30m"``, ``"2d"``, ``"90s"`` → timedelta."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(minutes=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and any(match.groups()):
            days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
            return dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if value.startswith("P"):  # ISO 8601, as a stored template dumps it
            return TypeAdapter(dt.timedelta).validate_python(value)
    raise ValueError(f"not a duration: {value!r} (use minutes, or e.g. '30m', '4h', '1h30m', '2d')")


Duration = Annotated[dt.timedelta, BeforeValidator(parse_duration)]


# ------------------------------------------------------------------------------------------ calendars


def _minutes(clock_time: str) -> int:
    hours, minutes = clock_time.split(":")
    return int(hours) * 60 + int(minutes)


class CalendarSpec(BaseModel):
    """Working hours per weekday in a timezone, public holidays, and adjusted working days (调休: a
    weekend day worked with Monday's hours)."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "Asia/Shanghai"
    always: bool = Field(default=False, description="24×7: no hours, no holidays")
    hours: dict[Weekday, list[str]] = {}
    holidays: list[dt.date] = []
    workdays: list[dt.date] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value

    @field_validator("hours")
    @classmethod
    def _spans(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, spans in value.items():
            previous_end = -1
            for span in spans:
                match = re.match(r"^([01]\d|2[0-3]):([0-5]\d)-(([01]\d|2[0-3]):[0-5]\d|24:00)$", span)
                if not match:
                    raise ValueError(f"{day}: {span!r} is not HH:MM-HH:MM")
                start, end = (_minutes(part) for part in span.split("-"))
                if end <= start or start < previous_end:
                    raise ValueError(f"{day}: {span!r} ends before it starts or overlaps the previous span")
                previous_end = end
        return value

    @model_validator(mode="after")
    def _some_hours(self) -> CalendarSpec:
        if not self.always and not any(self.hours.values()):
            raise ValueError("a calendar needs working hours (or always: true)")
        return self


@dataclass(frozen=True)
class BusinessCalendar:
    """Business time arithmetic: ``add`` counts only working time, ``elapsed`` measures it."""

    spec: CalendarSpec

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.spec.timezone)

    @cached_property
    def _weekly(self) -> dict[int, list[tuple[int, int]]]:
        return {
            WEEKDAYS.index(day): [(_minutes(a), _minutes(b)) for a, b in (s.split("-") for s in spans)]
            for day, spans in self.spec.hours.items()
        }

    def spans_on(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        """The working spans of a local calendar day, as UTC datetimes."""
        if day in self.spec.holidays:
            return []
        weekday = 0 if day in self.spec.workdays else day.weekday()
        spans = []
        for start, end in self._weekly.get(weekday, []):
            spans.append((self._at(day, start), self._at(day, end)))
        return spans

    def _at(self, day: dt.date, minute: int) -> dt.datetime:
        if minute >= 24 * 60:
            day, minute = day + dt.timedelta(days=1), minute - 24 * 60
        local = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=self.zone)
        return local.astimezone(dt.UTC)

    def add(self, start: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        """The moment when ``duration`` of working time has passed since ``start``."""
        if self.spec.always:
            return start + duration
        remaining = duration
        day = start.astimezone(self.zone).date()
        for _ in range(_MAX_CALENDAR_DAYS):
            for span_start, span_end in self.spans_on(day):
                if span_end <= start:
                    continue
                begin = max(span_start, start)
                if remaining <= span_end - begin:
                    return begin + remaining
                remaining -= span_end - begin
            day += dt.timedelta(days=1)
        raise ValueError("the calendar has no working time in the next three years")

    def elapsed(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Working time between ``start`` and ``end`` (zero if ``end`` is not after ``start``)."""
        if end <= start:
            return dt.timedelta(0)
        if self.spec.always:
            return end - start
        total = dt.timedelta(0)
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        while day <= last:
            for span_start, span_end in self.spans_on(day):
                overlap = min(span_end, end) - max(span_start, start)
                if overlap > dt.timedelta(0):
                    total += overlap
            day += dt.timedelta(days=1)
        return total

    def is_open(self, at: dt.datetime) -> bool:
        if self.spec.always:
            return True
        day = at.astimezone(self.zone).date()
        return any(
            start <= at < end
            for probe in (day - dt.timedelta(days=1), day)
            for start, end in self.spans_on(probe)
        )


# --------------------------------------------------------------------------------------------- policy


class TargetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_response: Duration | None = None
    resolution: Duration | None = None
    calendar: str | None = None


class StepSla(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calendar: str
    escalation: list[EscalationStep]


class CollaborationSla(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer_within: Duration
    calendar: str
    escalation: list[EscalationStep] = Field(min_length=1)


@dataclass(frozen=True)
class Targets:
    first_response: dt.timedelta | None
    resolution: dt.timedelta | None
    calendar: str


class SlaPolicy(BaseModel):
    """Targets per priority (and per category where it differs), calendars and escalation chains."""

    model_config = ConfigDict(extra="forbid")

    reminder_at: float = Field(default=0.8, gt=0, lt=1, description="Remind at this share of the target")
    default_calendar: str
    calendars: dict[str, CalendarSpec]
    targets: dict[Priority, TargetSpec]
    categories: dict[str, dict[Priority, TargetSpec]] = {}
    escalation: dict[str, list[EscalationStep]] = Field(
        description="Chains by priority; 'default' for the rest"
    )
    steps: StepSla
    collaboration: CollaborationSla

    @model_validator(mode="after")
    def _consistent(self) -> SlaPolicy:
        problems = []
        missing = [priority.value for priority in Priority if priority not in self.targets]
        if missing:
            problems.append(f"targets: missing priorities {', '.join(missing)}")
        if "default" not in self.escalation:
            problems.append("escalation: a 'default' chain is required")
        unknown = sorted(set(self.escalation) - {"default", *(p.value for p in Priority)})
        if unknown:
            problems.append(f"escalation: unknown priorities {', '.join(unknown)}")
        used = {("default_calendar", self.default_calendar)}
        used |= {(f"targets.{p.value}", t.calendar) for p, t in self.targets.items() if t.calendar}
        used |= {
            (f"categories.{c}.{p.value}", t.calendar)
            for c, per in self.categories.items()
            for p, t in per.items()
            if t.calendar
        }
        used |= {
            ("steps.calendar", self.steps.calendar),
            ("collaboration.calendar", self.collaboration.calendar),
        }
        for where, name in sorted(used):
            if name not in self.calendars:
                problems.append(
                    f"{where}: unknown calendar {name!r} (known: {', '.join(sorted(self.calendars))})"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def calendar(self, name: str) -> BusinessCalendar:
        return _calendar(self.calendars[name])

    def targets_for(self, priority: Priority, category: str) -> Targets:
        base = self.targets[priority]
        override = self.categories.get(category, {}).get(priority)
        first = override.first_response if override and override.first_response else base.first_response
        resolution = override.resolution if override and override.resolution else base.resolution
        calendar = (override.calendar if override else None) or base.calendar or self.default_calendar
        return Targets(first, resolution, calendar)

    def chain_for(self, priority: Priority) -> list[EscalationStep]:
        return self.escalation.get(priority.value) or self.escalation["default"]


_CALENDARS: dict[str, BusinessCalendar] = {}


def _calendar(spec: CalendarSpec) -> BusinessCalendar:
    key = spec.model_dump_json()
    if key not in _CALENDARS:
        _CALENDARS[key] = BusinessCalendar(spec)
    return _CALENDARS[key]


# --------------------------------------------------------------------------------------------- timers

TimerKind = Literal["first_response", "resolution", "step", "collaboration"]
_TICKET_LEVEL = ("first_response", "resolution")
_SYSTEM = Actor(type="system", name="SLA")
_LABELS = {
    "first_response": ("首次响应", "first response"),
    "resolution": ("解决", "resolution"),
    "step": ("流程步骤", "workflow step"),
    "collaboration": ("协作请求", "collaboration request"),
}


def timer_from_doc(doc: Doc) -> SlaTimer:
    return SlaTimer(
        id=doc["_id"],
        ticket_id=doc["ticket_id"],
        kind=doc["kind"],
        label=doc["label"],
        department=doc.get("department"),
        state=TimerState(doc["state"]),
        started_at=doc["started_at"],
        due_at=doc["due_at"],
        remind_at=doc.get("remind_at"),
        reminded_at=doc.get("reminded_at"),
        breached_at=doc.get("breached_at"),
        level=doc["level"],
        chain=[EscalationStep(**step) for step in doc["chain"]],
        stopped_at=doc.get("stopped_at"),
    )


def _next_check(doc: Doc) -> dt.datetime | None:
    """When this timer next has something to do, given its state (None: nothing left)."""
    if doc["state"] != TimerState.running:
        return None
    moments = []
    if doc.get("reminded_at") is None and doc.get("remind_at") is not None:
        moments.append(min(doc["remind_at"], doc["due_at"]))
    if doc.get("breached_at") is None:
        moments.append(doc["due_at"])
    chain = doc["chain"]
    if doc["level"] < len(chain):
        moments.append(doc["due_at"] + dt.timedelta(minutes=chain[doc["level"]]["after_minutes"]))
    return min(moments) if moments else None


class SlaEngine:
    """Starts, pauses, resumes and stops timers, and fires them (``check``, ``sweep``)."""

    def __init__(
        self,
        store: TicketStore,
        policy: SlaPolicy,
        *,
        clock: Clock,
        notifier: Notifier,
        scheduler: Scheduler,
        journal: Journal,
        messages: Messages,
        lease: dt.timedelta = dt.timedelta(seconds=30),
        department_names: Mapping[str, Text] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.department_names = dict(department_names or {})
        self.clock = clock
        self.notifier = notifier
        self.scheduler = scheduler
        self.journal = journal
        self.messages = messages
        self.lease = lease

    # ----------------------------------------------------------------------------------- lifecycle

    async def start(
        self,
        ticket: Doc,
        *,
        timer_id: str,
        kind: TimerKind,
        label: str,
        target: dt.timedelta,
        calendar: str,
        chain: list[EscalationStep],
        department: str | None,
        remind: bool = True,
    ) -> None:
        """Start a timer (idempotent by ``timer_id``); ``remind`` at the policy's share of the target."""
        now = self.clock.now()
        business = self.policy.calendar(calendar)
        doc: Doc = {
            "_id": timer_id,
            "ticket_id": str(ticket["_id"]),
            "customer_id": ticket["customer_id"],
            "number": ticket["number"],
            "kind": kind,
            "label": label,
            "department": department,
            "calendar": calendar,
            "state": TimerState.running.value,
            "target_seconds": target.total_seconds(),
            "started_at": now,
            "due_at": business.add(now, target),
            "remind_at": business.add(now, target * self.policy.reminder_at) if remind else None,
            "reminded_at": None,
            "breached_at": None,
            "level": 0,
            "chain": [step.model_dump() for step in chain],
            "generation": 0,
            "effects": [],
            "effects_pending": False,
            "lease_until": None,
            "fired": [],
            "stopped_at": None,
        }
        doc["next_check_at"] = _next_check(doc)
        result = await self.store.timers.update_one({"_id": timer_id}, {"$setOnInsert": doc}, upsert=True)
        if result.upserted_id is not None and doc["next_check_at"] is not None:
            await self.scheduler.schedule(timer_id, doc["next_check_at"])

    async def pause(
        self, ticket_id: str, *, kinds: tuple[str, ...] = _TICKET_LEVEL, timer_id: str | None = None
    ) -> None:
        """Stop the clock of running timers, keeping the working time they had left."""
        now = self.clock.now()
        query: Doc = {"ticket_id": ticket_id, "state": "running", "kind": {"$in": list(kinds)}}
        if timer_id is not None:
            query = {"_id": timer_id, "ticket_id": ticket_id, "state": "running"}
        async for doc in self.store.timers.find(query):
            business = self.policy.calendar(doc["calendar"])
            remind_left = (
                business.elapsed(now, doc["remind_at"]).total_seconds()
                if doc.get("reminded_at") is None and doc.get("remind_at")
                else None
            )
            await self.store.timers.update_one(
                {"_id": doc["_id"], "state": "running", "generation": doc["generation"]},
                {
                    "$set": {
                        "state": TimerState.paused.value,
                        "paused_at": now,
                        "left_seconds": business.elapsed(now, doc["due_at"]).total_seconds(),
                        "remind_left_seconds": remind_left,
                        "next_check_at": None,
                    },
                    "$inc": {"generation": 1},
                },
            )

    async def resume(
        self, ticket_id: str, *, kinds: tuple[str, ...] = _TICKET_LEVEL, timer_id: str | None = None
    ) -> None:
        """Restart paused timers: due again after the working time they had left."""
        now = self.clock.now()
        query: Doc = {"ticket_id": ticket_id, "state": "paused", "kind": {"$in": list(kinds)}}
        if timer_id is not None:
            query = {"_id": timer_id, "ticket_id": ticket_id, "state": "paused"}
        async for doc in self.store.timers.find(query):
            business = self.policy.calendar(doc["calendar"])
            resumed = {**doc, "state": TimerState.running.value}
            resumed["due_at"] = business.add(now, dt.timedelta(seconds=doc["left_seconds"]))
            if doc.get("remind_left_seconds") is not None:
                resumed["remind_at"] = business.add(now, dt.timedelta(seconds=doc["remind_left_seconds"]))
            resumed["next_check_at"] = _next_check(resumed)
            updated = await update_by_id(
                self.store.timers,
                {"_id": doc["_id"], "state": "paused", "generation": doc["generation"]},
                {
                    "$set": {
                        "state": TimerState.running.value,
                        "due_at": resumed["due_at"],
                        "remind_at": resumed["remind_at"],
                        "next_check_at": resumed["next_check_at"],
                        "paused_at": None,
                    },
                    "$inc": {"generation": 1, "paused_seconds": (now - doc["paused_at"]).total_seconds()},
                },
            )
            if updated is not None and updated["next_check_at"] is not None:
                await self.scheduler.schedule(updated["_id"], updated["next_check_at"])

    async def stop(
        self,
        ticket_id: str,
        *,
        kinds: tuple[str, ...] | None = None,
        timer_id: str | None = None,
        outcome: TimerState = TimerState.met,
    ) -> None:
        """End running or paused timers: ``met`` (the target was reached) or ``cancelled``."""
        query: Doc = {"ticket_id": ticket_id, "state": {"$in": ["running", "paused"]}}
        if kinds is not None:
            query["kind"] = {"$in": list(kinds)}
        if timer_id is not None:
            query["_id"] = timer_id
        await self.store.timers.update_many(
            query,
            {
                "$set": {"state": outcome.value, "stopped_at": self.clock.now(), "next_check_at": None},
                "$inc": {"generation": 1},
            },
        )

    async def timers_of(self, ticket_id: str) -> list[SlaTimer]:
        cursor = self.store.timers.find({"ticket_id": ticket_id}, sort=[("started_at", 1), ("_id", 1)])
        return [timer_from_doc(doc) async for doc in cursor]

    # -------------------------------------------------------------------------------------- firing

    async def sweep(self, limit: int = 5000) -> int:
        """Check every timer that is due, or whose effects a dead worker left behind; returns how many."""
        now = self.clock.now()
        due = self.store.timers.find({"next_check_at": {"$lte": now}}, {"_id": 1}, limit=limit)
        stuck = self.store.timers.find(
            {"effects_pending": True, "lease_until": {"$lte": now}}, {"_id": 1}, limit=limit
        )
        ids = list(dict.fromkeys([*[doc["_id"] async for doc in due], *[doc["_id"] async for doc in stuck]]))
        for timer_id in ids:
            await self.check(timer_id)
        return len(ids)

    async def check(self, timer_id: str) -> None:
        """Do what is due on this timer, each thing exactly once however often this is called."""
        for _ in range(10):
            doc = await self.store.timers.find_one({"_id": timer_id})
            if doc is None:
                return
            now = self.clock.now()
            if doc.get("effects_pending"):
                claimed = await update_by_id(
                    self.store.timers,
                    {"_id": timer_id, "effects_pending": True, "lease_until": {"$lte": now}},
                    {"$set": {"lease_until": now + self.lease}},
                )
                if claimed is None:
                    return  # someone holds a live lease on these effects
                await self._run_effects(claimed, now)
                continue
            if doc["state"] != TimerState.running:
                return
            move = self._next_move(doc, now)
            if move is None:
                return
            guard, update = move
            updated = await update_by_id(self.store.timers, guard, update)
            if updated is None:
                continue  # somebody else moved it first; look again
            if updated["effects_pending"]:
                await self._run_effects(updated, now)
            if updated.get("next_check_at") is not None:
                await self.scheduler.schedule(timer_id, updated["next_check_at"])

    def _next_move(self, doc: Doc, now: dt.datetime) -> tuple[Doc, Doc] | None:
        """The guarded update that performs the next due action, or None if nothing is due."""
        guard = {
            "_id": doc["_id"],
            "state": TimerState.running.value,
            "generation": doc["generation"],
            "level": doc["level"],
            "reminded_at": doc.get("reminded_at"),
            "effects_pending": False,
        }
        after = dict(doc)
        effect: Doc | None = None
        due, chain, level = doc["due_at"], doc["chain"], doc["level"]
        if doc.get("reminded_at") is None and doc.get("remind_at") is not None and doc["remind_at"] <= now:
            after["reminded_at"] = now
            if now < due:  # a reminder after the breach would only be noise
                effect = {"key": f"{doc['_id']}:reminder", "kind": "reminder", "level": None, "to": None}
        elif (
            now >= due
            and level < len(chain)
            and due + dt.timedelta(minutes=chain[level]["after_minutes"]) <= now
        ):
            after["level"] = level + 1
            after["breached_at"] = doc.get("breached_at") or due
            step = chain[level]
            effect = {
                "key": f"{doc['_id']}:level{level + 1}",
                "kind": "escalation",
                "level": level + 1,
                "to": step["to"],
                "channel": step["channel"],
            }
        elif now >= due and doc.get("breached_at") is None:
            after["breached_at"] = due
            effect = {"key": f"{doc['_id']}:breach", "kind": "breach", "level": None, "to": None}
        else:
            return None
        after["next_check_at"] = _next_check(after)
        changes: Doc = {
            name: after[name]
            for name in ("reminded_at", "level", "breached_at", "next_check_at")
            if name in after
        }
        update: Doc = {"$set": changes}
        if effect is not None:
            effect["at"] = now
            changes.update({"effects": [effect], "effects_pending": True, "lease_until": now + self.lease})
            update["$push"] = {"fired": {"key": effect["key"], "kind": effect["kind"], "at": now}}
        return guard, update

    async def _run_effects(self, doc: Doc, now: dt.datetime) -> None:
        """Carry out the effects of a move, then release them; on failure they stay for a retry."""
        try:
            ticket = await self.store.tickets.find_one({"_id": ObjectId(doc["ticket_id"])})
            if ticket is not None:
                for effect in doc["effects"]:
                    await self._carry_out(effect, doc, ticket)
        except Exception as exc:
            retry_at = now + min(self.lease, dt.timedelta(seconds=10))
            log.warning(
                "sla.effects_failed", timer_id=doc["_id"], error=str(exc), retry_at=retry_at.isoformat()
            )
            await self.store.timers.update_one(
                {"_id": doc["_id"], "lease_until": doc["lease_until"]},
                {"$set": {"lease_until": retry_at, "effects_error": f"{type(exc).__name__}: {exc}"[:300]}},
            )
            await self.scheduler.schedule(doc["_id"], retry_at)
            return
        await self.store.timers.update_one(
            {"_id": doc["_id"], "lease_until": doc["lease_until"]},
            {"$set": {"effects": [], "effects_pending": False, "lease_until": None, "effects_error": None}},
        )

    def _department(self, department: str | None, language: Language) -> str:
        """A department as the person reads it: its name in their language, else its id."""
        if not department:
            return ""
        name = self.department_names.get(department)
        if name is None:
            return department
        return name.en if language == "en" else name.zh

    async def _carry_out(self, effect: Doc, timer: Doc, ticket: Doc) -> None:
        recipients, undeliverable = await self._recipients(effect, timer, ticket)
        template = {
            "reminder": "sla.reminder",
            "escalation": "collaboration.escalated" if timer["kind"] == "collaboration" else "sla.escalated",
            "breach": "sla.breached",
        }[effect["kind"]]
        notified = []
        for person, channel in recipients:
            language: Language = (person.get("languages") or ["zh"])[0]
            zh, en = _LABELS[timer["kind"]]
            params = {
                "number": ticket["number"],
                "what": en if language == "en" else zh,
                "label": timer["label"],
                "department": self._department(timer.get("department") or ticket.get("department"), language),
                "due": timer["due_at"]
                .astimezone(self.policy.calendar(timer["calendar"]).zone)
                .strftime("%m-%d %H:%M"),
                "level": effect.get("level") or "",
            }
            await self.notifier.send(
                Notification(
                    idempotency_key=f"{effect['key']}:{person['_id']}",
                    channel=cast(NotificationChannel, channel),
                    recipient=Recipient(
                        kind="staff",
                        user_id=person["_id"],
                        name=person.get("display_name") or person["username"],
                        address=person.get("phone") if channel == "sms" else None,
                    ),
                    template=template,
                    language=language,
                    text=self.messages.render(template, language, params),
                    ticket_id=str(ticket["_id"]),
                    customer_id=ticket["customer_id"],
                    params=params,
                )
            )
            notified.append({"user_id": person["_id"], "username": person["username"], "channel": channel})
        kind = {
            "reminder": "ticket.sla_reminded",
            "escalation": "ticket.escalated",
            "breach": "ticket.sla_breached",
        }
        body = {
            "timer_id": timer["_id"],
            "sla": timer["kind"],
            "label": timer["label"],
            "due_at": timer["due_at"],
            "level": effect.get("level"),
            "to": effect.get("to"),
            "notified": notified,
            "undeliverable": undeliverable,
        }
        await self.journal.write(
            [event(effect["key"], kind[effect["kind"]], ticket, _SYSTEM, effect["at"], body)]
        )

    async def _recipients(
        self, effect: Doc, timer: Doc, ticket: Doc
    ) -> tuple[list[tuple[Doc, str]], list[str]]:
        """Who hears about this effect, on which channel, and what could not be delivered (and why)."""
        department = timer.get("department") or ticket.get("department")
        assignee_id = ticket.get("assignee_id")
        if timer["kind"] == "step":
            step = (ticket.get("workflow") or {}).get("steps", {}).get(timer["label"], {})
            assignee_id = step.get("assignee_id")
        to, channel = effect.get("to"), effect.get("channel", "web")
        if effect["kind"] in ("reminder", "breach"):
            to = "assignee" if assignee_id else "department_lead"
        people: list[Doc] = []
        undeliverable: list[str] = []
        if to == "assignee":
            person = await self.store.staff_member(assignee_id) if assignee_id else None
            people = [person] if person else []
            if not people:
                undeliverable.append("no assignee")
        elif to == "department_lead":
            people = await self.store.leads_of(department) if department else []
            if not people:
                undeliverable.append(f"no lead for department {department}")
        elif to == "supervisor":
            people = await self.store.supervisors_of(department or "*")
            if not people:
                undeliverable.append(f"no supervisor for department {department}")
        result: list[tuple[Doc, str]] = []
        for person in people:
            if channel == "sms" and not person.get("phone"):
                undeliverable.append(f"{person['username']} has no phone; told in-app instead")
                result.append((person, "web"))
            else:
                result.append((person, channel))
        return result, undeliverable
