"""Flow versions in MongoDB and hot reload: a new active version reaches running processes through the
bus (or polling); calls in progress keep theirs; an invalid flow never replaces a serving one. And the
timeline sink: a call's steps on the caller's customer timeline."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from core.bus import EventBus
from core.db import Database, utcnow
from core.embedded import EmbeddedServer
from core.errors import Conflict
from ivr_flows import (
    FakeCall,
    FlowInvalid,
    FlowRegistry,
    FlowService,
    FlowStore,
    InMemoryQueueGateway,
    NoActiveFlow,
)
from omnichannel import Omnichannel
from tests.ivr.conftest import MakeExecutor

V1 = """\
start: menu
nodes:
  menu:
    type: menu
    prompt: 售后服务请按1
    choices: {1: queue}
    timeout: 30
    on_failure: queue
  queue:
    type: queue
    queue: after_sales
    overflow: bye
  bye:
    type: hangup
"""
V2 = V1.replace("queue: after_sales", "queue: billing")


@pytest.fixture
async def bus(redis_server: EmbeddedServer, db: Database) -> AsyncIterator[EventBus]:
    redis = aioredis.from_url(redis_server.url)
    event_bus = EventBus(redis, db)
    await event_bus.start()
    await asyncio.wait_for(event_bus.connected.wait(), 5)
    yield event_bus
    await event_bus.stop()
    await redis.aclose()


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_hot_reload_keeps_a_running_call_on_its_version(
    db: Database, bus: EventBus, make_executor: MakeExecutor, queues: InMemoryQueueGateway
) -> None:
    service = FlowService(FlowStore(db), bus)
    registry = FlowRegistry(FlowStore(db), bus, poll_interval=3600)  # the bus alone must do it
    await service.upload("main", V1, "admin", activate=True)
    await registry.start()
    executor = make_executor()
    try:
        assert registry.current("main").version == 1
        caller_thinking = FakeCall(time_scale=1.0, playback_seconds=0.0)
        first = asyncio.create_task(executor.run(registry.current("main"), caller_thinking))
        await asyncio.wait_for(caller_thinking.reached("collect"), 5)

        await service.upload("main", V2, "admin", activate=True)
        await eventually(lambda: registry.current("main").version == 2)
        caller_thinking.press("1")
        old = await asyncio.wait_for(first, 5)
        new = await executor.run(registry.current("main"), FakeCall(dtmf="1"))
    finally:
        await registry.stop()

    assert (old.version, old.queue) == (1, "after_sales")
    assert (new.version, new.queue) == (2, "billing")
    assert [request.queue for request in queues.queued] == ["after_sales", "billing"]


async def test_polling_notices_a_new_version_without_the_bus(db: Database) -> None:
    service = FlowService(FlowStore(db), None)
    registry = FlowRegistry(FlowStore(db), None, poll_interval=0.05)
    with pytest.raises(NoActiveFlow):
        registry.current("main")
    await service.upload("main", V1, "admin", activate=True)
    await registry.start()
    try:
        await service.upload("main", V2, "admin", activate=True)
        await eventually(lambda: registry.current("main").version == 2)
    finally:
        await registry.stop()


async def test_a_bad_flow_is_refused_and_the_previous_version_keeps_serving(
    db: Database, bus: EventBus
) -> None:
    store = FlowStore(db)
    service = FlowService(store, bus)
    registry = FlowRegistry(store, bus, poll_interval=3600)
    await service.upload("main", V1, "admin", activate=True)
    await registry.start()
    try:
        with pytest.raises(FlowInvalid) as refused:
            await service.upload(
                "main", V1.replace("on_failure: queue", "on_failure: queu"), "admin", activate=True
            )
        assert refused.value.errors[0].line == 8 and refused.value.errors[0].node == "menu"
        assert [version.version for version in await store.versions("main")] == [1]

        # Even a broken version that reaches the database behind the service's back is refused where it
        # would run (think: an older release wrote it, or someone edited MongoDB by hand).
        await db["flows"].insert_one(
            {
                "name": "main",
                "version": 2,
                "yaml": "start: [",
                "author": "mallory",
                "created_at": utcnow(),
                "active": True,
                "activated_at": utcnow(),
                "checksum": "-",
            }
        )
        await registry.refresh()
        assert registry.current("main").version == 1
    finally:
        await registry.stop()


async def test_rollback_goes_back_to_the_previously_active_version(db: Database) -> None:
    service = FlowService(FlowStore(db), None)
    with pytest.raises(Conflict):
        await service.rollback("main", "admin")
    await service.upload("main", V1, "admin", activate=True)
    await service.upload("main", V2, "admin", activate=True)
    back = await service.rollback("main", "admin")
    assert (back.version, back.active, back.previous_active) == (1, True, 2)
    assert [(v.version, v.active) for v in await service.versions("main")] == [(2, False), (1, True)]
    assert (await service.rollback("main", "admin")).version == 2  # a second rollback undoes the first


async def test_the_shipped_flow_is_installed_once(db: Database) -> None:
    service = FlowService(FlowStore(db), None)
    results = await asyncio.gather(service.install_shipped(), service.install_shipped())
    assert sum(result is not None for result in results) == 1
    assert [(v.version, v.active, v.author) for v in await service.versions("main")] == [(1, True, "system")]
    assert await service.install_shipped() is None


async def test_the_ticket_gateway_opens_a_ticket_in_the_ticket_service(
    db: Database, make_executor: MakeExecutor, main_flow: object
) -> None:
    from ivr_flows import ScriptedSpeech, TicketServiceGateway
    from tests.ivr.conftest import OPEN
    from tickets import (
        FakeClock,
        InMemoryScheduler,
        RecordingNotifier,
        TicketService,
        TicketStore,
        load_config,
    )

    omni = Omnichannel.create(db, None)
    service = TicketService(
        TicketStore(db),
        omni,
        load_config(),
        clock=FakeClock(OPEN),
        notifier=RecordingNotifier(),
        scheduler=InMemoryScheduler(),
    )
    call = FakeCall(caller="+8613900002222", dtmf="1")
    executor = make_executor(
        tickets=TicketServiceGateway(service, omni), speech=ScriptedSpeech(["我要退货，订单号 12345"])
    )
    context = await executor.run(main_flow, call)  # type: ignore[arg-type]

    assert context.ticket is not None and context.ticket.action == "created" and context.ticket.number
    ticket = await service.get(str(context.ticket.ticket_id))
    assert ticket.intent == "return_request" and ticket.entities["order_number"] == "12345"
    assert context.variables["ticket_number"] == ticket.number


async def test_an_office_hours_override_reaches_running_processes_and_runs_out(
    db: Database, bus: EventBus, make_executor: MakeExecutor
) -> None:
    from tests.ivr.conftest import MAIN_YAML, OPEN, SHANGHAI

    service = FlowService(FlowStore(db), bus)
    registry = FlowRegistry(FlowStore(db), bus, poll_interval=3600)  # the bus alone must do it
    await service.upload("main", MAIN_YAML, "admin", activate=True)
    await registry.start()
    night = dt.datetime(2026, 11, 25, 23, 30, tzinfo=SHANGHAI)
    at_night = make_executor(now=night, hours_override=registry.hours_override)
    in_office_hours = make_executor(now=OPEN, hours_override=registry.hours_override)
    try:
        closed = await at_night.run(registry.current("main"), FakeCall())
        assert [step.node for step in closed.path][:2] == ["office_hours", "after_hours"]

        until = utcnow() + dt.timedelta(hours=1)
        override = await service.set_hours_override("main", "open", until, "双十二 promotion", "supervisor")
        await eventually(lambda: registry.hours_override("main", night) is not None)
        opened = await at_night.run(registry.current("main"), FakeCall(dtmf="1"))
        assert [step.node for step in opened.path][:3] == ["office_hours", "greeting", "main_menu"]
        first = opened.path[0]
        assert first.result == "open"
        assert first.input == (
            f"2026-11-25T23:30+08:00, open by supervisor until "
            f"{until.astimezone(SHANGHAI).isoformat(timespec='minutes')}: 双十二 promotion"
        )
        # it runs out by itself at `until`, and a later override (closed) replaces it
        assert registry.hours_override("main", override.until) is None
        await service.set_hours_override("main", "closed", until, "台风 typhoon", "supervisor")
        await eventually(lambda: (registry.hours_override("main", night) or override).state == "closed")
        typhoon = await in_office_hours.run(registry.current("main"), FakeCall())
        assert [step.node for step in typhoon.path][:2] == ["office_hours", "after_hours"]
        assert typhoon.path[0].result == "closed"

        await service.clear_hours_override("main", "supervisor")
        await eventually(lambda: registry.hours_override("main", night) is None)
        reopened = await in_office_hours.run(registry.current("main"), FakeCall(dtmf="1"))
        assert [step.node for step in reopened.path][:2] == ["office_hours", "greeting"]
    finally:
        await registry.stop()
