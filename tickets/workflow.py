"""Workflow templates across departments and the engine that runs them on a ticket.

A template (YAML, ``schemas/workflows/``) is a graph of steps. Each step belongs to a department, may have
its own SLA and skills, and lists ``next`` branches — the first whose ``when`` matches the facts (paid,
stock, amount…) is taken, and a branch naming several steps starts them in parallel. A ``join`` step starts
once no running step can still reach it, so it waits for exactly the branches that were taken. ``approval``
steps are approved or rejected (``on_reject`` goes back for rework, or the workflow ends rejected); a step
may hand the work back to an earlier one (``hand_back_to``), and gets it back when that one is done.

Templates are checked before use; every problem is reported with the step it concerns: unknown departments
or steps, cycles, unreachable steps, joins with a single way in, conditions on undeclared facts.

The engine is pure: it changes a ``WorkflowRun`` and says what happened; the ticket service does the I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from core.errors import Conflict, Invalid, NotFound
from tickets.models import StepRun, StepState, Text, WorkflowRun, WorkflowStatus
from tickets.sla import Duration

_OPERATORS = {"in", "not_in", "not", "gt", "gte", "lt", "lte", "exists"}
_STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Branch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: dict[str, Any] = Field(default={}, description="Facts to match; empty: always (put it last)")
    to: Annotated[list[str], BeforeValidator(_as_list)] = Field(min_length=1)


class StepDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Text
    department: str
    kind: Literal["task", "approval"] = "task"
    skills: list[str] = []
    sla: Duration | None = Field(default=None, description="Time this step may take (step calendar)")
    next: list[Branch] = []
    join: bool = False
    approver: Literal["department_lead", "supervisor"] | None = None
    on_reject: str | None = None
    hand_back_to: list[str] = []
    notify_customer: bool = True


class WorkflowTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    title: Text
    version: int = Field(default=1, ge=1)
    description: str = ""
    facts: dict[str, str] = Field(default={}, description="Facts the conditions may use, with their meaning")
    start: str
    steps: dict[str, StepDef] = Field(min_length=1)


class TemplateProblem(BaseModel):
    step: str | None
    message: str


class TemplateInvalid(Invalid):
    """A template was refused; ``problems`` names each problem's step."""

    def __init__(self, name: str, problems: list[TemplateProblem]) -> None:
        detail = f"workflow template {name!r} is invalid: " + "; ".join(
            f"step {p.step!r}: {p.message}" if p.step else p.message for p in problems
        )
        super().__init__(
            detail, code="invalid_template", problems=[problem.model_dump() for problem in problems]
        )
        self.problems = problems


def parse_template(data: Any, departments: Collection[str]) -> WorkflowTemplate:
    """A checked template, or ``TemplateInvalid`` listing every problem found."""
    name = str(data.get("name", "?")) if isinstance(data, dict) else "?"
    try:
        template = WorkflowTemplate.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            loc = [str(part) for part in error["loc"]]
            step = loc[1] if len(loc) > 1 and loc[0] == "steps" else None
            where = ".".join(loc[2:] if step else loc) or "template"
            problems.append(TemplateProblem(step=step, message=f"{where}: {error['msg']}"))
        raise TemplateInvalid(name, problems) from None
    problems = check_template(template, departments)
    if problems:
        raise TemplateInvalid(template.name, problems)
    return template


def check_template(template: WorkflowTemplate, departments: Collection[str]) -> list[TemplateProblem]:
    problems: list[TemplateProblem] = []
    steps = template.steps

    def problem(step: str | None, message: str) -> None:
        problems.append(TemplateProblem(step=step, message=message))

    if template.start not in steps:
        problem(None, f"start: unknown step {template.start!r} (steps: {', '.join(steps)})")
    for step_id, step in steps.items():
        if not _STEP_ID.match(step_id):
            problem(step_id, "step ids are lower_snake_case")
        if step.department not in departments:
            problem(
                step_id, f"unknown department {step.department!r} (known: {', '.join(sorted(departments))})"
            )
        for number, branch in enumerate(step.next, 1):
            for target in branch.to:
                if target not in steps:
                    problem(step_id, f"next branch {number} goes to unknown step {target!r}")
            if not branch.when and number < len(step.next):
                problem(
                    step_id, f"next branch {number} has no condition, so the branches after it never apply"
                )
            for fact, expected in branch.when.items():
                if fact not in template.facts:
                    problem(
                        step_id,
                        f"next branch {number} tests undeclared fact {fact!r}"
                        f" (declared: {', '.join(template.facts) or 'none'})",
                    )
                if isinstance(expected, dict):
                    unknown = sorted(set(expected) - _OPERATORS)
                    if unknown:
                        problem(step_id, f"next branch {number}: unknown operator {', '.join(unknown)}")
        if step.kind == "approval" and step.approver is None:
            problem(step_id, "an approval step needs an approver (department_lead or supervisor)")
        if step.kind == "task" and (step.approver is not None or step.on_reject is not None):
            problem(step_id, "approver and on_reject apply to approval steps only")
        if step.on_reject is not None and step.on_reject not in steps:
            problem(step_id, f"on_reject goes to unknown step {step.on_reject!r}")
        for target in step.hand_back_to:
            if target not in steps:
                problem(step_id, f"hand_back_to names unknown step {target!r}")
    if problems:
        return problems  # the graph checks below need valid references

    successors = _successors(template)
    cycle = _find_cycle(successors)
    if cycle:
        problem(cycle[0], "cycle: " + " → ".join(cycle))
        return problems
    reachable = _reachable(template, successors)
    for step_id in steps:
        if step_id not in reachable:
            problem(step_id, f"unreachable from the start step {template.start!r}")
    predecessors = _predecessors(successors)
    descendants = {step_id: _descendants(step_id, successors) for step_id in steps}
    for step_id, step in steps.items():
        if step.join and len(predecessors[step_id]) < 2:
            ways = ", ".join(sorted(predecessors[step_id])) or "nothing"
            problem(step_id, f"is a join but only {ways} leads to it")
        for target in step.hand_back_to:
            if step_id not in descendants[target] or target == step_id:
                problem(step_id, f"hands back to {target!r}, which does not come before it")
    return problems


def _successors(template: WorkflowTemplate) -> dict[str, list[str]]:
    return {
        step_id: list(dict.fromkeys(target for branch in step.next for target in branch.to))
        for step_id, step in template.steps.items()
    }


def _predecessors(successors: dict[str, list[str]]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {step_id: set() for step_id in successors}
    for step_id, targets in successors.items():
        for target in targets:
            result[target].add(step_id)
    return result


def _descendants(start: str, successors: dict[str, list[str]]) -> set[str]:
    """Steps reachable from ``start`` along ``next`` (``start`` itself only through a cycle)."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        for target in successors[stack.pop()]:
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _reachable(template: WorkflowTemplate, successors: dict[str, list[str]]) -> set[str]:
    """Steps a run can get to from the start, along ``next`` and rejection paths."""
    seen = {template.start}
    stack = [template.start]
    while stack:
        current = stack.pop()
        rework = template.steps[current].on_reject
        for target in [*successors[current], *([rework] if rework else [])]:
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _find_cycle(successors: dict[str, list[str]]) -> list[str] | None:
    """A cycle along ``next`` as a path that returns to its first step, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(step_id: str) -> list[str] | None:
        state[step_id] = 1
        path.append(step_id)
        for target in successors[step_id]:
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[step_id] = 2
        return None

    for step_id in successors:
        if step_id not in state:
            found = visit(step_id)
            if found:
                return found
    return None


def matches(when: dict[str, Any], facts: dict[str, Any]) -> bool:
    """Whether ``facts`` satisfy every condition of ``when``."""
    for name, expected in when.items():
        present = name in facts
        value = facts.get(name)
        if not isinstance(expected, dict):
            if not present or value != expected:
                return False
            continue
        for operator, argument in expected.items():
            if operator == "exists":
                ok = present == bool(argument)
            elif not present:
                ok = operator in ("not", "not_in")
            elif operator == "in":
                ok = value in argument
            elif operator == "not_in":
                ok = value not in argument
            elif operator == "not":
                ok = value != argument
            else:
                try:
                    ok = {
                        "gt": value > argument,
                        "gte": value >= argument,
                        "lt": value < argument,
                        "lte": value <= argument,
                    }[operator]
                except TypeError:
                    ok = False
            if not ok:
                return False
    return True


# --------------------------------------------------------------------------------------------- engine

_LIVE = (StepState.active, StepState.waiting, StepState.handed_back)


@dataclass
class Happening:
    """Something the engine did, for the service to record and act on."""

    kind: str  # ticket.step_started, ticket.step_completed, … ticket.workflow_completed
    step: str | None
    body: dict[str, Any] = field(default_factory=dict)


class WorkflowEngine:
    def __init__(self, template: WorkflowTemplate) -> None:
        self.template = template
        successors = _successors(template)
        self.descendants = {step_id: _descendants(step_id, successors) for step_id in template.steps}

    def start(self, facts: dict[str, Any], now: dt.datetime) -> tuple[WorkflowRun, list[Happening]]:
        template = self.template
        run = WorkflowRun(
            template=template.name,
            version=template.version,
            title=template.title,
            status=WorkflowStatus.running,
            facts=dict(facts),
            steps={
                step_id: StepRun(
                    step=step_id,
                    title=step.title,
                    department=step.department,
                    kind=step.kind,
                    state=StepState.pending,
                )
                for step_id, step in template.steps.items()
            },
            started_at=now,
        )
        happenings = [Happening("ticket.workflow_started", None, {"template": template.name, "facts": facts})]
        self._activate(run, template.start, None, now, happenings)
        return run, happenings

    def complete(
        self, run: WorkflowRun, step_id: str, *, facts: dict[str, Any], note: str, now: dt.datetime
    ) -> list[Happening]:
        step = self._live_step(run, step_id)
        if step.kind == "approval":
            raise Conflict(f"step {step_id!r} is an approval: approve or reject it", code="step_is_approval")
        run.facts.update(facts)
        step.state, step.completed_at, step.note = StepState.done, now, note
        happenings = [Happening("ticket.step_completed", step_id, {"note": note, "facts": facts})]
        self._move_on(run, step_id, now, happenings)
        return happenings

    def decide(
        self, run: WorkflowRun, step_id: str, *, approved: bool, note: str, now: dt.datetime
    ) -> list[Happening]:
        step = self._live_step(run, step_id)
        if step.kind != "approval":
            raise Conflict(f"step {step_id!r} is a task, not an approval", code="step_not_approval")
        step.completed_at, step.note = now, note
        if approved:
            step.state = StepState.done
            happenings = [Happening("ticket.step_approved", step_id, {"note": note})]
            self._move_on(run, step_id, now, happenings)
            return happenings
        step.state = StepState.rejected
        happenings = [Happening("ticket.step_rejected", step_id, {"note": note})]
        rework = self.template.steps[step_id].on_reject
        if rework is not None:
            self._activate(run, rework, None, now, happenings)
        else:
            run.status, run.completed_at = WorkflowStatus.rejected, now
            for other in run.steps.values():
                if other.state in _LIVE:
                    other.state = StepState.cancelled
                    happenings.append(Happening("ticket.step_cancelled", other.step))
                elif other.state == StepState.pending:
                    other.state = StepState.skipped
            happenings.append(Happening("ticket.workflow_rejected", None, {"at_step": step_id}))
        return happenings

    def hand_back(
        self, run: WorkflowRun, step_id: str, *, to: str, note: str, now: dt.datetime
    ) -> list[Happening]:
        step = self._live_step(run, step_id)
        allowed = self.template.steps[step_id].hand_back_to
        if to not in allowed:
            raise Conflict(
                f"step {step_id!r} may hand back to {', '.join(allowed) or 'no step'}, not {to!r}",
                code="hand_back_not_allowed",
            )
        step.state, step.note = StepState.handed_back, note
        happenings = [Happening("ticket.step_handed_back", step_id, {"to": to, "note": note})]
        target = run.steps[to]
        target.state, target.round, target.return_to = StepState.active, target.round + 1, step_id
        target.started_at, target.completed_at = now, None
        happenings.append(Happening("ticket.step_started", to, {"handed_back_from": step_id}))
        return happenings

    # ---------------------------------------------------------------------------------- internals

    def _live_step(self, run: WorkflowRun, step_id: str) -> StepRun:
        if run.status != WorkflowStatus.running:
            raise Conflict(f"the workflow is {run.status.value}", code="workflow_not_running")
        step = run.steps.get(step_id)
        if step is None:
            raise NotFound(f"no step {step_id!r} in workflow {run.template!r}", code="step_not_found")
        if step.state != StepState.active:
            raise Conflict(f"step {step_id!r} is {step.state.value}, not active", code="step_not_active")
        return step

    def _move_on(self, run: WorkflowRun, step_id: str, now: dt.datetime, happenings: list[Happening]) -> None:
        step = run.steps[step_id]
        if step.return_to is not None:
            back = run.steps[step.return_to]
            step.return_to = None
            back.state = StepState.active
            happenings.append(Happening("ticket.step_resumed", back.step, {"after": step_id}))
            return
        for branch in self.template.steps[step_id].next:
            if matches(branch.when, run.facts):
                for target in branch.to:
                    self._activate(run, target, step_id, now, happenings)
                break
        self._release_joins(run, now, happenings)
        if not any(other.state in _LIVE for other in run.steps.values()):
            run.status, run.completed_at = WorkflowStatus.completed, now
            for other in run.steps.values():
                if other.state == StepState.pending:
                    other.state = StepState.skipped
            happenings.append(Happening("ticket.workflow_completed", None, {}))

    def _activate(
        self,
        run: WorkflowRun,
        step_id: str,
        source: str | None,
        now: dt.datetime,
        happenings: list[Happening],
    ) -> None:
        step = run.steps[step_id]
        again = step.state in (StepState.done, StepState.rejected, StepState.cancelled)
        if self.template.steps[step_id].join and source is not None:
            if again:
                step.round, step.arrived_from = step.round + 1, []
            if source not in step.arrived_from:
                step.arrived_from.append(source)
            step.state = StepState.waiting
            return
        if again:
            step.round += 1
        step.state, step.started_at, step.completed_at, step.note = StepState.active, now, None, ""
        step.assignee_id = step.assignee_name = None
        step.dispatch = None
        happenings.append(Happening("ticket.step_started", step_id, {}))

    def _release_joins(self, run: WorkflowRun, now: dt.datetime, happenings: list[Happening]) -> None:
        """Start each waiting join that no running step can reach any more."""
        released = True
        while released:
            released = False
            for step in run.steps.values():
                if step.state != StepState.waiting:
                    continue
                live = [
                    other.step
                    for other in run.steps.values()
                    if other.step != step.step and other.state in _LIVE
                ]
                if any(step.step in self.descendants[other] for other in live):
                    continue
                step.state, step.started_at, step.completed_at = StepState.active, now, None
                happenings.append(Happening("ticket.step_started", step.step, {"joined": step.arrived_from}))
                released = True
