"""Which handler takes a call: a ``CallRouter`` chosen by the ``telephony_router`` setting.

The setting names a factory ``module:function`` taking the settings and returning a ``CallRouter``; the
default is the built-in demo line (``telephony.demo:router``). The IVR engine plugs in the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

from core.settings import Settings
from telephony.api import CallHandler, CallRouter

RouterFactory = Callable[[Settings], CallRouter]


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
