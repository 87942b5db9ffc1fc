"""Which handler takes a call: a ``CallRouter`` chosen by the ``telephony_router`` setting.

The setting names a factory ``module:function`` taking the settings and returning a ``CallRouter``; the
default is the IVR (``ivr_flows.line:router``: the flows in MongoDB answer calls); ``telephony.demo:router``
is a one-key demo line. A router that needs the worker's connections (MongoDB, the bus) to work is a
``ManagedRouter``: the worker starts it with ``RouterServices`` before it takes the first call and stops
it after the last one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from core.bus import EventBus
from core.db import Database
from core.settings import Settings
from omnichannel import Omnichannel
from telephony.api import CallHandler, CallRouter

RouterFactory = Callable[[Settings], CallRouter]


@dataclass(frozen=True)
class RouterServices:
    """What a telephony worker shares with its router."""

    settings: Settings
    db: Database
    bus: EventBus
    omni: Omnichannel
    recordings_dir: Path


@runtime_checkable
class ManagedRouter(Protocol):
    def route(self, called: str) -> CallHandler | None: ...

    async def start(self, services: RouterServices) -> None:
        """Connect what handling calls needs; calls are routed only after this returned."""

    async def stop(self) -> None: ...


class StaticRouter:
    """Numbers (or SIP users) mapped to handlers; anything else is refused with 404."""

    def __init__(self, handlers: Mapping[str, CallHandler]) -> None:
        self.handlers = dict(handlers)

    def route(self, called: str) -> CallHandler | None:
        return self.handlers.get(called) or self.handlers.get(called.lstrip("+"))


def load_router(settings: Settings) -> CallRouter:
    module_name, _, attribute = settings.telephony_router.partition(":")
    factory: RouterFactory = getattr(importlib.import_module(module_name), attribute or "router")
    return factory(settings)
