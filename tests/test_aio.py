"""Stopping background loops: a cancellation swallowed by a library must not keep a process from stopping."""

from __future__ import annotations

import asyncio

from core.aio import stop_tasks


async def test_a_loop_that_swallowed_its_cancellation_is_cancelled_again_and_stops() -> None:
    """As a background loop whose database call caught the first ``CancelledError`` (seen with the MongoDB
    driver: the web process then never finished stopping)."""
    rounds = 0

    async def swallowing_call() -> None:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass  # the library's bug: the cancellation is lost

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            await swallowing_call() if rounds == 1 else await asyncio.sleep(0.05)

    task = asyncio.create_task(loop(), name="retries")
    await asyncio.sleep(0.01)  # inside the call that swallows
    await asyncio.wait_for(stop_tasks(task, within=3.0), 5.0)
    assert task.cancelled() and rounds >= 2


async def test_a_task_that_never_stops_is_left_after_the_deadline_instead_of_hanging() -> None:
    give_up = False

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                if give_up:
                    raise

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await stop_tasks(task, None, within=0.6)
    assert 0.5 <= loop.time() - started < 2.0 and not task.done()
    give_up = True
    await stop_tasks(task)
    assert task.cancelled()


async def test_a_task_that_had_already_failed_is_stopped_without_a_never_retrieved_report() -> None:
    """A relay that died of its own error before the call ended: stopping it is quiet, not a "Task exception
    was never retrieved" in the log when it is collected."""
    import gc

    reported: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    async def relay() -> None:
        raise ConnectionError("the stream closed")

    failed = asyncio.create_task(relay())
    running = asyncio.create_task(asyncio.sleep(30))
    await asyncio.sleep(0.01)
    await stop_tasks(failed, running, None)
    assert failed.done() and running.cancelled()
    del failed, running
    gc.collect()
    assert reported == []
