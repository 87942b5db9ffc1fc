"""Who gets a ticket (or a workflow step), and why.

A dispatch rule (``schemas/dispatch.yaml``) picks the department and the skills from what the ticket is
about; then everyone in that department is checked — skills, language, region, on shift now, open load
against their limit — and the pick is made among the eligible: the least loaded (ties broken in turn) or
strictly in turn. The turn is an atomic counter in MongoDB, so every web node and worker shares it. The
decision keeps who was eligible, who was not and why, so a supervisor can read why a ticket went where it
went.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from tickets.clock import Clock
from tickets.models import DispatchDecision, Excluded, Shift
from tickets.store import TicketStore

Doc = dict[str, Any]
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class RuleMatch(BaseModel):
    """All given lists must contain the ticket's value; an empty match matches everything."""

    model_config = ConfigDict(extra="forbid")

    category: list[str] = []
    intent: list[str] = []
    channel: list[str] = []
    language: list[str] = []
    priority: list[str] = []
    region: list[str] = []


class DispatchRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    when: RuleMatch = RuleMatch()
    department: str
    skills: list[str] = []
    match_language: bool = True
    match_region: bool = False
    strategy: Literal["least_loaded", "round_robin"] = "least_loaded"


class DispatchRules(BaseModel):
    """Ordered: the first rule that matches decides; ``fallback`` when none does."""

    model_config = ConfigDict(extra="forbid")

    rules: list[DispatchRule]
    fallback: DispatchRule


@dataclass(frozen=True)
class Case:
    """What dispatch looks at. ``department`` set means the department is already decided (a workflow
    step, or a supervisor's choice); ``skills`` are added to the rule's; ``language`` None: anyone (internal
    work such as a workflow step)."""

    category: str = ""
    intent: str | None = None
    channel: str = ""
    language: str | None = None
    priority: str = "normal"
    region: str | None = None
    department: str | None = None
    skills: tuple[str, ...] = ()
    exclude: frozenset[str] = field(default_factory=frozenset)


def on_shift(shifts: list[Shift], timezone: str, at: dt.datetime) -> bool:
    """True when ``at`` falls in one of the weekly shifts (an end before the start runs past midnight)."""
    if not shifts:
        return True
    local = at.astimezone(ZoneInfo(timezone))
    minute = local.hour * 60 + local.minute
    today = _WEEKDAYS[local.weekday()]
    yesterday = _WEEKDAYS[(local.weekday() - 1) % 7]
    for shift in shifts:
        start = _minutes(shift.start)
        end = _minutes(shift.end)
        if end > start:
            if today in shift.days and start <= minute < end:
                return True
        elif (today in shift.days and minute >= start) or (yesterday in shift.days and minute < end):
            return True
    return False


def _minutes(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _matches(rule: DispatchRule, case: Case) -> bool:
    when = rule.when
    checks = [
        (when.category, case.category),
        (when.intent, case.intent),
        (when.channel, case.channel),
        (when.language, case.language),
        (when.priority, case.priority),
        (when.region, case.region),
    ]
    return all(not allowed or value in allowed for allowed, value in checks)


class Dispatcher:
    def __init__(self, store: TicketStore, rules: DispatchRules, clock: Clock) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock

    def rule_for(self, case: Case) -> DispatchRule:
        if case.department is not None:
            return DispatchRule(name="department", department=case.department, skills=list(case.skills))
        for rule in self.rules.rules:
            if _matches(rule, case):
                return rule
        return self.rules.fallback

    async def decide(self, case: Case) -> DispatchDecision:
        """Pick an assignee for ``case`` and say why (``assignee_id`` None when nobody is eligible)."""
        now = self.clock.now()
        rule = self.rule_for(case)
        skills = sorted(set(rule.skills) | set(case.skills))
        members = await self.store.staff_in(rule.department)
        excluded: list[Excluded] = []
        candidates: list[Doc] = []
        for member in members:
            why = self._unfit(member, rule, case, skills, now)
            if why:
                excluded.append(Excluded(user_id=member["_id"], username=member["username"], why=why))
            else:
                candidates.append(member)
        load = await self.store.open_load([member["_id"] for member in candidates])
        eligible = []
        for member in candidates:
            if load[member["_id"]] >= member.get("max_open", 20):
                why = f"at capacity ({load[member['_id']]}/{member.get('max_open', 20)} open)"
                excluded.append(Excluded(user_id=member["_id"], username=member["username"], why=why))
            else:
                eligible.append(member)
        head = f"rule {rule.name!r} → {rule.department}"
        if not eligible:
            reasons = (
                "; ".join(f"{item.username}: {item.why}" for item in excluded) or "nobody in the department"
            )
            return DispatchDecision(
                rule=rule.name,
                department=rule.department,
                assignee_id=None,
                assignee_name=None,
                strategy=rule.strategy,
                excluded=excluded,
                summary=f"{head}; nobody eligible ({reasons}); waiting in the department queue",
                at=now,
            )
        if rule.strategy == "least_loaded":
            fewest = min(load[member["_id"]] for member in eligible)
            pool = [member for member in eligible if load[member["_id"]] == fewest]
            how = f"least loaded ({fewest} open)"
        else:
            pool = eligible
            how = "next in turn"
        turn = await self.store.rotate(f"{rule.department}:{rule.name}") if len(pool) > 1 else 0
        pick = pool[turn % len(pool)]
        if rule.strategy == "least_loaded" and len(pool) > 1:
            how += f", in turn among {len(pool)} tied"
        name = pick.get("display_name") or pick["username"]
        summary = f"{head}; {name} — {how} among {len(eligible)} eligible"
        if excluded:
            summary += "; not eligible: " + "; ".join(f"{item.username} ({item.why})" for item in excluded)
        return DispatchDecision(
            rule=rule.name,
            department=rule.department,
            assignee_id=pick["_id"],
            assignee_name=name,
            strategy=rule.strategy,
            eligible=[member["username"] for member in eligible],
            excluded=excluded,
            summary=summary,
            at=now,
        )

    def _unfit(self, member: Doc, rule: DispatchRule, case: Case, skills: list[str], now: dt.datetime) -> str:
        if member["_id"] in case.exclude:
            return "handed this ticket back"
        missing = [skill for skill in skills if skill not in member.get("skills", [])]
        if missing:
            return f"lacks skill {', '.join(missing)}"
        if rule.match_language and case.language and case.language not in member.get("languages", []):
            return f"does not speak {case.language}"
        if rule.match_region and case.region and case.region not in member.get("regions", []):
            return f"does not cover region {case.region}"
        shifts = [Shift(**shift) for shift in member.get("shifts", [])]
        if not on_shift(shifts, member.get("timezone", "Asia/Shanghai"), now):
            return "off shift"
        return ""
