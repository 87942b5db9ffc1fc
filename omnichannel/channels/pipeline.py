"""The intent pipeline every channel runs on what a customer said: analyse the text, put the analysis on
the timeline (``intent``), hand the signal to the ticket engine.

The ticket engine tells the customer the new ticket's number itself (its notifier sends on the channel
they came from); the pipeline only returns what the channel should answer in the moment — the question
to ask when information is missing. The voice side calls it with ``transcript.final`` text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from core.log import get_logger
from core.settings import Settings
from omnichannel import Actor, Channel, NewEvent
from omnichannel.contacts import RecentContacts
from omnichannel.timeline import TimelineService
from tickets import IntentOutcome, IntentSignal, Priority, Reason, TicketService
from tickets.models import CustomerMessage, CustomerMessageOutcome

log = get_logger(__name__)

_NLU = Actor(type="system", name="nlu")
if TYPE_CHECKING:
    from asr.nlu import Analysis, Analyzer


def load_analyzer() -> Analyzer:
    """The process's shared analyzer, imported on first use: NumPy, jieba and the model cost ~50 MB,
    which the Celery worker and beat, importing this module, should not pay until a message needs it."""
    from asr.nlu import default_analyzer

    return default_analyzer()


_LANGUAGES: dict[str, Literal["zh", "en"]] = {"zh": "zh", "en": "en"}  # "mixed" leaves it to the customer


@dataclass(frozen=True)
class PipelineResult:
    analysis: Analysis | None  # None when the message was a rating (CSAT): nothing more to analyse
    outcome: IntentOutcome | None  # None when no intent was recognised
    reply: str | None  # what the channel should answer now, if anything
    tickets: CustomerMessageOutcome | None = None  # what the message meant for the customer's tickets


class IntentPipeline:
    def __init__(
        self,
        timeline: TimelineService,
        tickets: TicketService,
        analyzer: Callable[[], Analyzer] = load_analyzer,
        repeat_contact_hours: float = Settings.model_fields["nlu_repeat_contact_hours"].default,
    ) -> None:
        """``repeat_contact_hours``: earlier contacts within it make a message a repeated contact
        (``HUILIU_NLU_REPEAT_CONTACT_HOURS``)."""
        self.timeline = timeline
        self.tickets = tickets
        self.analyzer = analyzer
        self.contacts = RecentContacts(
            timeline, timeline.customers, window=dt.timedelta(hours=repeat_contact_hours)
        )

    async def customer_message(
        self, *, customer_id: str, conversation_id: str | None, channel: Channel, text: str, source_key: str
    ) -> CustomerMessageOutcome | None:
        """What the message means for the customer's tickets, before anything else: a CSAT rating is
        recorded (and thanked for), a reply reopens a resolved ticket or resumes one waiting for the
        customer. A tickets failure is logged and never costs the message its own handling."""
        try:
            return await self.tickets.on_customer_message(
                CustomerMessage(
                    customer_id=customer_id,
                    channel=channel,
                    conversation_id=conversation_id,
                    text=text[:10_000],
                    message_key=source_key[:200],
                )
            )
        except Exception:
            log.exception("pipeline.customer_message_failed", customer_id=customer_id, source=source_key)
            return None

    async def run(
        self,
        *,
        customer_id: str,
        conversation_id: str | None,
        channel: Channel,
        text: str,
        source_key: str,
    ) -> PipelineResult:
        """Analyse ``text`` said by the customer; ``source_key`` names the message it came from and makes a
        repeat of the same message change nothing twice. A CSAT rating stops here."""
        said = await self.customer_message(
            customer_id=customer_id,
            conversation_id=conversation_id,
            channel=channel,
            text=text,
            source_key=source_key,
        )
        if said is not None and said.action == "csat_recorded":
            return PipelineResult(None, None, None, said)
        analysis = await self.analyse(
            customer_id=customer_id,
            conversation_id=conversation_id,
            channel=channel,
            text=text,
            source_key=source_key,
        )
        result = await self.to_tickets(
            analysis,
            customer_id=customer_id,
            conversation_id=conversation_id,
            channel=channel,
            text=text,
            source_key=source_key,
        )
        return PipelineResult(result.analysis, result.outcome, result.reply, said)

    async def analyse(
        self, *, customer_id: str, conversation_id: str | None, channel: Channel, text: str, source_key: str
    ) -> Analysis:
        """The analysis of ``text``, recorded on the timeline as ``intent.recognised`` (once per source).
        The customer's earlier contacts (``omnichannel.contacts``) count towards its priority."""
        recent = await self._recent_contacts(customer_id, channel, conversation_id)
        analysis = await asyncio.to_thread(lambda: self.analyzer().analyze(text, recent_contacts=recent))
        await self.timeline.append(
            customer_id,
            NewEvent(
                kind="intent.recognised",
                channel=channel,
                conversation_id=conversation_id,
                body=analysis.model_dump(mode="json"),
                idempotency_key=f"intent:{source_key}",
            ),
            _NLU,
        )
        return analysis

    async def _recent_contacts(self, customer_id: str, channel: Channel, conversation_id: str | None) -> int:
        try:
            return await self.contacts.before(customer_id, channel=channel, conversation_id=conversation_id)
        except Exception:  # the message is still analysed, only without its history
            log.exception("pipeline.recent_contacts_failed", customer_id=customer_id)
            return 0

    async def to_tickets(
        self,
        analysis: Analysis,
        *,
        customer_id: str,
        conversation_id: str | None,
        channel: Channel,
        text: str,
        source_key: str,
    ) -> PipelineResult:
        """Hand a recognised intent to the ticket engine; the question to ask when something is missing."""
        from asr.nlu.models import UNKNOWN_INTENT

        if analysis.intent == UNKNOWN_INTENT:
            return PipelineResult(analysis, None, None)
        entities: dict[str, str] = {}
        for entity in analysis.entities:
            entities.setdefault(entity.kind.value, entity.value)
        outcome = await self.tickets.from_intent(
            IntentSignal(
                customer_id=customer_id,
                intent=analysis.intent,
                confidence=analysis.confidence,
                entities=entities,
                priority=Priority(analysis.priority.value),
                reasons=[Reason(code=r.code, zh=r.zh, en=r.en) for r in analysis.reasons],
                text=text[:10_000],
                channel=channel,
                conversation_id=conversation_id,
                language=_LANGUAGES.get(analysis.language or ""),
                idempotency_key=source_key,
            )
        )
        return PipelineResult(analysis, outcome, outcome.prompt if outcome.action == "needs_input" else None)
