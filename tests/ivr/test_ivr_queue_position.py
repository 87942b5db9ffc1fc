"""A caller on hold hears their place in line and the expected wait, after the first hold prompt, and in
their language; a queue that cannot tell the place costs them nothing but the announcement."""

from __future__ import annotations

import asyncio

from ivr_flows import FakeCall, InMemoryQueueGateway, PromptRenderer
from ivr_flows.models import QueuePosition
from ivr_flows.validation import Revision
from tests.ivr.conftest import MakeExecutor

HOLD_ZH = "所有专员正忙，请稍候。"


async def _on_hold(call: FakeCall, prompts: PromptRenderer, count: int) -> None:
    hold = str(await prompts.speak(HOLD_ZH, "zh"))
    while call.played.count(hold) < count:  # noqa: ASYNC110 - the fake call keeps a list, no event
        await asyncio.sleep(0.01)


async def test_the_second_caller_in_line_hears_their_place_after_the_hold_prompt(
    make_executor: MakeExecutor, main_flow: Revision, prompts: PromptRenderer
) -> None:
    waiting = InMemoryQueueGateway(outcome="wait")
    executor = make_executor(queues=waiting)
    first, second = FakeCall(dtmf="0", caller="+8613800000001"), FakeCall(dtmf="0", caller="+8613800000002")
    runs = [asyncio.create_task(executor.run(main_flow, call)) for call in (first, second)]
    await asyncio.wait_for(_on_hold(second, prompts, 2), 10)

    # two minutes a call in the in-memory queue: second in line, about four minutes
    place = str(await prompts.speak("您现在排在第2位，预计等待约4分钟。", "zh"))
    hold = str(await prompts.speak(HOLD_ZH, "zh"))
    heard = second.played[second.played.index(hold) :]
    assert heard[:3] == [hold, place, hold], "once, after the first hold prompt, not every round"
    assert str(await prompts.speak("您现在排在第1位，预计等待约2分钟。", "zh")) in first.played

    for call in (first, second):
        waiting.connect(call.call_id)
    contexts = await asyncio.wait_for(asyncio.gather(*runs), 10)
    assert [context.outcome for context in contexts] == ["queued", "queued"]
    assert contexts[1].variables["queue_position"] == 2


class _Broken(InMemoryQueueGateway):
    async def position(self, call_id: str) -> QueuePosition | None:
        raise ConnectionError("the ACD is unreachable")


async def test_a_queue_that_cannot_tell_the_place_leaves_the_caller_holding(
    make_executor: MakeExecutor, main_flow: Revision, prompts: PromptRenderer
) -> None:
    broken = _Broken(outcome="wait")
    call = FakeCall(dtmf="0")
    run = asyncio.create_task(make_executor(queues=broken).run(main_flow, call))
    await asyncio.wait_for(_on_hold(call, prompts, 3), 10)

    hold = str(await prompts.speak(HOLD_ZH, "zh"))
    assert set(call.played[call.played.index(hold) :]) == {hold}
    broken.connect(call.call_id)
    context = await asyncio.wait_for(run, 10)
    assert context.outcome == "queued"
