"""A test (setup, call and teardown together) still running after ``HANG_SECONDS`` has its event loop's
asyncio tasks written to stderr, once: a hang in an ``await`` shows no Python stack in a thread dump, so
without this a stuck CI run says nothing about where it waits. Loaded by ``tests/conftest.py``."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Iterator

import pytest

HANG_SECONDS = 300.0

_current: dict[str, object] = {}


def _dump_tasks(loop: asyncio.AbstractEventLoop, test: str) -> None:
    lines = [f"\n=== {test} has run {HANG_SECONDS:.0f} s; its asyncio tasks:"]
    for task in asyncio.all_tasks(loop):
        lines.append(f"task {task.get_name()}: {task!r}"[:400])
        lines.extend(
            f"    {f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}" for f in task.get_stack(limit=25)
        )
    print("\n".join(lines), file=sys.stderr, flush=True)


def _watch() -> None:
    while True:
        time.sleep(10)
        test, started = _current.get("test"), _current.get("started")
        if not isinstance(started, float) or time.monotonic() - started < HANG_SECONDS:
            continue
        _current["started"] = None  # once per test
        for thing in gc.get_objects():
            if isinstance(thing, asyncio.AbstractEventLoop) and thing.is_running():
                thing.call_soon_threadsafe(_dump_tasks, thing, str(test))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    _current.update(test=item.nodeid, started=time.monotonic())
    try:
        return (yield)
    finally:
        _current.update(test=None, started=None)


threading.Thread(target=_watch, name="hang-watch", daemon=True).start()
