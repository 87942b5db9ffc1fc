"""The active revision of every flow, kept current in a running process (hot reload).

A process that runs calls asks ``registry.current("main")`` when a call arrives and keeps that revision
for the whole call. It learns about a new active version from the bus (``flow.activated``) within
milliseconds, and by polling MongoDB every ``poll_interval`` seconds in case a bus message was lost. A
stored version that does not validate here (say, after an upgrade made the checks stricter) is refused
with an error in the log, and the revision already loaded keeps serving. Office-hours overrides
(``flow.hours_override``) are kept current the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from core.bus import EventBus
from core.log import get_logger
from ivr_flows.errors import FlowInvalid, NoActiveFlow
from ivr_flows.models import HoursOverride
from ivr_flows.service import FLOW_ACTIVATED, FLOW_HOURS_OVERRIDE
from ivr_flows.store import FlowStore
from ivr_flows.validation import Revision, parse_flow

log = get_logger(__name__)

OnLoaded = Callable[[Revision], Awaitable[None]]


class FlowRegistry:
    def __init__(
        self,
        store: FlowStore,
        bus: EventBus | None,
        *,
        poll_interval: float = 30.0,
        on_loaded: OnLoaded | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.poll_interval = poll_interval
        self.on_loaded = on_loaded
        self._revisions: dict[str, Revision] = {}
        self._refused: dict[str, int] = {}  # name -> version refused, so polling does not log it forever
        self._overrides: dict[str, HoursOverride] = {}
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []

    def current(self, name: str) -> Revision:
        """The revision of ``name`` a new call should run; ``NoActiveFlow`` when none is loaded."""
        revision = self._revisions.get(name)
        if revision is None:
            raise NoActiveFlow(name)
        return revision

    def hours_override(self, name: str, now: dt.datetime) -> HoursOverride | None:
        """The office-hours override of ``name`` in force at ``now``, if any."""
        override = self._overrides.get(name)
        return override if override is not None and override.in_force(now) else None

    async def start(self) -> None:
        if self.bus is not None:
            self._unsubscribe = [
                self.bus.subscribe(FLOW_ACTIVATED, self._on_activated),
                self.bus.subscribe(FLOW_HOURS_OVERRIDE, self._on_activated),
            ]
        await self.refresh()
        self._poller = asyncio.create_task(self._poll(), name="flow-registry-poll")

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def refresh(self, name: str | None = None) -> None:
        """Load the active version of ``name`` (of every flow when None) if it is not the one loaded, and
        the office-hours overrides."""
        async with self._lock:
            self._overrides = await self.store.hours_overrides()
            active = await self.store.active_versions()
            for flow_name, version in active.items():
                if name is not None and flow_name != name:
                    continue
                loaded = self._revisions.get(flow_name)
                if (loaded is None or loaded.version != version) and self._refused.get(flow_name) != version:
                    await self._load(flow_name, version)

    async def _load(self, name: str, version: int) -> None:
        stored = await self.store.get(name, version)
        try:
            flow = parse_flow(stored.yaml, f"{name}.yaml")
        except FlowInvalid as exc:
            self._refused[name] = version
            kept = self._revisions.get(name)
            log.error(
                "flow.refused",
                name=name,
                version=version,
                errors=[str(error) for error in exc.errors],
                serving=kept.version if kept else None,
            )
            return
        revision = Revision(name, version, flow)
        if self.on_loaded is not None:
            try:
                await self.on_loaded(revision)
            except Exception:
                log.exception("flow.prepare_failed", name=name, version=version)
        self._revisions[name] = revision
        self._refused.pop(name, None)
        log.info("flow.loaded", name=name, version=version)

    async def _on_activated(self, event: dict[str, Any]) -> None:
        name = event.get("name")
        if isinstance(name, str):
            await self.refresh(name)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh()
            except Exception as exc:  # MongoDB away for a while: keep serving what is loaded
                log.warning("flow.poll_failed", error=str(exc))
