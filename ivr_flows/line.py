"""The IVR answering real calls: the ``CallRouter`` a telephony worker runs (``telephony_router`` =
``ivr_flows.line:router``, the default).

Each dialed number maps to a flow (setting ``ivr_lines``, ``*`` for every other number). On start the
worker installs the shipped flows that have no version yet, loads the active versions from MongoDB and
follows activations (``FlowRegistry``: bus + polling, an invalid version is refused and the loaded one
keeps serving). A call runs the revision that was active when it arrived. Where the flow hands the caller
on:

* ``queue`` → the ACD: a contact in MongoDB (``queue_contacts``, with the skills, priority and the call's
  IVR context for the screen-pop) that the web process's ACD routes; the call stays up while it waits and
  after an agent took it (the agent's leg is the desktop's business) until someone hangs up;
* ``ticket`` → the tickets service; ``ivr.step``, ``call.queued`` and ``transcript.final`` → the call's
  timeline through ``call.log_event``; ``transcript.partial`` → the bus.

Queues a flow names that the ACD does not know yet are created (skills from the node) when the flow loads,
so a new flow never queues callers into nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import threading
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import RedisError

from core.aio import stop_tasks
from core.bus import CHANNEL_PREFIX
from core.errors import Conflict
from core.log import get_logger
from core.settings import Settings
from ivr_flows.errors import NoActiveFlow
from ivr_flows.executor import FlowExecutor, LazySession
from ivr_flows.gateways import QueueGateway, TicketServiceGateway
from ivr_flows.nodes import QueueNode
from ivr_flows.registry import FlowRegistry
from ivr_flows.service import FLOW_ACTIVATED, FLOW_HOURS_OVERRIDE, SHIPPED_DIR, FlowService
from ivr_flows.store import FlowStore
from ivr_flows.transcript import transcribe_call
from ivr_flows.tts import PromptRenderer
from ivr_flows.understanding import AnalysisLike, AsrSpeechRecognizer
from ivr_flows.validation import Revision
from telephony.api import Call, CallHandler, CallRouter, HangupCause
from telephony.routing import RouterServices

if TYPE_CHECKING:
    from agent_desktop import Agent, Contact, Desktop, ScreenPop
    from asr import Recognizer
    from asr.nlu import Analyzer
    from omnichannel.channels import Channels

log = get_logger(__name__)


def parse_lines(spec: str) -> dict[str, str]:
    """``"1000=main, *=main"`` → ``{"1000": "main", "*": "main"}`` (the ``ivr_lines`` setting)."""
    lines: dict[str, str] = {}
    for item in spec.split(","):
        number, _, flow = item.strip().partition("=")
        if number and flow:
            lines[number.strip()] = flow.strip()
    return lines


class LazyAnalyzer:
    """``asr.nlu.Analyzer`` loaded on the first intent node (it takes seconds and a hundred MB; most
    workers of a pool never need it)."""

    def __init__(self) -> None:
        self._analyzer: Analyzer | None = None
        self._lock = threading.Lock()

    def analyze(
        self, text: str, *, language: Literal["zh", "en", "mixed"] | None = None, recent_contacts: int = 0
    ) -> AnalysisLike:
        with self._lock:
            if self._analyzer is None:
                from asr.nlu import default_analyzer

                self._analyzer = default_analyzer()
        return self._analyzer.analyze(text, language=language, recent_contacts=recent_contacts)


class QuietNotifier:
    """The ACD's notifier on a telephony worker: the worker only adds and withdraws contacts; the web
    process that routes them tells the desktops."""

    async def offer(self, agent_id: str, pop: ScreenPop) -> None:
        pass

    async def offer_withdrawn(self, agent_id: str, contact_id: str, reason: str) -> None:
        pass

    async def agent_changed(self, agent: Agent) -> None:
        pass

    async def contact_changed(self, contact: Contact) -> None:
        pass


class FlowLine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lines = parse_lines(settings.ivr_lines)
        self.prompts = PromptRenderer(settings.data_dir / "prompt-cache", settings.data_dir / "prompts")
        self.registry: FlowRegistry | None = None
        self.executor: FlowExecutor | None = None
        self.recognizer: Recognizer | None = None
        self.channels: Channels | None = None
        self.desktop: Desktop | None = None
        self.services: RouterServices | None = None
        self._http: LazySession | None = None
        self._background: set[asyncio.Task[Any]] = set()

    def route(self, called: str) -> CallHandler | None:
        name = self.lines.get(called) or self.lines.get(called.lstrip("+")) or self.lines.get("*")
        if name is None:
            return None
        return functools.partial(self.answer, name)

    async def start(self, services: RouterServices) -> None:
        from agent_desktop import Desktop
        from asr import build_recognizer
        from core.auth import UserService
        from omnichannel.channels import create_channels
        from omnichannel.contacts import RecentContacts
        from tickets import create_service

        self.services = services
        settings, db, omni = services.settings, services.db, services.omni
        # The shipped flows' intents are checked by the tests; loading the NLU here to check them again
        # would cost every worker ~140 MB.
        flows = FlowService(FlowStore(db), services.bus)
        for name in sorted(set(self.lines.values())):
            if (SHIPPED_DIR / f"{name}.yaml").is_file():
                await flows.install_shipped(name)
        # customers hear about their ticket on their channel (the SMS with its number), as from the web
        self.channels = create_channels(db, omni, services.bus.redis, settings)
        tickets = create_service(db, omni, settings, notifier=self.channels.notifier)
        self.desktop = Desktop.create(db, omni, tickets, UserService(db), QuietNotifier())
        self.recognizer = build_recognizer(settings)
        self._http = LazySession()
        # The bus is not started in a worker (its listener takes every event of the platform): the
        # registry polls, and _follow_activations hears flow.activated and flow.hours_override alone.
        self.registry = FlowRegistry(
            FlowStore(db), None, poll_interval=settings.ivr_flow_poll_seconds, on_loaded=self._loaded
        )
        self.executor = FlowExecutor(
            prompts=self.prompts,
            analyzer=LazyAnalyzer(),
            queues=self.queues,
            tickets=TicketServiceGateway(tickets, omni),
            speech=AsrSpeechRecognizer(self.recognizer, finish_grace=self.settings.ivr_listen_decode_seconds),
            http=self._http,
            recordings_dir=services.recordings_dir / "voicemail",
            bus=services.bus,
            transcribe=settings.ivr_transcribe == "listen",
            hours_override=self.registry.hours_override,
            recent_contacts=RecentContacts(
                omni.timeline,
                omni.customers,
                window=dt.timedelta(hours=settings.nlu_repeat_contact_hours),
            ).for_caller,
        )
        await self.registry.start()
        self._spawn(self._follow_activations(), "flow-activations")

    @property
    def queues(self) -> QueueGateway:
        assert self.desktop is not None
        return self.desktop.gateway

    async def stop(self) -> None:
        if self.registry is not None:
            await self.registry.stop()
        await stop_tasks(*self._background)
        if self._http is not None:
            await self._http.close()
        if self.recognizer is not None:
            await self.recognizer.aclose()
        if self.channels is not None:
            await self.channels.close()

    async def answer(self, name: str, call: Call) -> None:
        assert self.registry is not None and self.executor is not None
        try:
            revision = self.registry.current(name)
        except NoActiveFlow:
            log.error("ivr.no_active_flow", flow=name, call_id=call.call_id)
            await call.hangup(HangupCause.unavailable)
            return
        transcribing: asyncio.Task[None] | None = None
        if self.settings.ivr_transcribe == "call" and self.recognizer is not None:
            await call.answer()
            transcribing = asyncio.create_task(
                transcribe_call(
                    call,
                    self.recognizer,
                    self.settings.ivr_transcript_language,
                    self.services.bus if self.services else None,
                ),
                name=f"transcript-{call.call_id}",
            )
        try:
            context = await self.executor.run(revision, call)
            if context.outcome == "queued":
                await call.hung_up.wait()  # an agent has the caller: the call ends when one of them leaves
        finally:
            if transcribing is not None:
                await stop_tasks(transcribing)

    async def _loaded(self, revision: Revision) -> None:
        await self._ensure_queues(revision)
        self._spawn(self._prepare_prompts(revision), f"prompts-{revision.name}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _follow_activations(self) -> None:
        """Reload a flow within milliseconds of its activation or of an office-hours override
        (``flow.activated``, ``flow.hours_override`` on the bus's Redis channels); polling covers what a
        lost connection misses."""
        assert self.services is not None and self.registry is not None
        delay = 0.2
        while True:
            pubsub = self.services.bus.redis.pubsub()
            try:
                await pubsub.subscribe(CHANNEL_PREFIX + FLOW_ACTIVATED, CHANNEL_PREFIX + FLOW_HOURS_OVERRIDE)
                delay = 0.2
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    name = json.loads(message["data"]).get("name")
                    if not isinstance(name, str):
                        continue
                    try:
                        await self.registry.refresh(name)
                    except Exception as exc:  # MongoDB away: the poll loads it later
                        log.warning("ivr.reload_failed", flow=name, error=str(exc))
            except (RedisError, OSError, ValueError) as exc:
                log.warning("ivr.activations_unheard", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _ensure_queues(self, revision: Revision) -> None:
        from agent_desktop import QueueConfig

        assert self.desktop is not None
        for node in revision.flow.nodes.values():
            if not isinstance(node, QueueNode):
                continue
            skills: Sequence[str] = node.skills or [node.queue]
            config = QueueConfig(
                id=node.queue,
                name=node.queue,
                skills={skill: 1 for skill in skills},
                max_wait_seconds=node.max_wait,
            )
            with contextlib.suppress(Conflict):
                await self.desktop.store.create_queue(config)
                log.info("ivr.queue_created", queue=node.queue, flow=revision.name)

    async def _prepare_prompts(self, revision: Revision) -> None:
        """Render the flow's fixed prompts ahead of the first caller (they are rendered on demand too)."""
        rendered = await self.prompts.prepare(list(revision.flow.prompt_parts()), revision.flow.language)
        log.info("ivr.prompts_ready", flow=revision.name, version=revision.version, prompts=rendered)


def router(settings: Settings) -> CallRouter:
    return FlowLine(settings)
