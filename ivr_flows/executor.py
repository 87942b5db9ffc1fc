"""Runs one version of a flow on one call.

``FlowExecutor.run(revision, call)`` walks the nodes from ``start``: each node is one numbered step and
one ``ivr.step`` event (node id, type, what the caller gave it, the result, where it led). A call keeps the
revision it started with, whatever is activated meanwhile.

Failure rules: the caller hanging up interrupts whatever is happening (a prompt, a DTMF wait, a queue) and
ends the run with a last ``ivr.step`` whose result is ``hung_up`` — no exception leaves ``run``. A node
that fails unexpectedly goes to the flow's ``on_error`` node (or hangs up). Events are written by a
background writer in order, so a slow database never delays the next prompt; ``run`` returns after they
are written (or after ``drain_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import math
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from core.aio import stop_tasks
from core.bus import EventBus
from core.log import get_logger
from ivr_flows.events import CallEvent, CallEventSink
from ivr_flows.expressions import Condition, Template, Value, as_text, compile_condition
from ivr_flows.gateways import QueueGateway, TicketGateway
from ivr_flows.models import (
    CallbackRequest,
    CallContext,
    HoursOverride,
    IntentRecord,
    Priority,
    QueueOutcome,
    QueueRequest,
    StepRecord,
    TicketRequest,
)
from ivr_flows.nodes import (
    LANGUAGES,
    BusinessHoursNode,
    CallbackNode,
    CollectNode,
    ConditionNode,
    GotoNode,
    HangupNode,
    HttpNode,
    IntentNode,
    ListenNode,
    MenuNode,
    Node,
    PlayNode,
    PromptPart,
    QueueNode,
    SetNode,
    TicketNode,
    TransferNode,
    VoicemailNode,
)
from ivr_flows.transcript import CallTranscript
from ivr_flows.tts import PromptError, PromptRenderer
from ivr_flows.understanding import Heard, IntentAnalyzer, SpeechRecognizer
from ivr_flows.validation import Revision
from telephony.api import Call, CallEnded, HangupCause

if TYPE_CHECKING:
    import aiohttp

log = get_logger(__name__)

T = TypeVar("T")
Clock = Callable[[], dt.datetime]
HoursOverrides = Callable[[str, dt.datetime], HoursOverride | None]  # (flow, now) -> override in force
RecentContactCount = Callable[[str], Awaitable[int]]  # (caller number) -> earlier contacts lately

MENU_INTER_DIGIT_SECONDS = 2.0
MAX_STEP_ERRORS = 3
HOLD_GAP_SECONDS = 1.0
POSITION_TIMEOUT_SECONDS = 2.0  # also for reading the caller's recent contacts
# how long queueing waits for the call's customer and conversation from the call's first write (after
# that the queue finds them itself)
RECORDED_WAIT_SECONDS = 1.0
# What a call.queued event tells the timeline: the routing ids and the VIP flag are for the ACD alone.
QUEUED_EVENT_FIELDS = {"queue", "skills", "priority", "max_wait", "context"}
_LEADING_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
HANDED_OVER = ("queued", "transferred")  # outcomes after which the call is someone else's to end
MASK = "••••"
_PRIORITIES: dict[str, Priority] = {"low": "low", "normal": "normal", "high": "high", "urgent": "urgent"}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What a node did: ``result`` for the timeline, ``next`` node (None ends the flow), ``end`` the call's
    outcome when the flow ends here without the executor hanging up (``queued``, ``transferred``…)."""

    result: str
    next: str | None
    input: Any = None
    end: str | None = None


class FlowExecutor:
    """Runs flows on calls; one instance serves every call of a process."""

    def __init__(
        self,
        *,
        prompts: PromptRenderer,
        events: CallEventSink | None = None,
        analyzer: IntentAnalyzer,
        queues: QueueGateway,
        tickets: TicketGateway,
        speech: SpeechRecognizer | None = None,
        http: aiohttp.ClientSession | LazySession | None = None,
        recordings_dir: Path,
        bus: EventBus | None = None,
        transcribe: bool = True,
        clock: Clock = utc_now,
        hours_override: HoursOverrides | None = None,
        recent_contacts: RecentContactCount | None = None,
        max_steps: int = 200,
        hangup_grace: float = 2.0,
        drain_timeout: float = 5.0,
    ) -> None:
        """``transcribe``: what the caller says in ``listen`` nodes becomes the call's live transcript
        (``ivr_flows.transcript``; partials on ``bus``). ``recent_contacts``: how many times the caller's
        customer got in touch lately (any channel), for the urgency of what they say."""
        self.prompts = prompts
        self.events = events
        self.analyzer = analyzer
        self.queues = queues
        self.tickets = tickets
        self.speech = speech
        self.http = http
        self.recordings_dir = recordings_dir
        self.bus = bus
        self.transcribe = transcribe
        self.clock = clock
        self.hours_override = hours_override
        self.recent_contacts = recent_contacts
        self.max_steps = max_steps
        self.hangup_grace = hangup_grace
        self.drain_timeout = drain_timeout

    async def run(
        self, revision: Revision, call: Call, *, variables: dict[str, Value] | None = None
    ) -> CallContext:
        """Run ``revision`` on ``call`` until the flow ends or the caller hangs up; returns the call's
        context (also in every ``call.queued`` event). ``variables`` override the flow's starting values."""
        session = _Session(self, revision, call, variables or {})
        await session.run()
        return session.context


class _Session:
    """The state of one call going through one flow."""

    def __init__(
        self, executor: FlowExecutor, revision: Revision, call: Call, overrides: dict[str, Value]
    ) -> None:
        self.x = executor
        self.revision = revision
        self.flow = revision.flow
        self.call = call
        variables = {**self.flow.variables, **overrides}
        variables.update(call_id=call.call_id, caller=call.caller, called=call.called)
        if variables.get("language") not in LANGUAGES:
            variables["language"] = self.flow.language
        self.variables = variables
        self.sensitive: set[str] = set()
        self.context = CallContext(
            call_id=call.call_id,
            caller=call.caller,
            called=call.called,
            flow=revision.name,
            version=revision.version,
            language=str(variables["language"]),
            started_at=executor.clock(),
        )
        self.steps = 0
        self.errors = 0
        self.transcript = CallTranscript(call, executor.bus) if executor.transcribe else None
        self.outbox: asyncio.Queue[CallEvent | None] = asyncio.Queue()

    @property
    def language(self) -> str:
        return str(self.variables.get("language") or self.flow.language)

    # -------------------------------------------------------------------------------------------- loop

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_events(), name=f"ivr-events-{self.call.call_id}")
        try:
            await self._walk()
        finally:
            self.context.ended_at = self.x.clock()
            self.context.variables = self._visible_variables()
            self.context.language = self.language
            self.outbox.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(writer), self.x.drain_timeout)
            except TimeoutError:
                log.error("ivr.events_not_drained", call_id=self.call.call_id, pending=self.outbox.qsize())
                writer.cancel()

    async def _walk(self) -> None:
        node_id: str | None = self.flow.start
        try:
            await self._guard(self.call.answer())
            while node_id is not None:
                if self.steps >= self.x.max_steps:
                    log.error("ivr.step_limit", call_id=self.call.call_id, node=node_id)
                    await self._finish("failed", "ivr_step_limit")
                    return
                node_id = await self._step(node_id, self.flow.nodes[node_id])
        except CallEnded:
            node = self.flow.nodes.get(node_id or "")
            self._record(node_id or "", node.kind if node else "answer", None, "hung_up", None)
            self.context.outcome = "hung_up"
            return
        if self.context.outcome not in HANDED_OVER:
            await self._finish(self.context.outcome or "completed", "normal")

    async def _finish(self, outcome: str, cause: str) -> None:
        self.context.outcome = outcome
        if self.call.hung_up.is_set():
            return
        try:
            await self.call.hangup(cause)
        except Exception as exc:  # the call ended meanwhile, or the bridge failed: nothing left to do
            if not self.call.hung_up.is_set():
                log.warning("ivr.hangup_failed", call_id=self.call.call_id, error=str(exc))

    async def _step(self, node_id: str, node: Node) -> str | None:
        handler: Callable[[str, Any], Coroutine[Any, Any, StepOutcome]] = getattr(self, f"_{node.kind}")
        try:
            outcome = await self._guard(handler(node_id, node), finish=node.outlives_hangup)
        except CallEnded:
            raise
        except Exception as exc:
            if self.call.hung_up.is_set():
                # whatever the bridge raised about an ended call, the fact is that the caller left
                raise CallEnded(HangupCause.caller_hangup) from exc
            self.errors += 1
            log.exception("ivr.step_failed", call_id=self.call.call_id, node=node_id, type=node.kind)
            fallback = self.flow.on_error if self.errors < MAX_STEP_ERRORS else None
            if fallback == node_id:
                fallback = None
            outcome = StepOutcome(f"error: {type(exc).__name__}", fallback)
            if fallback is None:
                self._record(node_id, node.kind, None, outcome.result, None)
                await self._finish("failed", "ivr_error")
                return None
        self._record(node_id, node.kind, outcome.input, outcome.result, outcome.next)
        if outcome.end is not None:
            self.context.outcome = outcome.end
        return outcome.next

    async def _guard(self, awaitable: Awaitable[T], *, finish: bool = False) -> T:
        """``awaitable``, interrupted by the call ending (``CallEnded``). With ``finish`` it may complete
        for ``hangup_grace`` seconds after the call ended (a voicemail keeps its recording, a hangup or
        transfer node sees its own action through)."""
        task = asyncio.ensure_future(awaitable)
        hung_up = asyncio.ensure_future(self.call.hung_up.wait())
        try:
            done, _ = await asyncio.wait({task, hung_up}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            if finish:
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(task), self.x.hangup_grace)
            raise CallEnded(HangupCause.caller_hangup)
        finally:
            hung_up.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # ------------------------------------------------------------------------------------------ events

    def _record(self, node_id: str, kind: str, given: Any, result: str, next_node: str | None) -> None:
        self.steps += 1
        now = self.x.clock()
        record = StepRecord(
            step=self.steps, node=node_id, type=kind, input=given, result=result, next=next_node, at=now
        )
        self.context.path.append(record)
        body = {
            "flow": self.revision.name,
            "version": self.revision.version,
            **record.model_dump(mode="json", exclude={"at"}),
        }
        self._emit("ivr.step", body, self.steps, now)

    def _emit(self, kind: str, body: dict[str, Any], step: int, now: dt.datetime | None = None) -> None:
        """Queue an event of step number ``step`` for the writer."""
        self.outbox.put_nowait(
            CallEvent(kind, self.call.call_id, self.call.caller, step, now or self.x.clock(), body)
        )

    async def _write_events(self) -> None:
        while (event := await self.outbox.get()) is not None:
            try:
                if self.x.events is None:
                    await self.call.log_event(event.kind, event.body)
                else:
                    await self.x.events.emit(event)
            except Exception:
                log.exception("ivr.event_lost", call_id=event.call_id, kind=event.kind, step=event.sequence)

    def _visible_variables(self) -> dict[str, Value]:
        return {name: MASK if name in self.sensitive else value for name, value in self.variables.items()}

    def _snapshot(self) -> CallContext:
        snapshot = self.context.model_copy(deep=True)
        snapshot.variables = self._visible_variables()
        snapshot.language = self.language
        return snapshot

    # ----------------------------------------------------------------------------------------- helpers

    def _text(self, template: str, quote: Callable[[str], str] | None = None) -> str:
        return Template(template).render(self.variables, quote)

    async def _say(self, prompt: tuple[PromptPart, ...] | None, *, barge_in: bool = False) -> None:
        """Play a prompt; a prompt that cannot be made is logged and skipped — silence beats a dropped
        call."""
        if not prompt:
            return
        try:
            path = await self.x.prompts.render(prompt, self.language, self.variables)
        except PromptError as exc:
            log.error("ivr.prompt_failed", call_id=self.call.call_id, error=str(exc))
            return
        await self.call.play(path, barge_in=barge_in)

    def _priority(self, template: str) -> Priority:
        return _PRIORITIES.get(self._text(template).strip().lower(), "normal")

    # ------------------------------------------------------------------------------------------- nodes

    async def _play(self, node_id: str, node: PlayNode) -> StepOutcome:
        await self._say(node.prompt, barge_in=node.barge_in)
        return StepOutcome("played", node.next)

    async def _menu(self, node_id: str, node: MenuNode) -> StepOutcome:
        max_digits = max(len(choice) for choice in node.choices)
        terminators = "#" if max_digits > 1 and "#" not in node.choices else ""
        attempts: list[str] = []
        reprompt: tuple[PromptPart, ...] | None = None
        for _ in range(node.retries + 1):
            await self._say(reprompt, barge_in=True)
            await self._say(node.prompt, barge_in=True)
            digits = await self.call.collect_dtmf(
                max_digits,
                min(node.timeout, MENU_INTER_DIGIT_SECONDS),
                terminators,
                first_digit_timeout=node.timeout,
            )
            attempts.append(digits or "timeout")
            if digits in node.choices:
                self.variables["digits"] = digits
                if node.into:
                    self.variables[node.into] = digits
                return StepOutcome(f"chose {digits}", node.choices[digits], attempts)
            reprompt = (node.timeout_prompt or node.invalid_prompt) if not digits else node.invalid_prompt
        return StepOutcome("failed", node.on_failure, attempts)

    async def _collect(self, node_id: str, node: CollectNode) -> StepOutcome:
        attempts: list[str] = []
        reprompt: tuple[PromptPart, ...] | None = None
        if node.sensitive:
            self.sensitive.update({node.into, "digits"})
        for _ in range(node.retries + 1):
            await self._say(reprompt, barge_in=True)
            await self._say(node.prompt, barge_in=True)
            digits = await self.call.collect_dtmf(
                node.max_length,
                node.timeout,
                node.terminator,
                first_digit_timeout=node.first_digit_timeout or node.timeout,
            )
            attempts.append(MASK if node.sensitive and digits else (digits or "timeout"))
            if node.min_length <= len(digits) <= node.max_length:
                self.variables["digits"] = digits
                self.variables[node.into] = digits
                return StepOutcome("collected", node.next, attempts)
            reprompt = (node.timeout_prompt or node.invalid_prompt) if not digits else node.invalid_prompt
        return StepOutcome("failed", node.on_failure, attempts)

    async def _listen(self, node_id: str, node: ListenNode) -> StepOutcome:
        language = node.language or self.language
        fallback = node.dtmf_fallback
        heard: list[dict[str, Any]] = []
        if self.transcript is not None:
            self.transcript.node = node_id
        if self.x.speech is not None:
            for attempt in range(node.retries + 1):
                await self._say(
                    node.prompt if attempt == 0 else (node.retry_prompt or node.prompt), barge_in=True
                )
                result, digits = await self._hear(node, language)
                if digits:
                    return self._dtmf_answer(node, digits, heard)
                if result is None:
                    heard.append({"result": "no_speech"})
                    continue
                confident = result.confidence is None or result.confidence >= node.min_confidence
                heard.append({"text": result.text, "confidence": result.confidence, "phrase": result.phrase})
                if confident:
                    text = result.phrase or result.text
                    self.variables["utterance"] = text
                    self.variables[node.into] = text
                    return StepOutcome("heard", node.next, heard)
        else:
            heard.append({"result": "no_recognizer"})
        if fallback is not None:
            await self._say(
                fallback.prompt or (node.prompt if self.x.speech is None else None), barge_in=True
            )
            digits = await self.call.collect_dtmf(
                fallback.max_digits,
                fallback.timeout,
                fallback.terminator,
                first_digit_timeout=fallback.timeout,
            )
            if digits:
                return self._dtmf_answer(node, digits, heard)
        return StepOutcome("failed", node.on_failure, heard)

    def _dtmf_answer(self, node: ListenNode, digits: str, heard: list[dict[str, Any]]) -> StepOutcome:
        fallback = node.dtmf_fallback
        assert fallback is not None
        self.variables["digits"] = digits
        self.variables[fallback.into or node.into] = digits
        heard.append({"dtmf": digits})
        return StepOutcome("dtmf", fallback.next or node.next, heard)

    async def _hear(self, node: ListenNode, language: str) -> tuple[Heard | None, str]:
        """Speech, and — when the node has a DTMF fallback — digits pressed meanwhile; the first that
        gives something wins."""
        assert self.x.speech is not None
        speech = asyncio.ensure_future(
            self.x.speech.recognize(
                self.call.audio_frames(),
                language=language,
                grammar=node.grammar,
                timeout=node.timeout,
                listener=self.transcript,
            )
        )
        fallback = node.dtmf_fallback
        keys: asyncio.Future[str] | None = None
        if fallback is not None:
            keys = asyncio.ensure_future(
                self.call.collect_dtmf(
                    fallback.max_digits,
                    fallback.timeout,
                    fallback.terminator,
                    first_digit_timeout=node.timeout,
                )
            )
        try:
            pending: set[asyncio.Future[Any]] = {speech} | ({keys} if keys else set())
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if keys in done and keys.result():
                    return None, keys.result()
                if speech in done:
                    try:
                        return speech.result(), ""
                    except CallEnded:
                        raise
                    except Exception as exc:
                        log.warning("ivr.speech_failed", call_id=self.call.call_id, error=str(exc))
                        return None, ""
            return None, ""
        finally:
            for future in (speech, keys):
                if future is not None and not future.done():
                    future.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await future

    async def _intent(self, node_id: str, node: IntentNode) -> StepOutcome:
        text = self._text(node.text).strip()
        recent = await self._recent_contacts()
        analysis = await asyncio.to_thread(
            functools.partial(self.x.analyzer.analyze, text, recent_contacts=recent)
        )
        entities: dict[str, str] = {}
        for entity in analysis.entities:
            entities.setdefault(str(entity.kind), entity.value)
        priority = str(analysis.priority)
        record = IntentRecord(
            node=node_id,
            text=text,
            intent=analysis.intent,
            confidence=round(analysis.confidence, 3),
            entities=entities,
            priority=_PRIORITIES.get(priority, "normal"),
        )
        self.context.intents.append(record)
        self.variables.update(
            intent=record.intent, intent_confidence=record.confidence, priority=record.priority
        )
        for kind, variable in node.entities.items():
            if kind in entities:
                self.variables[variable] = entities[kind]
        target = node.branches.get(analysis.intent)
        branch = target if target is not None and analysis.confidence >= node.min_confidence else node.default
        given = {"text": text, "intent": record.intent, "confidence": record.confidence, "entities": entities}
        return StepOutcome(f"intent {record.intent}", branch, given)

    async def _condition(self, node_id: str, node: ConditionNode) -> StepOutcome:
        for index, case in enumerate(node.cases):
            if _compiled(case.when).evaluate(self.variables):
                return StepOutcome(f"case {index + 1}: {case.when}", case.goto)
        return StepOutcome("else", node.otherwise)

    async def _http(self, node_id: str, node: HttpNode) -> StepOutcome:
        import aiohttp

        url = self._url(node.url)
        given = {"method": node.method, "url": url}
        if not url.startswith(("http://", "https://")):
            return StepOutcome("error: not an http url", node.on_error, given)
        if self.x.http is None:
            return StepOutcome("error: no http client", node.on_error, given)
        headers = {name: self._text(value) for name, value in node.headers.items()}
        body = (
            {key: self._text(value) if isinstance(value, str) else value for key, value in node.body.items()}
            if node.body is not None
            else None
        )
        try:
            async with asyncio.timeout(node.timeout):
                async with self.x.http.request(node.method, url, headers=headers, json=body) as response:
                    if response.status >= 300:
                        return StepOutcome(f"error: http {response.status}", node.on_error, given)
                    data = await response.json(content_type=None)
        except TimeoutError:
            return StepOutcome("error: timeout", node.on_error, given)
        except aiohttp.ClientError as exc:
            return StepOutcome(f"error: {type(exc).__name__}", node.on_error, given)
        except ValueError:
            return StepOutcome("error: not json", node.on_error, given)
        saved = {variable: _dig(data, path) for variable, path in node.save.items()}
        self.variables.update(saved)
        return StepOutcome("ok", node.next, {**given, "saved": saved})

    def _url(self, template: str) -> str:
        """The URL with each placeholder's value quoted — except a leading one, which is the base URL
        (``{order_api}/{order_number}``)."""
        quote = functools.partial(urllib.parse.quote, safe="")
        base = _LEADING_PLACEHOLDER.match(template)
        if base is None:
            return self._text(template, quote)
        return as_text(self.variables.get(base.group(1))) + self._text(template[base.end() :], quote)

    async def _set(self, node_id: str, node: SetNode) -> StepOutcome:
        for name, value in node.values.items():
            self._set_variable(name, self._text(value) if isinstance(value, str) else value)
        return StepOutcome("set", node.next, dict(node.values))

    def _set_variable(self, name: str, value: Value) -> None:
        if name == "language" and value not in LANGUAGES:
            log.warning("ivr.language_refused", call_id=self.call.call_id, value=value)
            return
        self.variables[name] = value

    async def _business_hours(self, node_id: str, node: BusinessHoursNode) -> StepOutcome:
        now = self.x.clock()
        zone = ZoneInfo(node.timezone)
        local = now.astimezone(zone)
        given = local.isoformat(timespec="minutes")
        override = self.x.hours_override(self.revision.name, now) if self.x.hours_override else None
        if override is not None:
            until = override.until.astimezone(zone).isoformat(timespec="minutes")
            given += f", {override.state} by {override.set_by} until {until}: {override.reason}"
            return StepOutcome(override.state, node.open if override.state == "open" else node.closed, given)
        if local.date() not in node.special_days and local.date() in node.holidays:
            return StepOutcome("holiday", node.holiday or node.closed, given)
        moment = local.time().replace(tzinfo=None)
        if any(start <= moment < end for start, end in node.ranges(local.date())):
            return StepOutcome("open", node.open, given)
        return StepOutcome("closed", node.closed, given)

    async def _queue(self, node_id: str, node: QueueNode) -> StepOutcome:
        await self._say(node.prompt)
        priority = self._priority(node.priority)
        self.context.queue = node.queue
        recorded = await self.call.recorded_as(RECORDED_WAIT_SECONDS)
        request = QueueRequest(
            call_id=self.call.call_id,
            caller=self.call.caller,
            queue=node.queue,
            skills=node.skills or [node.queue],
            priority=priority,
            max_wait=node.max_wait,
            context=self._snapshot(),
            customer_id=recorded.customer_id if recorded else None,
            conversation_id=recorded.conversation_id if recorded else None,
            vip=recorded.vip if recorded else False,
        )
        # the event belongs to this node's step, which is recorded when the wait is over
        self._emit(
            "call.queued",
            request.model_dump(mode="json", include=QUEUED_EVENT_FIELDS),
            self.steps + 1,
        )
        given = {"queue": node.queue, "skills": request.skills, "priority": priority}
        await self.x.queues.enqueue(request)
        hold = asyncio.ensure_future(self._hold(node)) if node.hold_prompt or node.position_prompt else None
        outcome: QueueOutcome = "unavailable"
        try:
            async with asyncio.timeout(node.max_wait + 30):
                outcome = await self.x.queues.wait(self.call.call_id, node.max_wait)
        except TimeoutError:
            outcome = "timeout"
        finally:
            await stop_tasks(hold)  # hold music that failed must not change what the queue decided
            if outcome != "connected":
                await self._withdraw(outcome)
        if outcome == "connected":
            return StepOutcome("connected", None, given, end="queued")
        return StepOutcome(outcome, node.overflow, given)

    async def _hold(self, node: QueueNode) -> None:
        """The hold prompt in a loop; the caller's place in line after the first one, then every
        ``position_every`` seconds (not when the ACD cannot tell it: then the caller just holds)."""
        loop = asyncio.get_running_loop()
        announced = -math.inf
        try:
            while True:
                await self._say(node.hold_prompt)
                if node.position_prompt and loop.time() - announced >= node.position_every:
                    announced = loop.time()
                    if await self._learn_position():
                        await self._say(node.position_prompt)
                await asyncio.sleep(HOLD_GAP_SECONDS)
        finally:
            if not self.call.hung_up.is_set():
                with contextlib.suppress(Exception):
                    await self.call.stop_playback()

    async def _recent_contacts(self) -> int:
        """The caller's earlier contacts; 0 when that cannot be read in time (it only adds urgency)."""
        if self.x.recent_contacts is None:
            return 0
        try:
            async with asyncio.timeout(POSITION_TIMEOUT_SECONDS):
                return await self.x.recent_contacts(self.call.caller)
        except Exception as exc:
            log.warning("ivr.recent_contacts_failed", call_id=self.call.call_id, error=repr(exc))
            return 0

    async def _learn_position(self) -> bool:
        """Set {queue_position} and {queue_wait_minutes} from the ACD; False when it cannot tell."""
        try:
            async with asyncio.timeout(POSITION_TIMEOUT_SECONDS):
                place = await self.x.queues.position(self.call.call_id)
        except Exception as exc:  # a slow or failing ACD costs the announcement, never the wait
            log.warning("ivr.position_failed", call_id=self.call.call_id, error=repr(exc))
            return False
        if place is None:
            return False
        self.variables["queue_position"] = place.position
        self.variables["queue_wait_minutes"] = max(1, math.ceil(place.expected_wait_seconds / 60))
        return True

    async def _withdraw(self, reason: str) -> None:
        try:
            await self.x.queues.withdraw(
                self.call.call_id, "hung_up" if self.call.hung_up.is_set() else reason
            )
        except Exception:
            log.exception("ivr.withdraw_failed", call_id=self.call.call_id)

    async def _voicemail(self, node_id: str, node: VoicemailNode) -> StepOutcome:
        await self._say(node.prompt)
        if node.beep:
            await self.call.play(await self.x.prompts.beep())
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", self.call.call_id)[:100]
        path = self.x.recordings_dir / f"{name}-{self.steps + 1}.wav"
        recording = await self.call.record(path, node.max_seconds)  # creates the directory
        self.variables[node.into] = str(recording.path)
        given: dict[str, Any] = {"path": str(recording.path), "seconds": recording.duration_seconds}
        if recording.error is not None:  # the message was not kept whole: say so where the path is read
            given["error"] = str(recording.error)
        return StepOutcome("recorded", node.next, given, end=None if node.next else "voicemail")

    async def _callback(self, node_id: str, node: CallbackNode) -> StepOutcome:
        await self._say(node.prompt, barge_in=True)
        digits = await self.call.collect_dtmf(1, node.timeout, "", first_digit_timeout=node.timeout)
        if digits != node.accept:
            return StepOutcome("declined", node.declined, digits or "timeout")
        number = self._text(node.number).strip()
        if not number:
            return StepOutcome("no number", node.declined, digits)
        await self.x.queues.request_callback(
            CallbackRequest(
                call_id=self.call.call_id, number=number, queue=node.queue, context=self._snapshot()
            )
        )
        return StepOutcome("accepted", node.accepted, digits)

    async def _ticket(self, node_id: str, node: TicketNode) -> StepOutcome:
        intent = self._text(node.intent).strip() or "unknown"
        fields = {
            name: value for name, template in node.fields.items() if (value := self._text(template).strip())
        }
        confidence = next(
            (record.confidence for record in reversed(self.context.intents) if record.intent == intent), 1.0
        )
        request = TicketRequest(
            call_id=self.call.call_id,
            caller=self.call.caller,
            intent=intent,
            confidence=confidence,
            entities=fields,
            text=self._text(node.summary).strip(),
            priority=self._priority(node.priority),
            language=self.language,
            idempotency_key=f"call:{self.call.call_id}:ticket:{node_id}",
            context=self._snapshot(),
        )
        given = {"intent": intent, "entities": fields, "priority": request.priority}
        try:
            receipt = await self.x.tickets.open(request)
        except Exception as exc:
            log.exception("ivr.ticket_failed", call_id=self.call.call_id, node=node_id)
            return StepOutcome(f"error: {type(exc).__name__}", node.on_error or node.next, given)
        self.context.ticket = receipt
        self.variables[node.into] = receipt.number or ""
        return StepOutcome(f"ticket {receipt.action} {receipt.number or ''}".strip(), node.next, given)

    async def _transfer(self, node_id: str, node: TransferNode) -> StepOutcome:
        await self._say(node.prompt)
        target = self._text(node.target)
        try:
            await self.call.transfer(target, node.attended)
        except CallEnded:
            raise
        except Exception as exc:
            log.warning("ivr.transfer_failed", call_id=self.call.call_id, target=target, error=str(exc))
            return StepOutcome(f"error: {exc}"[:200], node.on_failure, target)
        return StepOutcome("transferred", None, target, end="transferred")

    async def _goto(self, node_id: str, node: GotoNode) -> StepOutcome:
        return StepOutcome("goto", node.target)

    async def _hangup(self, node_id: str, node: HangupNode) -> StepOutcome:
        await self._say(node.prompt)
        await self.call.hangup(node.cause)
        return StepOutcome(f"hangup {node.cause}", None, end="completed")


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> Condition:
    return compile_condition(source)


def _dig(data: Any, path: str) -> Value:
    """The scalar at dotted ``path`` in JSON ``data`` (``order.items.0.sku``), ``""`` when absent."""
    current = data
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return ""
    if isinstance(current, str | int | float | bool) or current is None:
        return current
    return ""


class LazySession:
    """An aiohttp client session opened by the first ``http`` step: a telephony worker whose calls never
    reach one does not load aiohttp (~9 MiB)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def request(self, method: str, url: str, **options: Any) -> Any:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session.request(method, url, **options)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
