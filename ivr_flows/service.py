"""Managing flows: validate, store a new version, activate, roll back, override office hours — and
announce activations and overrides.

Only valid flows are stored, and a version is validated again before it is activated, so what a running
process loads has passed the checks (it checks once more itself; see ``FlowRegistry``). Activation is
written to MongoDB first and announced on the bus (``flow.activated``) second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
import uuid
from collections.abc import Callable, Collection
from pathlib import Path

from core.bus import EventBus
from core.db import Database, utcnow
from core.errors import Conflict, Invalid, NotFound
from core.log import get_logger
from ivr_flows.errors import FlowError
from ivr_flows.models import FlowSummary, FlowVersion, HoursOverride, OverrideState
from ivr_flows.store import FlowStore
from ivr_flows.validation import Flow, check_flow, parse_flow

log = get_logger(__name__)

FLOW_ACTIVATED = "flow.activated"
FLOW_HOURS_OVERRIDE = "flow.hours_override"  # an override was set or cleared: {"name": flow}
MAX_OVERRIDE = dt.timedelta(days=31)  # longer closures belong in the flow's calendar (holidays)
FLOW_NAME = r"^[a-z][a-z0-9_-]{0,63}$"
SHIPPED_DIR = Path(__file__).parent / "flows"

IntentNames = Callable[[], Collection[str]]


def nlu_intents() -> Collection[str]:
    """The intents ``asr.nlu`` knows (loading it costs about two seconds: done once, off the event loop)."""
    from asr.nlu import load_config

    return frozenset(load_config().intents)


class FlowService:
    def __init__(
        self, store: FlowStore, bus: EventBus | None, *, known_intents: IntentNames | None = None
    ) -> None:
        self.store = store
        self.bus = bus
        self._known_intents = functools.cache(known_intents) if known_intents is not None else None

    async def check(self, name: str, yaml: str) -> tuple[Flow | None, list[FlowError]]:
        """Validate without storing."""
        _check_name(name)
        return check_flow(yaml, f"{name}.yaml", known_intents=await self._intents())

    async def upload(self, name: str, yaml: str, author: str, *, activate: bool = False) -> FlowVersion:
        """Store ``yaml`` as the next version of ``name``; ``FlowInvalid`` (nothing stored) when invalid."""
        flow = await self._parse(name, yaml)
        version = await self.store.add(name, yaml, author, flow.checksum)
        log.info("flow.uploaded", name=name, version=version.version, author=author)
        if activate:
            return await self.activate(name, version.version, author)
        return version

    async def activate(self, name: str, version: int, by: str) -> FlowVersion:
        stored = await self.store.get(name, version)
        await self._parse(name, stored.yaml)
        activated = await self.store.activate(name, version, by)
        log.info("flow.activated", name=name, version=version, by=by)
        await self._announce(FLOW_ACTIVATED, name, version=version)
        return activated

    async def _announce(self, kind: str, name: str, **more: object) -> None:
        if self.bus is not None:
            await self.bus.publish(kind, {"id": uuid.uuid4().hex, "ts": utcnow(), "name": name, **more})

    async def _existing(self, name: str) -> None:
        _check_name(name)
        if await self.store.active(name) is None:
            raise NotFound(f"no active flow {name!r}", code="flow_not_found")

    async def rollback(self, name: str, by: str) -> FlowVersion:
        """Activate the version that was active before the current one."""
        current = await self.store.active(name)
        if current is None or current.previous_active is None:
            raise Conflict(
                f"flow {name!r} has no earlier active version to go back to", code="flow_no_rollback"
            )
        return await self.activate(name, current.previous_active, by)

    async def set_hours_override(
        self, name: str, state: OverrideState, until: dt.datetime, reason: str, by: str
    ) -> HoursOverride:
        """From now until ``until`` every ``business_hours`` node of ``name`` answers ``state``."""
        now = utcnow()
        if until.tzinfo is None:
            raise Invalid("until needs a timezone (e.g. 2026-11-26T23:00+08:00)", code="override_naive_time")
        if not now < until <= now + MAX_OVERRIDE:
            raise Invalid(
                f"until must be in the future and at most {MAX_OVERRIDE.days} days away",
                code="override_bad_until",
            )
        await self._existing(name)
        override = await self.store.set_hours_override(
            HoursOverride(flow=name, state=state, until=until, reason=reason, set_by=by, set_at=now)
        )
        log.info("flow.hours_override", name=name, state=state, until=until.isoformat(), by=by)
        await self._announce(FLOW_HOURS_OVERRIDE, name)
        return override

    async def clear_hours_override(self, name: str, by: str) -> None:
        await self._existing(name)
        if not await self.store.clear_hours_override(name):
            raise NotFound(f"flow {name!r} has no office-hours override", code="override_not_found")
        log.info("flow.hours_override_cleared", name=name, by=by)
        await self._announce(FLOW_HOURS_OVERRIDE, name)

    async def hours_override(self, name: str) -> HoursOverride:
        """``name``'s override in force now; ``NotFound`` when there is none (or it has run out)."""
        await self._existing(name)
        override = await self.store.hours_override(name)
        if override is None or not override.in_force(utcnow()):
            raise NotFound(f"flow {name!r} has no office-hours override", code="override_not_found")
        return override

    async def summaries(self) -> list[FlowSummary]:
        return await self.store.summaries()

    async def versions(self, name: str) -> list[FlowVersion]:
        return await self.store.versions(name)

    async def get(self, name: str, version: int) -> FlowVersion:
        return await self.store.get(name, version)

    async def install_shipped(self, name: str = "main", author: str = "system") -> FlowVersion | None:
        """Store and activate the shipped ``flows/<name>.yaml`` as version 1 when ``name`` has no version
        yet (first start of a new deployment). Safe when several processes start at once."""
        if await self.store.versions(name):
            return None
        yaml = (SHIPPED_DIR / f"{name}.yaml").read_text(encoding="utf-8")
        flow = await self._parse(name, yaml)
        try:
            await self.store.add(name, yaml, author, flow.checksum, version=1)
        except Conflict:
            return None  # another process installed it first
        return await self.activate(name, 1, author)

    async def _parse(self, name: str, yaml: str) -> Flow:
        _check_name(name)
        return parse_flow(yaml, f"{name}.yaml", known_intents=await self._intents())

    async def _intents(self) -> Collection[str] | None:
        return await asyncio.to_thread(self._known_intents) if self._known_intents else None


def _check_name(name: str) -> None:
    if not re.match(FLOW_NAME, name):
        raise Invalid(
            f"{name!r} is not a flow name (a-z, 0-9, _ and -, starting with a letter)", code="bad_flow_name"
        )


def create_flow_service(db: Database, bus: EventBus | None) -> FlowService:
    return FlowService(FlowStore(db), bus, known_intents=nlu_intents)
