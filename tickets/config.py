"""The tickets configuration: departments, intent rules, dispatch rules, SLA policy, workflow templates and
message texts from ``schemas/*.yaml``, plus a few options.

Options come from an optional ``<data_dir>/tickets.yaml`` (``timezone``, ``number_prefix``,
``sla_sweep_seconds``, ``effects_lease_seconds``, ``schemas_dir`` to use other YAML files, ``reopen_days``,
``progress_link_days``, ``webhook_max_attempts``, ``webhook_backoff_seconds``, ``webhook_timeout_seconds``,
``webhook_sweep_seconds``). Everything is
checked at load, across files too (a rule naming an unknown department or workflow), and a problem stops
the start with a message naming the file and the key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.settings import Settings
from tickets.dispatch import DispatchRules
from tickets.models import Text
from tickets.notify import Messages, MessageTexts
from tickets.rules import IntentRules
from tickets.sla import SlaPolicy
from tickets.workflow import TemplateInvalid, WorkflowTemplate, parse_template

SCHEMAS = Path(__file__).parent / "schemas"
REQUIRED_MESSAGES = (
    "sla.reminder",
    "sla.escalated",
    "sla.breached",
    "collaboration.escalated",
    "ticket.created",
    "ticket.step_started",
    "ticket.resolved",
    "ticket.reopened",
    "ticket.csat_request",
    "ticket.csat_thanks",
    "progress.link",
)


class TicketsConfigError(Exception):
    """The tickets configuration is invalid; the message names the file and the key."""


class Department(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: Text
    skills: list[str] = []


class _Departments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    departments: list[Department] = Field(min_length=1)


class TicketsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str | None = None
    number_prefix: str = Field(default="T", pattern=r"^[A-Z]{1,4}$")
    # DESIGN.md: an escalation at most 2 s late even across a worker restart, when only the sweep finds it.
    sla_sweep_seconds: float = Field(default=1.0, gt=0, le=3600)
    effects_lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    schemas_dir: Path | None = None
    # A customer's message reopens a resolved ticket for this long after the resolution.
    reopen_days: float = Field(default=7.0, gt=0, le=365)
    progress_link_days: float = Field(default=30.0, gt=0, le=365)
    # Outgoing webhooks: attempts before a delivery is marked failed, and the first retry's delay
    # (doubling each time, at most an hour).
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_backoff_seconds: float = Field(default=10.0, gt=0, le=3600)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_sweep_seconds: float = Field(default=15.0, gt=0, le=3600)


@dataclass(frozen=True)
class TicketsConfig:
    timezone: ZoneInfo
    number_prefix: str
    lease: dt.timedelta
    departments: dict[str, Department]
    intents: IntentRules
    dispatch: DispatchRules
    sla: SlaPolicy
    templates: dict[str, WorkflowTemplate]
    messages: Messages
    options: TicketsOptions = field(default_factory=TicketsOptions)

    @property
    def reopen_window(self) -> dt.timedelta:
        return dt.timedelta(days=self.options.reopen_days)


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TicketsConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise TicketsConfigError(f"{path}: not valid YAML: {exc}") from None


M = TypeVar("M", bound=BaseModel)


def _model(model: type[M], path: Path) -> M:
    try:
        return model.model_validate(_read(path))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise TicketsConfigError(f"{path}: {problems}") from None


def load_options(settings: Settings | None) -> TicketsOptions:
    if settings is None:
        return TicketsOptions()
    path = settings.data_dir / "tickets.yaml"
    return _model(TicketsOptions, path) if path.exists() else TicketsOptions()


def load_config(settings: Settings | None = None, *, options: TicketsOptions | None = None) -> TicketsConfig:
    """Read and cross-check the whole configuration."""
    options = options or load_options(settings)
    schemas = options.schemas_dir or SCHEMAS
    zone_name = options.timezone or (settings.timezone if settings else "Asia/Shanghai")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TicketsConfigError(f"timezone: unknown timezone {zone_name!r}") from None

    departments = {d.id: d for d in _model(_Departments, schemas / "departments.yaml").departments}
    templates: dict[str, WorkflowTemplate] = {}
    for path in sorted((schemas / "workflows").glob("*.yaml")):
        try:
            template = parse_template(_read(path), departments)
        except TemplateInvalid as exc:
            raise TicketsConfigError(f"{path}: {exc.detail}") from None
        templates[template.name] = template

    intents = _model(IntentRules, schemas / "intents.yaml")
    for intent, rule in intents.intents.items():
        where = f"{schemas / 'intents.yaml'}: intents.{intent}"
        if rule.department is not None and rule.department not in departments:
            raise TicketsConfigError(f"{where}.department: unknown department {rule.department!r}")
        if rule.workflow is not None and rule.workflow not in templates:
            raise TicketsConfigError(f"{where}.workflow: unknown workflow {rule.workflow!r}")

    dispatch = _model(DispatchRules, schemas / "dispatch.yaml")
    for index, dispatch_rule in enumerate([*dispatch.rules, dispatch.fallback]):
        if dispatch_rule.department not in departments:
            where = f"rules.{index}" if index < len(dispatch.rules) else "fallback"
            unknown = dispatch_rule.department
            raise TicketsConfigError(
                f"{schemas / 'dispatch.yaml'}: {where}.department: unknown department {unknown!r}"
            )

    sla = _model(SlaPolicy, schemas / "sla.yaml")
    messages = Messages(_model(MessageTexts, schemas / "messages.yaml").messages)
    missing = [key for key in REQUIRED_MESSAGES if key not in messages.templates]
    if missing:
        raise TicketsConfigError(f"{schemas / 'messages.yaml'}: messages: missing {', '.join(missing)}")
    return TicketsConfig(
        timezone=zone,
        number_prefix=options.number_prefix,
        lease=dt.timedelta(seconds=options.effects_lease_seconds),
        departments=departments,
        intents=intents,
        dispatch=dispatch,
        sla=sla,
        templates=templates,
        messages=messages,
        options=options,
    )


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """The Celery beat entries of the tickets package (the SLA safety-net sweep)."""
    options = load_options(settings)
    return {
        "tickets-sla-sweep": {"task": "tickets.tasks.sweep", "schedule": options.sla_sweep_seconds},
        "tickets-webhook-sweep": {
            "task": "tickets.tasks.sweep_webhooks",
            "schedule": options.webhook_sweep_seconds,
        },
    }
