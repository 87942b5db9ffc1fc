"""Small asyncio helpers shared by the long-running processes."""

from __future__ import annotations

import asyncio
from typing import Any

from core.log import get_logger

log = get_logger(__name__)

STOP_SECONDS = 5.0


async def stop_tasks(*tasks: asyncio.Future[Any] | None, within: float = STOP_SECONDS) -> None:
    """Cancel ``tasks`` and wait until they have ended, for at most ``within`` seconds.

    A cancellation can be swallowed: a library that catches ``CancelledError`` inside an await (the
    MongoDB driver has, when cancelled at the wrong moment) leaves a background loop running on, and
    awaiting it once cancelled then never returns — a web process that never stops. So a task that is still
    running after a moment is cancelled again, and one that outlives ``within`` is logged and left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pending = {task for task in tasks if task is not None and not task.done()}
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            names = sorted(
                task.get_name() if isinstance(task, asyncio.Task) else repr(task) for task in pending
            )
            log.error("tasks.did_not_stop", tasks=names)
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.5, left))
    for ended in tasks:
        if ended is not None and ended.done() and not ended.cancelled():
            ended.exception()  # retrieved: a task that had failed is not reported again when collected
