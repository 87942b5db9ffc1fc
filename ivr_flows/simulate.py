"""``huiliu flows simulate FILE``: walk a flow as a caller, in a terminal or from a script on stdin.

The flow runs on the real executor with the real NLU; only the call is simulated: prompts are printed as
text instead of spoken, and each time the flow waits for the caller one line is read —

* digits (``1``, ``12345#``, ``*``): keys pressed (type-ahead is kept, as on a phone);
* anything else: what the caller says (for ``listen`` nodes);
* an empty line: the caller stays silent (the wait times out);
* ``hangup`` or the end of input: the caller hangs up.

Queues connect at once (``--queue-outcome`` changes that), tickets are numbered in memory, ``http`` nodes
make their real requests. Every step is printed as it happens, then the outcome, path and variables.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

import aiohttp

from ivr_flows.executor import FlowExecutor
from ivr_flows.expressions import Template, Value
from ivr_flows.fake_call import FakeCall
from ivr_flows.gateways import InMemoryQueueGateway, RecordingTicketGateway
from ivr_flows.line import LazyAnalyzer
from ivr_flows.models import CallContext, QueueOutcome
from ivr_flows.nodes import PromptPart
from ivr_flows.tts import PromptRenderer
from ivr_flows.understanding import Heard, TranscriptListener
from ivr_flows.validation import Revision
from telephony.api import HangupCause, PlaybackOutcome, Prompt

KEYS = re.compile(r"^[0-9*#A-Da-d]+$")
HANG_UP = "hangup"


class Console:
    """The caller's lines, read one at a time and only when the flow waits for one; two waits at once (a
    ``listen`` node with a DTMF fallback) share the same line."""

    def __init__(self, source: TextIO, out: TextIO, *, interactive: bool) -> None:
        self.source = source
        self.out = out
        self.interactive = interactive
        self._pending: asyncio.Future[str | None] | None = None

    async def line(self, hint: str) -> str | None:
        if self._pending is None or self._pending.done():
            if self.interactive:
                self.out.write(f"  [{hint}] > ")
                self.out.flush()
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._read))
        return await asyncio.shield(self._pending)

    def _read(self) -> str | None:
        raw = self.source.readline()
        if not raw:
            return None
        text = raw.strip()
        if not self.interactive:
            self.out.write(f"  > {text}\n")
        return None if text.lower() == HANG_UP else text


class TextPrompts(PromptRenderer):
    """Prompts as the text they would speak (nothing is synthesised)."""

    def __init__(self) -> None:
        super().__init__(Path(tempfile.gettempdir()))
        self.texts: dict[Path, str] = {}

    async def render(
        self, parts: Sequence[PromptPart], language: str, variables: Mapping[str, Value] | None = None
    ) -> Path:
        text = " ".join(_text(part, language, dict(variables or {})) for part in parts)
        path = Path(f"prompt-{len(self.texts) + 1}")
        self.texts[path] = text
        return path

    async def beep(self) -> Path:
        path = Path("beep")
        self.texts[path] = "(beep)"
        return path


def _text(part: PromptPart, language: str, variables: dict[str, Value]) -> str:
    if isinstance(part.say, dict):
        chosen = part.language or language
        text = part.say.get(chosen) or next(iter(part.say.values()))  # type: ignore[call-overload]
    elif isinstance(part.say, str):
        text = part.say
    else:
        text = f"[{part.file}]"
    return Template(str(text)).render(variables)


class SimulatedCall(FakeCall):
    def __init__(self, console: Console, prompts: TextPrompts, out: TextIO, **options: Any) -> None:
        super().__init__(time_scale=0.0, **options)
        self.console = console
        self.prompts = prompts
        self.out = out

    async def play(self, prompt: Prompt, *, barge_in: bool = False) -> PlaybackOutcome:
        self._check()
        text = self.prompts.texts.get(Path(str(prompt)), str(prompt)) if not isinstance(prompt, bytes) else ""
        self.out.write(f"  ♪ {text}\n")
        return PlaybackOutcome.finished

    async def collect_dtmf(
        self,
        max_digits: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the IVR's inter-digit timeout, not a call deadline
        terminators: str = "#",
        first_digit_timeout: float | None = None,
    ) -> str:
        self._check()
        while not self._buffer:
            line = await self.console.line(f"keys, up to {max_digits}")
            if line is None:
                self.hang_up_by_caller()
                self._check()
            elif line == "":
                return ""
            elif KEYS.match(line):
                self.press(line.upper())
        return await super().collect_dtmf(max_digits, 0.0, terminators, 0.0)

    async def transfer(self, target: str, attended: bool = False) -> None:
        self.out.write(f"  ⇢ transferred to {target}{' (attended)' if attended else ''}\n")
        await super().transfer(target, attended)

    async def hangup(self, cause: HangupCause | str = HangupCause.normal) -> None:
        if not self.hung_up.is_set():
            self.out.write(f"  ☎ the flow hangs up ({cause})\n")
        await super().hangup(cause)

    async def log_event(self, kind: str, body: dict[str, Any]) -> None:
        await super().log_event(kind, body)
        if kind == "ivr.step":
            given = (
                ""
                if body.get("input") in (None, [], {})
                else f" {json.dumps(body['input'], ensure_ascii=False)}"
            )
            after = f" → {body['next']}" if body.get("next") else ""
            self.out.write(
                f"[{body['step']}] {body['node']} ({body['type']}){given}: {body['result']}{after}\n"
            )
        elif kind == "call.queued":
            self.out.write(
                f"  ⇢ queued in {body['queue']} (skills {', '.join(body['skills'])}, {body['priority']})\n"
            )


class ConsoleSpeech:
    """The caller's words from the console for ``listen`` nodes."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def recognize(
        self,
        audio: AsyncIterator[bytes],
        *,
        language: str,
        grammar: Sequence[str] | None,
        timeout: float,  # noqa: ASYNC109 - how long the caller may take to speak, part of the protocol
        listener: TranscriptListener | None = None,
    ) -> Heard | None:
        hint = "say something" + (f" ({' / '.join(grammar)})" if grammar else "")
        while True:
            line = await self.console.line(hint)
            if not line:
                return None  # silence; a hang-up is the call's to notice
            if not KEYS.match(line):
                return Heard(line, 1.0, line if grammar and line in grammar else None)


async def simulate(
    revision: Revision,
    source: TextIO,
    out: TextIO,
    *,
    interactive: bool,
    caller: str = "+8613800138000",
    called: str = "4008001234",
    at: dt.datetime | None = None,
    queue_outcome: QueueOutcome = "connected",
) -> CallContext:
    console = Console(source, out, interactive=interactive)
    prompts = TextPrompts()
    call = SimulatedCall(console, prompts, out, caller=caller, called=called)
    moment = at or dt.datetime.now(dt.UTC)
    async with aiohttp.ClientSession() as http:
        executor = FlowExecutor(
            prompts=prompts,
            analyzer=LazyAnalyzer(),
            queues=InMemoryQueueGateway(outcome=queue_outcome),
            tickets=RecordingTicketGateway(),
            speech=ConsoleSpeech(console),
            http=http,
            recordings_dir=Path(tempfile.mkdtemp(prefix="huiliu-simulate-")),
            transcribe=False,
            clock=lambda: moment,
        )
        context = await executor.run(revision, call)
    out.write(f"outcome: {context.outcome}\n")
    out.write("path: " + " → ".join(step.node for step in context.path) + "\n")
    shown = {name: value for name, value in context.variables.items() if name not in ("call_id",)}
    out.write("variables: " + json.dumps(shown, ensure_ascii=False, sort_keys=True) + "\n")
    if context.ticket is not None:
        out.write(f"ticket: {context.ticket.action} {context.ticket.number or ''}\n".replace(" \n", "\n"))
    return context


def run_simulation(
    revision: Revision,
    *,
    caller: str,
    at: dt.datetime | None,
    queue_outcome: Literal["connected", "timeout", "unavailable"],
) -> CallContext:
    return asyncio.run(
        simulate(
            revision,
            sys.stdin,
            sys.stdout,
            interactive=sys.stdin.isatty(),
            caller=caller,
            at=at,
            queue_outcome=queue_outcome,
        )
    )
