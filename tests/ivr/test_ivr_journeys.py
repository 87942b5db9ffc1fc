"""The shipped flow as callers meet it (Journey 1 of DESIGN.md), on fake calls with real prompts and the
real NLU: DTMF and speech paths, tickets and queues, hang-ups, bad input and timeouts."""

from __future__ import annotations

import asyncio
import datetime as dt
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from asr import ScriptedRecognizer
from ivr_flows import (
    AsrSpeechRecognizer,
    FakeCall,
    Heard,
    InMemoryQueueGateway,
    PromptRenderer,
    RecordingSink,
    RecordingTicketGateway,
    Revision,
    ScriptedSpeech,
    parse_flow,
)
from ivr_flows.executor import LazySession
from telephony.api import CallerRecord, HangupCause
from tests.ivr.conftest import SHANGHAI, MakeExecutor

RETURN_REQUEST = "我要退货，订单号 12345"


def path_of(context_path: list[object]) -> list[str]:
    return [step.node for step in context_path]  # type: ignore[attr-defined]


async def test_caller_pressing_1_reaches_after_sales_queue(
    make_executor: MakeExecutor, main_flow: Revision, queues: InMemoryQueueGateway, sink: RecordingSink
) -> None:
    call = FakeCall(dtmf="1")  # and then says nothing, and types nothing
    context = await make_executor().run(main_flow, call)

    assert path_of(context.path) == [
        "office_hours",
        "greeting",
        "main_menu",
        "after_sales",
        "after_sales_queue",
    ]
    assert context.outcome == "queued" and context.queue == "after_sales"
    [queued] = queues.queued
    assert queued.queue == "after_sales" and queued.skills == ["after_sales"] and queued.priority == "normal"
    assert queued.context.call_id == call.call_id and queued.context.caller == "+8613800138000"
    assert not call.hung_up.is_set(), "a queued call belongs to the ACD now; the IVR must not hang it up"

    steps = sink.of_call(call.call_id)
    assert [event.sequence for event in steps] == [1, 2, 3, 4, 5]
    assert [event.body["node"] for event in steps] == path_of(context.path)
    assert steps[2].body == {
        "flow": "main",
        "version": 1,
        "step": 3,
        "node": "main_menu",
        "type": "menu",
        "input": ["1"],
        "result": "chose 1",
        "next": "after_sales",
    }
    assert steps[3].body["result"] == "failed" and steps[3].body["input"][-1] == {"result": "no_speech"}
    assert len({event.idempotency_key for event in steps}) == 5
    assert steps[0].idempotency_key == f"call:{call.call_id}:ivr.step:1"
    [queued_event] = sink.of_call(call.call_id, "call.queued")
    assert queued_event.body["queue"] == "after_sales" and queued_event.body["context"]["path"][-1][
        "node"
    ] == ("after_sales")


async def test_a_queued_call_carries_the_customer_and_conversation_the_platform_recorded(
    make_executor: MakeExecutor, main_flow: Revision, queues: InMemoryQueueGateway
) -> None:
    """The call's customer and conversation (found by its journal as the call started) go with it to the
    queue, VIP flag included, so the ACD does not look them up again."""
    recorded = FakeCall(dtmf="1")
    recorded.record_as = CallerRecord("c-1", "conv-1", vip=True)
    await make_executor().run(main_flow, recorded)
    unrecorded = FakeCall(dtmf="1")  # the journal could not write it in time: the ACD finds them itself
    await make_executor().run(main_flow, unrecorded)

    first, second = queues.queued
    assert (first.customer_id, first.conversation_id, first.vip) == ("c-1", "conv-1", True)
    assert (second.customer_id, second.conversation_id, second.vip) == (None, None, False)


async def test_caller_saying_return_request_gets_a_ticket_and_the_after_sales_queue(
    make_executor: MakeExecutor,
    main_flow: Revision,
    queues: InMemoryQueueGateway,
    tickets: RecordingTicketGateway,
) -> None:
    call = FakeCall(dtmf="1")
    speech = ScriptedSpeech([RETURN_REQUEST])
    context = await make_executor(speech=speech).run(main_flow, call)

    assert path_of(context.path) == [
        "office_hours",
        "greeting",
        "main_menu",
        "after_sales",
        "understand",
        "service_ticket",
        "ticket_confirmed",
        "say_ticket_number",
        "after_sales_queue",
    ]
    assert speech.requests == [("zh", None)]
    [intent] = context.intents
    assert intent.intent == "return_request" and intent.entities["order_number"] == "12345"
    [request] = tickets.requests
    assert request.intent == "return_request" and request.entities == {"order_number": "12345"}
    assert request.text == RETURN_REQUEST and request.caller == call.caller
    assert request.idempotency_key == f"call:{call.call_id}:ticket:service_ticket"
    assert context.ticket is not None and context.ticket.number == "T0001"
    assert context.variables["ticket_number"] == "T0001" and context.variables["order_number"] == "12345"

    [queued] = queues.queued
    assert queued.queue == "after_sales"
    pop = queued.context.model_dump(mode="json")  # the agent's screen-pop: JSON all the way
    assert pop["intents"][0]["intent"] == "return_request"
    assert pop["ticket"]["number"] == "T0001"
    assert pop["variables"]["utterance"] == RETURN_REQUEST
    assert [step["node"] for step in pop["path"]][-1] == "say_ticket_number"


async def test_speech_reaches_the_flow_through_the_asr_adapter(
    make_executor: MakeExecutor,
    main_flow: Revision,
    prompts: PromptRenderer,
    tickets: RecordingTicketGateway,
) -> None:
    """The adapter point: an ``asr.Recognizer`` (here the scripted engine, which cuts utterances from
    real audio with its VAD) fed from the call's media tap."""
    spoken = await prompts.speak(RETURN_REQUEST, "zh")
    with wave.open(str(spoken), "rb") as audio:
        pcm = audio.readframes(audio.getnframes())
    recognizer = ScriptedRecognizer({"zh": [RETURN_REQUEST]})
    call = FakeCall(dtmf="1")
    call.say_audio(pcm)

    context = await make_executor(speech=AsrSpeechRecognizer(recognizer)).run(main_flow, call)

    assert recognizer.opened == ["zh"]
    assert context.intents[0].intent == "return_request"
    assert tickets.requests[0].entities == {"order_number": "12345"}
    assert context.outcome == "queued"


async def test_unsure_speech_is_asked_again_then_typed_digits_are_taken(
    make_executor: MakeExecutor, main_flow: Revision, queues: InMemoryQueueGateway
) -> None:
    call = FakeCall(dtmf="1")
    speech = ScriptedSpeech([Heard("嗯……", 0.2), None])
    call.at_prompt(5, press="12345#")  # the DTMF fallback prompt: "您也可以输入订单号…"
    context = await make_executor(speech=speech).run(main_flow, call)

    listen = context.path[3]
    assert listen.node == "after_sales" and listen.result == "dtmf"
    assert listen.input == [
        {"text": "嗯……", "confidence": 0.2, "phrase": None},
        {"result": "no_speech"},
        {"dtmf": "12345"},
    ]
    assert context.variables["order_number"] == "12345"
    assert queues.queued[0].queue == "after_sales"


async def test_pressing_9_switches_the_menu_to_english(
    make_executor: MakeExecutor, main_flow: Revision, prompts: PromptRenderer, queues: InMemoryQueueGateway
) -> None:
    call = FakeCall(dtmf="90")
    context = await make_executor().run(main_flow, call)

    assert path_of(context.path) == [
        "office_hours",
        "greeting",
        "main_menu",
        "english",
        "main_menu",
        "agent_queue",
    ]
    assert context.language == "en" and queues.queued[0].context.language == "en"
    english_greeting = await prompts.speak("Welcome to Huiliu customer service.", "en")
    assert str(english_greeting) not in call.played  # the greeting was Mandarin…
    assert call.played[0] == str(await prompts.speak("您好，欢迎致电汇流客服。", "zh"))
    assert call.played[2] != call.played[1]  # …the second menu English


async def test_invalid_digits_are_retried_then_the_failure_branch_is_taken(
    make_executor: MakeExecutor, main_flow: Revision, prompts: PromptRenderer, queues: InMemoryQueueGateway
) -> None:
    call = FakeCall(dtmf="777")
    context = await make_executor().run(main_flow, call)

    menu = context.path[2]
    assert menu.node == "main_menu" and menu.result == "failed" and menu.input == ["7", "7", "7"]
    assert menu.next == "agent_queue" and queues.queued[0].queue == "general"
    invalid = str(await prompts.speak("输入有误，请重新选择。", "zh"))
    assert call.played.count(invalid) == 2  # before the second and the third attempt


async def test_silence_in_the_menu_plays_the_timeout_prompt(
    make_executor: MakeExecutor, main_flow: Revision, prompts: PromptRenderer
) -> None:
    call = FakeCall()
    context = await make_executor().run(main_flow, call)

    menu = context.path[2]
    assert menu.input == ["timeout", "timeout", "timeout"] and menu.next == "agent_queue"
    assert call.played.count(str(await prompts.speak("没有收到您的选择。", "zh"))) == 2


async def test_caller_hanging_up_mid_prompt_ends_the_run_cleanly(
    make_executor: MakeExecutor, main_flow: Revision, sink: RecordingSink, queues: InMemoryQueueGateway
) -> None:
    call = FakeCall(time_scale=1.0, playback_seconds=30.0)  # a long greeting
    asyncio.get_running_loop().call_later(0.1, call.hang_up_by_caller)

    context = await asyncio.wait_for(make_executor().run(main_flow, call), 5)

    assert context.outcome == "hung_up" and context.ended_at is not None
    last = sink.of_call(call.call_id)[-1]
    assert last.body["node"] == "greeting" and last.body["result"] == "hung_up" and last.body["next"] is None
    assert not any(entry[0] == "hangup" for entry in call.log), "nobody hangs up a call that has ended"
    assert queues.queued == []


async def test_caller_hanging_up_while_queued_is_withdrawn(
    make_executor: MakeExecutor, main_flow: Revision, sink: RecordingSink
) -> None:
    waiting = InMemoryQueueGateway(outcome="wait")
    call = FakeCall(dtmf="0")
    run = asyncio.create_task(make_executor(queues=waiting).run(main_flow, call))
    await asyncio.wait_for(waiting.waiting.wait(), 5)
    call.hang_up_by_caller()
    context = await asyncio.wait_for(run, 5)

    assert context.outcome == "hung_up"
    assert waiting.withdrawn == [(call.call_id, "hung_up")]
    assert sink.of_call(call.call_id)[-1].body["result"] == "hung_up"


async def test_queue_overflow_offers_a_callback(make_executor: MakeExecutor, main_flow: Revision) -> None:
    full = InMemoryQueueGateway(outcome="timeout")
    call = FakeCall(dtmf="1")
    call.at_prompt(6, press="1")  # "需要我们稍后回电请按1"
    context = await make_executor(queues=full).run(main_flow, call)

    assert path_of(context.path)[-3:] == ["after_sales_queue", "offer_callback", "callback_confirmed"]
    assert full.withdrawn == [(call.call_id, "timeout")]
    [callback] = full.callbacks
    assert callback.number == call.caller and callback.queue == "after_sales"
    assert context.outcome == "completed" and call.hung_up_by == "flow"


async def test_complaint_makes_an_urgent_ticket(
    make_executor: MakeExecutor,
    main_flow: Revision,
    tickets: RecordingTicketGateway,
    queues: InMemoryQueueGateway,
) -> None:
    call = FakeCall(dtmf="3")
    speech = ScriptedSpeech(["快递员态度太差了，我要投诉"])
    context = await make_executor(speech=speech).run(main_flow, call)

    [request] = tickets.requests
    assert request.intent == "complaint" and request.priority == "urgent" and request.confidence == 1.0
    assert request.text == "快递员态度太差了，我要投诉" and request.entities == {}
    assert queues.queued[0].queue == "complaints" and queues.queued[0].priority == "urgent"
    assert context.outcome == "queued"


async def test_ticket_service_down_still_queues_the_caller(
    make_executor: MakeExecutor, main_flow: Revision, queues: InMemoryQueueGateway
) -> None:
    call = FakeCall(dtmf="1")
    context = await make_executor(
        speech=ScriptedSpeech([RETURN_REQUEST]), tickets=RecordingTicketGateway(fail=True)
    ).run(main_flow, call)
    ticket_step = next(step for step in context.path if step.node == "service_ticket")
    assert ticket_step.result == "error: ConnectionError" and ticket_step.next == "after_sales_queue"
    assert queues.queued[0].queue == "after_sales" and context.ticket is None


async def test_holiday_goes_to_voicemail(
    make_executor: MakeExecutor, main_flow: Revision, tmp_path: Path
) -> None:
    national_day = dt.datetime(2026, 10, 1, 10, 0, tzinfo=SHANGHAI)
    call = FakeCall(record_audio=b"\x10\x00" * 16_000 * 3)
    context = await make_executor(now=national_day).run(main_flow, call)

    assert path_of(context.path) == ["office_hours", "after_hours", "voicemail"]
    assert context.path[0].result == "holiday"
    recording = Path(str(context.variables["voicemail"]))
    assert recording.parent == tmp_path / "recordings"
    with wave.open(str(recording), "rb") as audio:
        assert audio.getnframes() == 16_000 * 3
    assert context.outcome == "voicemail" and call.hung_up_by == "flow"


async def test_voicemail_keeps_the_message_when_the_caller_hangs_up(
    make_executor: MakeExecutor, main_flow: Revision
) -> None:
    closed = dt.datetime(2026, 11, 25, 23, 30, tzinfo=SHANGHAI)
    call = FakeCall(time_scale=1.0, playback_seconds=0.0, record_audio=b"\x10\x00" * 16_000 * 60)
    run = asyncio.create_task(make_executor(now=closed).run(main_flow, call))
    await asyncio.wait_for(call.reached("record"), 5)
    call.hang_up_by_caller()
    context = await asyncio.wait_for(run, 5)

    voicemail = context.path[-1]
    assert voicemail.node == "voicemail" and voicemail.result == "recorded"
    assert voicemail.input["path"] == context.variables["voicemail"]
    assert context.outcome == "voicemail"


# ------------------------------------------------------------------------------------ order status (HTTP)


@pytest.fixture
async def orders() -> AsyncIterator[str]:
    """A CRM on loopback: order 12345 has shipped; order 99999 answers too slowly; others are 404."""

    async def order(request: web.Request) -> web.Response:
        number = request.match_info["number"]
        if number == "99999":
            await asyncio.sleep(10)
        if number != "12345":
            return web.json_response({"error": "no such order"}, status=404)
        return web.json_response({"status": "shipped", "eta": "11月28日"})

    app = web.Application()
    app.router.add_get("/api/orders/{number}", order)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/api/orders"))
    await server.close()


async def test_order_status_is_looked_up_and_read_out(
    make_executor: MakeExecutor, main_flow: Revision, prompts: PromptRenderer, orders: str
) -> None:
    call = FakeCall(dtmf="2")
    call.at_prompt(3, press="12345#")
    call.at_prompt(5, press="0")  # after hearing the status: an agent, please
    http = LazySession()  # what a telephony line gives its executor: the session opens at the first lookup
    try:
        context = await make_executor(http=http).run(main_flow, call, variables={"order_api": orders})
    finally:
        await http.close()

    lookup = next(step for step in context.path if step.node == "order_lookup")
    assert lookup.result == "ok" and lookup.input["url"] == f"{orders}/12345"
    assert lookup.input["saved"] == {"order_status": "shipped", "eta": "11月28日"}
    assert path_of(context.path)[-3:] == ["order_shipped", "anything_else", "agent_queue"]
    said = await prompts.speak("您的订单12345已发货，预计11月28日送达。", "zh")
    assert str(said) in call.played


async def test_order_lookup_that_times_out_takes_the_fallback_branch(
    make_executor: MakeExecutor, orders: str
) -> None:
    flow = parse_flow(
        """
start: lookup
variables: {order_status: ""}
nodes:
  lookup:
    type: http
    url: "ORDERS/{caller}"
    timeout: 0.3
    save: {order_status: status}
    next: found
    on_error: sorry
  found: {type: hangup}
  sorry: {type: hangup, cause: lookup_failed}
""".replace("ORDERS", orders)
    )
    call = FakeCall(caller="99999")
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as http:
        context = await make_executor(http=http).run(Revision("lookup", 1, flow), call)

    assert loop.time() - started < 2
    assert context.path[0].result == "error: timeout" and context.path[0].next == "sorry"
    assert call.hangup_cause == "lookup_failed"


async def test_unknown_order_is_an_error_branch_too(
    make_executor: MakeExecutor, main_flow: Revision, orders: str
) -> None:
    call = FakeCall(dtmf="2")
    call.at_prompt(3, press="55555#")
    async with aiohttp.ClientSession() as http:
        context = await make_executor(http=http).run(main_flow, call, variables={"order_api": orders})
    lookup = next(step for step in context.path if step.node == "order_lookup")
    assert lookup.result == "error: http 404" and lookup.next == "lookup_failed"


# ------------------------------------------------------------------------------------- endings and faults


class SlowGoodbyeCall(FakeCall):
    """A bridge whose hang-up marks the call ended before the BYE transaction completes."""

    async def hangup(self, cause: HangupCause | str = HangupCause.normal) -> None:
        await super().hangup(cause)
        await asyncio.sleep(0.05)


async def test_the_flow_hanging_up_is_not_mistaken_for_the_caller(make_executor: MakeExecutor) -> None:
    flow = parse_flow("start: bye\nnodes:\n  bye: {type: hangup, prompt: 再见。, cause: normal}\n")
    goodbye = SlowGoodbyeCall()
    ended = await make_executor().run(Revision("bye", 1, flow), goodbye)
    assert ended.outcome == "completed" and ended.path[-1].result == "hangup normal"
    assert goodbye.hung_up_by == "flow"


async def test_transfer_hands_the_call_over(make_executor: MakeExecutor) -> None:
    flow = parse_flow(
        "start: out\nnodes:\n  out: {type: transfer, target: 'sip:billing@{called}', attended: true}\n"
    )
    call = FakeCall(called="pbx.example.com")
    context = await make_executor().run(Revision("t", 1, flow), call)
    assert call.transferred_to == "sip:billing@pbx.example.com"
    assert ("transfer", "sip:billing@pbx.example.com", True) in call.log
    assert context.outcome == "transferred" and call.hung_up_by == "transfer"


class BrokenQueue(InMemoryQueueGateway):
    async def enqueue(self, request: object) -> None:  # type: ignore[override]
        raise RuntimeError("the ACD is down")


async def test_a_failing_step_goes_to_on_error_and_never_loops(
    make_executor: MakeExecutor, main_flow: Revision, sink: RecordingSink
) -> None:
    call = FakeCall(dtmf="0")  # agent_queue is also the flow's on_error node
    context = await make_executor(queues=BrokenQueue()).run(main_flow, call)

    assert [(step.node, step.result) for step in context.path][-1] == ("agent_queue", "error: RuntimeError")
    assert context.outcome == "failed" and call.hangup_cause == "ivr_error"
    assert sink.of_call(call.call_id)[-1].body["result"] == "error: RuntimeError"


async def test_collected_secrets_stay_out_of_the_timeline(
    make_executor: MakeExecutor, sink: RecordingSink
) -> None:
    flow = parse_flow(
        """\
start: pin
nodes:
  pin:
    type: collect
    prompt: 请输入密码。
    into: pin
    min_length: 6
    max_length: 6
    sensitive: true
    next: check
    on_failure: bye
  check:
    type: condition
    cases: [{when: pin == '123456', goto: bye}]
    else: bye
  bye: {type: hangup}
"""
    )
    call = FakeCall(dtmf="654321")
    context = await make_executor().run(Revision("pin", 1, flow), call)
    assert context.path[1].result == "else"  # the flow itself compares the real digits
    assert context.variables["pin"] == "••••" and context.path[0].input == ["••••"]
    assert "654321" not in repr([event.body for event in sink.events])
