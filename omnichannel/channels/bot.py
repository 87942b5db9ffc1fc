"""The self-service bot in front of agents on web chat, WeChat and SMS.

For every customer message the bot (1) analyses it through the intent pipeline (``intent.recognised`` on the
timeline), then answers, in this order:

* **hand off** to a human — on request (``human_agent``), on negative sentiment, for a VIP, or on the second
  message it could not answer — with a ``bot.summary`` event (intent, entities, what the bot already said)
  that the ACD's screen-pop shows, and an ACD contact whose skills come from the channel, the intent, the
  language and VIP;
* **ticket status** for "我的退货进度怎么样？" from the tickets package;
* **order status, payment and stock** for an order number through ``omnichannel.crm``;
* **tickets** for intents that make one (return, repair…) — the ticket engine itself tells the customer
  the number; the bot only asks for what is missing (and remembers what it asked for);
* **knowledge base** answers (BM25) above the confidence threshold.

A bot session is one stretch of a conversation served by the bot (``bot_sessions``). When it ends —
handed off, or idle / closed — one document lands in ``bot_outcomes``:
``{conversation_id, customer_id, intent, outcome: "resolved"|"handed_off"|"abandoned", channel, at}``.
``abandoned``: the customer left without a handoff and without one useful answer from the bot, so honest
deflection is resolved / (resolved + handed_off + abandoned).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bson import ObjectId
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.db import Database, register_indexes, utcnow
from core.errors import HuiliuError, NotFound, TooManyRequests
from core.log import get_logger
from omnichannel import Actor, Channel, Customer, IdentityKind, NewEvent, Omnichannel
from omnichannel.channels.kb import KnowledgeBase
from omnichannel.channels.pipeline import IntentPipeline
from omnichannel.crm import (
    ORDER_STATUS_LABELS,
    PAYMENT_STATE_LABELS,
    CrmConnector,
    CrmUnavailable,
    OrderStatus,
)
from tickets import SYSTEM, Ticket, TicketService
from tickets.models import TicketQuery

if TYPE_CHECKING:
    from agent_desktop import Desktop
    from asr.nlu import Analysis
    from omnichannel.channels.linking import IdentityLinker

log = get_logger(__name__)

register_indexes(
    "bot_sessions",
    IndexModel([("active_key", ASCENDING)], unique=True, sparse=True),
    IndexModel([("status", ASCENDING), ("last_at", ASCENDING)]),
)
register_indexes(
    "bot_outcomes",
    IndexModel([("at", ASCENDING)]),
    IndexModel([("conversation_id", ASCENDING)]),
)

Lang = Literal["zh", "en"]
_BOT = Actor(type="bot", name="bot")
_LIVE_CONTACT = ("waiting", "routing", "offered", "connected")

# "What is happening with my return?" — a question about something already under way.
_STATUS_QUESTION = re.compile(
    r"进度|进展|状态|怎么样了|处理得?(怎么样|如何|到哪)|到哪(一步|了)|有(没有)?结果|好了没|办好了吗"
    r"|\bstatus\b|\bprogress\b|\bupdate on\b|\bhow is my\b"
    r"|\bwhere is my (return|refund|ticket|exchange|repair)",
    re.IGNORECASE,
)
# A verification code on its own; a question (for the knowledge base rather than a ticket).
_CODE = re.compile(r"\s*\d{6}\s*")
_QUESTION = re.compile(
    r"怎么|怎样|如何|什么|哪|多少|几|吗|么|？|\?|^\s*(how|what|when|where|which|can|do|does|is|are)\b",
    re.IGNORECASE,
)
# Ticket intents whose agents share a skill; the ACD contact asks for it.
_INTENT_SKILLS = {
    "return_request": "after_sales",
    "exchange_request": "after_sales",
    "refund": "after_sales",
    "repair": "after_sales",
    "complaint": "complaints",
    "invoice": "billing",
    "payment": "billing",
    "order_status": "orders",
    "logistics": "orders",
    "cancel_order": "orders",
}
_ORDER_INTENTS = frozenset({"order_status", "logistics", "payment", "unknown", "greeting"})
_QUIET_INTENTS = frozenset({"unknown", "greeting", "human_agent"})

TICKET_STATUS_LABELS = {
    "new": {"zh": "已受理，等待处理", "en": "received, waiting to be handled"},
    "open": {"zh": "处理中", "en": "being handled"},
    "pending-customer": {"zh": "等待您的回复", "en": "waiting for your reply"},
    "pending-internal": {"zh": "处理中（相关部门协作中）", "en": "being handled (with another department)"},
    "resolved": {"zh": "已解决", "en": "resolved"},
    "closed": {"zh": "已关闭", "en": "closed"},
    "reopened": {"zh": "重新处理中", "en": "reopened and being handled"},
}
HANDOFF_REASONS = {
    "requested": {"zh": "客户要求人工", "en": "customer asked for an agent"},
    "negative_sentiment": {"zh": "客户情绪负面", "en": "negative sentiment"},
    "vip": {"zh": "VIP 客户", "en": "VIP customer"},
    "low_confidence": {"zh": "机器人两次未能回答", "en": "bot could not answer twice"},
    "no_bot": {"zh": "未启用机器人，直接转人工", "en": "no bot: straight to an agent"},
}

TEXTS: dict[str, dict[Lang, str]] = {
    "greeting": {
        "zh": "您好！我是智能客服，可以回答常见问题、查询订单和工单进度。需要人工请说“转人工”。",
        "en": "Hello! I'm the virtual assistant: I can answer common questions and look up orders and "
        "tickets. Say 'agent' any time to talk to a person.",
    },
    "not_understood": {
        "zh": "抱歉，我没有理解您的问题。可以换个说法吗？也可以说“转人工”联系客服。",
        "en": "Sorry, I didn't understand that. Could you rephrase it? You can also say 'agent' to talk "
        "to a person.",
    },
    "handoff": {
        "zh": "好的，正在为您转接人工客服，请稍候。您的问题我已转告客服，无需重复说明。",
        "en": "OK, I'm connecting you to an agent — please wait a moment. I've passed on your question, so "
        "you won't need to repeat it.",
    },
    "ask_order": {
        "zh": "请告诉我您的订单号，我帮您查询。",
        "en": "Please tell me your order number and I'll look it up.",
    },
    "order_unknown": {
        "zh": "没有找到订单 {number}，请核对订单号后再试。",
        "en": "I couldn't find order {number}; please check the number and try again.",
    },
    "crm_down": {
        "zh": "订单系统暂时无法查询，请稍后再试，或说“转人工”。",
        "en": "The order system can't be reached right now; please try again later or say 'agent'.",
    },
    "code_sent": {
        "zh": "验证码已发送至 {phone}，请回复短信中的 6 位验证码，以便关联您的账户。",
        "en": "I've sent a code to {phone}; reply with the 6 digits to link your account.",
    },
    "code_wait": {
        "zh": "验证码刚刚已发送，请一分钟后再试。",
        "en": "A code was just sent; please try again in a minute.",
    },
    "linked": {
        "zh": "手机号已验证，您的历史记录已关联，客服可以看到您之前的所有咨询。",
        "en": "Your number is verified and your history is linked: our agents can see all of it.",
    },
    "code_wrong": {
        "zh": "验证码不正确，请再试一次。",
        "en": "That code is not right; please try again.",
    },
    "no_tickets": {
        "zh": "您目前没有进行中的工单。如需办理退换货，请告诉我订单号。",
        "en": "You have no open tickets. If you'd like a return or exchange, tell me the order number.",
    },
}


@dataclass(frozen=True)
class BotConfig:
    kb_threshold: float = 0.5
    handoff_queue: str = "chat"
    idle_resolve_seconds: float = 900.0


@dataclass(frozen=True)
class BotReply:
    """What the channel should say now (``reply``), and what the bot decided."""

    reply: str | None
    analysis: Analysis | None = None
    source: str = (
        "none"  # kb | ticket_status | order | ticket | greeting | handoff | fallback | agent | csat | none
    )
    handed_off: bool = False
    contact_id: str | None = None


def language_of(analysis: Analysis | None, hint: str | None) -> Lang:
    if analysis is not None and analysis.language in ("zh", "en"):
        return "en" if analysis.language == "en" else "zh"
    return "en" if hint == "en" else "zh"


def handoff_skills(channel: Channel, intent: str, language: Lang, vip: bool) -> dict[str, int]:
    """The ACD skills a handed-off contact prefers (``NewContact.preferred_skills``): its channel, the
    intent's team, its language, VIP. Preferred, not required: a chat waits a little for the best agent but is
    never stranded because nobody logged in has all of them."""
    skills = {channel.value: 1, f"lang_{language}": 1}
    if intent in _INTENT_SKILLS:
        skills[_INTENT_SKILLS[intent]] = 1
    if vip:
        skills["vip"] = 1
    return skills


class Bot:
    def __init__(
        self,
        db: Database,
        omni: Omnichannel,
        pipeline: IntentPipeline,
        kb: KnowledgeBase,
        crm: CrmConnector,
        tickets: TicketService,
        config: BotConfig,
    ) -> None:
        self.sessions = db["bot_sessions"]
        self.outcomes = db["bot_outcomes"]
        self.omni = omni
        self.pipeline = pipeline
        self.kb = kb
        self.crm = crm
        self.tickets = tickets
        self.config = config
        self.desktop: Desktop | None = None
        self.linker: IdentityLinker | None = None

    # ------------------------------------------------------------------------------------ answering

    async def respond(
        self,
        *,
        customer_id: str,
        conversation_id: str,
        channel: Channel,
        text: str,
        source_key: str,
        language: str | None = None,
    ) -> BotReply:
        """Analyse and answer one customer message (call once per message; ``source_key`` names it).
        A CSAT rating is recorded by the tickets (which thank the customer) and not answered again."""
        said = await self.pipeline.customer_message(
            customer_id=customer_id,
            conversation_id=conversation_id,
            channel=channel,
            text=text,
            source_key=source_key,
        )
        if said is not None and said.action == "csat_recorded":
            return BotReply(None, None, "csat")
        session = await self._session(conversation_id, customer_id, channel)
        # Busy now, not idle: the idle sweep must not end the session while this message is analysed.
        session["last_at"] = utcnow()
        await self.sessions.update_one({"_id": session["_id"]}, {"$set": {"last_at": session["last_at"]}})
        analysis = await self.pipeline.analyse(
            customer_id=customer_id,
            conversation_id=conversation_id,
            channel=channel,
            text=text,
            source_key=source_key,
        )
        lang = language_of(analysis, language or session.get("language"))
        entities = {entity.kind.value: entity.value for entity in reversed(analysis.entities)}
        if session["status"] == "handed_off":
            # A person has it now: the bot keeps quiet (tickets still learn what was said).
            await self._tickets(analysis, customer_id, conversation_id, channel, text, source_key)
            return BotReply(None, analysis, "agent")
        await self._note(session, analysis, entities, lang)
        customer = await self.omni.customers.live(customer_id)
        intent = analysis.intent
        negative = analysis.sentiment.angry or analysis.sentiment.label == "negative"

        if self.linker is not None and channel is not Channel.sms:
            linking = await self._link(session, customer, text, entities, lang)
            if linking is not None:
                await self._answered(session, text, linking, "linking")
                return BotReply(linking, analysis, "linking")
        if intent == "human_agent":
            return await self._hand_off(session, analysis, "requested", lang, customer.vip, text)
        if negative or customer.vip:
            await self._tickets(analysis, customer_id, conversation_id, channel, text, source_key)
            reason = "negative_sentiment" if negative else "vip"
            return await self._hand_off(session, analysis, reason, lang, customer.vip, text)

        answer: tuple[str, str] | None = None
        if "order_number" in entities and intent in _ORDER_INTENTS:
            answer = await self._order(entities["order_number"], lang)
        if answer is None and _STATUS_QUESTION.search(text):
            answer = await self._ticket_status(customer.id, intent, lang)
        if answer is None and intent == "order_status":
            answer = (TEXTS["ask_order"][lang], "order")
        if answer is None and _QUESTION.search(text):
            # "How do I …?" is for the knowledge base even when it names a ticket intent (怎么退货).
            answer = await self._kb_answer(text, lang)
        if answer is None and session.get("pending_intent") and intent == "unknown" and entities:
            analysis = analysis.model_copy(
                update={"intent": session["pending_intent"], "confidence": session["pending_confidence"]}
            )
            intent = analysis.intent
        if answer is None and intent not in _QUIET_INTENTS:
            result = await self._tickets(analysis, customer_id, conversation_id, channel, text, source_key)
            if result is not None and result.outcome is not None and result.outcome.action != "ignored":
                pending = result.outcome.action == "needs_input"
                await self.sessions.update_one(
                    {"_id": session["_id"]},
                    {
                        "$set": {
                            "pending_intent": intent if pending else None,
                            "pending_confidence": analysis.confidence,
                        }
                    },
                )
                reply = result.reply
                await self._answered(session, text, reply or "", "ticket")
                return BotReply(reply, analysis, "ticket")
        if answer is None:
            answer = await self._kb_answer(text, lang)
        if answer is None and intent == "greeting":
            if channel is not Channel.webchat:
                # WeChat greets on subscribe and an SMS costs money: a bare "hello" there gets no answer.
                return BotReply(None, analysis, "greeting")
            answer = (TEXTS["greeting"][lang], "greeting")
        if answer is not None:
            reply, source = answer
            await self._answered(session, text, reply, source)
            return BotReply(reply, analysis, source.split(":")[0])

        misses = await self._missed(session)
        if misses >= 2:
            return await self._hand_off(session, analysis, "low_confidence", lang, customer.vip, text)
        return BotReply(TEXTS["not_understood"][lang], analysis, "fallback")

    async def hand_off(
        self, conversation_id: str, customer_id: str, channel: Channel, reason: str, language: str | None
    ) -> BotReply:
        """Hand the conversation to a human without a message (the widget's "talk to a person" button)."""
        session = await self._session(conversation_id, customer_id, channel)
        if session["status"] == "handed_off":
            return BotReply(None, None, "agent", True, session.get("contact_id"))
        customer = await self.omni.customers.live(customer_id)
        lang: Lang = "en" if (language or session.get("language")) == "en" else "zh"
        return await self._hand_off(session, None, reason, lang, customer.vip, "")

    # ------------------------------------------------------------------------------------- linking

    async def _link(
        self, session: dict[str, Any], customer: Customer, text: str, entities: dict[str, str], lang: Lang
    ) -> str | None:
        """A 6-digit code while one is waiting verifies it; a phone number of a customer we know by no
        phone starts a verification. None when the message is about something else."""
        assert self.linker is not None
        if _CODE.fullmatch(text) and await self.linker.pending(customer.id):
            try:
                await self.linker.verify(
                    customer.id,
                    text.strip(),
                    channel=Channel(session["channel"]),
                    conversation_id=str(session["conversation_id"]),
                )
            except HuiliuError as exc:
                log.info("bot.verification_failed", code=exc.code)
                return TEXTS["code_wrong"][lang]
            return TEXTS["linked"][lang]
        has_phone = any(identity.kind is IdentityKind.phone for identity in customer.identities)
        if "phone" in entities and not has_phone:
            try:
                masked = await self.linker.start(customer.id, entities["phone"])
            except TooManyRequests:
                return TEXTS["code_wait"][lang]
            return TEXTS["code_sent"][lang].format(phone=masked)
        return None

    # ------------------------------------------------------------------------------------- lookups

    async def _kb_answer(self, text: str, lang: Lang) -> tuple[str, str] | None:
        hits = await self.kb.search(text, language=lang) or await self.kb.search(text)
        if hits and hits[0].confidence >= self.config.kb_threshold:
            article = hits[0].article
            return article.body, f"kb:{article.id}:{article.title}"
        return None

    async def _ticket_status(self, customer_id: str, intent: str, lang: Lang) -> tuple[str, str] | None:
        page = await self.tickets.search(TicketQuery(customer_id=customer_id, limit=20), SYSTEM)
        tickets = page.tickets
        if not tickets:
            return (TEXTS["no_tickets"][lang], "ticket_status") if intent in _INTENT_SKILLS else None
        same = [ticket for ticket in tickets if ticket.intent == intent]
        ticket = max(same or tickets, key=lambda t: t.updated_at)
        return _describe_ticket(ticket, lang), f"ticket_status:{ticket.number}"

    async def _order(self, number: str, lang: Lang) -> tuple[str, str]:
        try:
            order = await self.crm.order(number)
            payment = await self.crm.payment(number) if order is not None else None
            short: list[str] = []
            if order is not None and order.status in (OrderStatus.pending, OrderStatus.paid):
                for item in order.items:
                    stock = await self.crm.stock(item.sku)
                    if stock is not None and stock.available < item.quantity:
                        short.append(item.name)
        except CrmUnavailable as exc:
            log.warning("bot.crm_unavailable", error=str(exc))
            return TEXTS["crm_down"][lang], "crm_down"
        if order is None:
            return TEXTS["order_unknown"][lang].format(number=number), "order_unknown"
        status = ORDER_STATUS_LABELS[order.status][lang]
        if lang == "zh":
            text = f"订单 {order.number}：{status}"
            if order.carrier:
                text += f"（{order.carrier}，运单号 {order.tracking_number}）"
            if payment is not None:
                text += f"。付款状态：{PAYMENT_STATE_LABELS[payment.state]['zh']}（¥{payment.amount}）"
            if short:
                text += f"。{'、'.join(short)} 目前缺货，到货后立即发出"
            return text + "。", f"order:{order.number}"
        text = f"Order {order.number}: {status}"
        if order.carrier:
            text += f" ({order.carrier}, tracking number {order.tracking_number})"
        if payment is not None:
            paid = PAYMENT_STATE_LABELS[payment.state]["en"]
            text += f". Payment: {paid} ({payment.amount} {payment.currency})"
        if short:
            text += f". {', '.join(short)} is out of stock and ships as soon as it arrives"
        return text + ".", f"order:{order.number}"

    async def _tickets(
        self,
        analysis: Analysis,
        customer_id: str,
        conversation_id: str,
        channel: Channel,
        text: str,
        source_key: str,
    ) -> Any:
        if analysis.intent in _QUIET_INTENTS:
            return None
        return await self.pipeline.to_tickets(
            analysis,
            customer_id=customer_id,
            conversation_id=conversation_id,
            channel=channel,
            text=text,
            source_key=source_key,
        )

    # ------------------------------------------------------------------------------------- handoff

    async def _hand_off(
        self,
        session: dict[str, Any],
        analysis: Analysis | None,
        reason: str,
        lang: Lang,
        vip: bool,
        text: str,
    ) -> BotReply:
        claimed = await self.sessions.find_one_and_update(
            {"_id": session["_id"], "status": "active"},
            {"$set": {"status": "handed_off", "handoff_reason": reason, "last_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )
        if claimed is None:  # handed off meanwhile (another message, another node)
            return BotReply(None, analysis, "agent", True, session.get("contact_id"))
        # A phone number proven in this very chat merges the customer into the number's owner: the agent must
        # get the customer who holds the identities now, with their whole history and open tickets.
        claimed["customer_id"] = (await self.omni.customers.live(claimed["customer_id"])).id
        intent = _main_intent(claimed)
        channel = Channel(claimed["channel"])
        entities: dict[str, str] = claimed.get("entities", {})
        answered = [entry["source"].split(":", 2)[-1] for entry in claimed.get("answers", [])]
        summary = _summary(intent, entities, answered, reason, text)
        customer_id, conversation_id = claimed["customer_id"], claimed["conversation_id"]
        await self.omni.timeline.append(
            customer_id,
            NewEvent(
                kind="bot.summary",
                channel=channel,
                conversation_id=conversation_id,
                body={
                    "summary": summary,
                    "intent": intent,
                    "entities": entities,
                    "answered": claimed.get("answers", []),
                    "reason": reason,
                    "language": lang,
                },
                idempotency_key=f"bot:{claimed['_id']}:summary",
            ),
            _BOT,
        )
        contact_id = await self._enqueue(claimed, intent, entities, answered, reason, lang, vip, summary)
        await self.sessions.update_one(
            {"_id": claimed["_id"]}, {"$set": {"contact_id": contact_id, "customer_id": customer_id}}
        )
        await self._record(claimed, "handed_off")
        return BotReply(TEXTS["handoff"][lang], analysis, "handoff", True, contact_id)

    async def _enqueue(
        self,
        session: dict[str, Any],
        intent: str,
        entities: dict[str, str],
        answered: list[str],
        reason: str,
        lang: Lang,
        vip: bool,
        summary: str,
    ) -> str | None:
        if self.desktop is None:
            log.warning("bot.no_acd", conversation_id=session["conversation_id"])
            return None
        from agent_desktop import ContactKind, NewContact, QueueConfig

        channel = Channel(session["channel"])
        skills = handoff_skills(channel, intent, lang, vip)
        priority: Literal["normal", "high", "urgent"] = "normal"
        if vip or reason == "negative_sentiment":
            priority = "high"
        contact = NewContact(
            queue=self.config.handoff_queue,
            kind=ContactKind.chat,
            customer_id=session["customer_id"],
            conversation_id=session["conversation_id"],
            external_ref=f"bot:{session['_id']}",
            priority=priority,
            preferred_skills=skills,
            context={
                "skills": skills,
                "channel": channel.value,
                "intent": intent,
                "entities": entities,
                "language": lang,
                "vip": vip,
                "handoff_reason": reason,
                "bot_answered": answered,
                "bot_summary": summary,
            },
        )
        try:
            try:
                added = await self.desktop.acd.add(contact)
            except NotFound as missing:
                if missing.code != "queue_not_found":
                    raise
                # The first handoff of a fresh install: the chat queue itself asks for no skill; each
                # contact brings its own (channel, team, language, VIP).
                with contextlib.suppress(HuiliuError):
                    await self.desktop.store.create_queue(
                        QueueConfig(id=self.config.handoff_queue, name="在线客服 Chat")
                    )
                added = await self.desktop.acd.add(contact)
        except HuiliuError as exc:
            log.error("bot.enqueue_failed", conversation_id=session["conversation_id"], error=str(exc))
            return None
        return added.id

    # ------------------------------------------------------------------------------------- sessions

    async def _session(self, conversation_id: str, customer_id: str, channel: Channel) -> dict[str, Any]:
        for _ in range(5):
            doc = await self.sessions.find_one({"active_key": conversation_id})
            if doc is not None and doc["status"] == "handed_off" and not await self._agent_still_on(doc):
                await self.sessions.update_one(
                    {"_id": doc["_id"], "status": "handed_off"},
                    {"$set": {"status": "finished", "ended_at": utcnow()}, "$unset": {"active_key": ""}},
                )
                continue
            if doc is not None:
                return dict(doc)
            now = utcnow()
            doc = {
                "_id": ObjectId(),
                "active_key": conversation_id,
                "conversation_id": conversation_id,
                "customer_id": customer_id,
                "channel": channel.value,
                "status": "active",
                "misses": 0,
                "answers": [],
                "intents": [],
                "entities": {},
                "language": None,
                "started_at": now,
                "last_at": now,
            }
            try:
                await self.sessions.insert_one(doc)
            except DuplicateKeyError:
                continue
            return doc
        raise RuntimeError(f"bot session of {conversation_id} keeps changing")

    async def _agent_still_on(self, session: dict[str, Any]) -> bool:
        contact_id = session.get("contact_id")
        if not contact_id or self.desktop is None:
            return True
        try:
            contact = await self.desktop.store.contact(contact_id)
        except NotFound:
            return False
        return contact.status.value in _LIVE_CONTACT

    async def _note(
        self, session: dict[str, Any], analysis: Analysis, entities: dict[str, str], lang: Lang
    ) -> None:
        sets: dict[str, Any] = {"last_at": utcnow(), "language": lang}
        for kind, value in entities.items():
            sets[f"entities.{kind}"] = value
        await self.sessions.update_one(
            {"_id": session["_id"]}, {"$set": sets, "$push": {"intents": analysis.intent}}
        )
        session.setdefault("intents", []).append(analysis.intent)

    async def _answered(self, session: dict[str, Any], question: str, answer: str, source: str) -> None:
        entry = {"question": question[:500], "answer": answer[:500], "source": source, "at": utcnow()}
        await self.sessions.update_one(
            {"_id": session["_id"]}, {"$push": {"answers": entry}, "$set": {"misses": 0}}
        )

    async def _missed(self, session: dict[str, Any]) -> int:
        doc = await self.sessions.find_one_and_update(
            {"_id": session["_id"]}, {"$inc": {"misses": 1}}, return_document=ReturnDocument.AFTER
        )
        return int(doc["misses"]) if doc else 1

    async def finish(self, conversation_id: str) -> str | None:
        """The customer left or the conversation closed: end the bot's session; its outcome, if any."""
        doc = await self.sessions.find_one({"active_key": conversation_id})
        if doc is None:
            return None
        if doc["status"] == "handed_off" and doc.get("contact_id") and self.desktop is not None:
            # Left before a person answered: out of the queue (an abandon on the wallboard), so no agent
            # is offered a chat nobody is on; a chat already answered is not touched.
            await self.desktop.acd.withdraw(doc["contact_id"], "customer_left")
        return await self._end(doc)

    async def sweep(self) -> int:
        """End sessions idle for ``idle_resolve_seconds``; returns how many ended."""
        cutoff = utcnow() - dt.timedelta(seconds=self.config.idle_resolve_seconds)
        ended = 0
        async for doc in self.sessions.find({"status": "active", "last_at": {"$lt": cutoff}}, limit=500):
            if await self._end(doc) is not None:
                ended += 1
        return ended

    async def _end(self, doc: dict[str, Any]) -> str | None:
        if doc["status"] == "handed_off":
            return "handed_off"
        # Resolved only when the bot really answered something; a visitor who got nothing useful and left
        # is not a bot success: recorded as abandoned, so that the deflection rate counts them.
        answered = any(entry["source"] not in ("crm_down",) for entry in doc.get("answers", []))
        status = "resolved" if answered else "abandoned"
        ended = await self.sessions.find_one_and_update(
            # Unchanged since ``doc`` was read: a message that arrived meanwhile keeps the session going.
            {"_id": doc["_id"], "status": "active", "last_at": doc["last_at"]},
            {"$set": {"status": status, "ended_at": utcnow()}, "$unset": {"active_key": ""}},
            return_document=ReturnDocument.AFTER,
        )
        if ended is None:
            return None
        await self._record(ended, status)
        return status

    async def _record(self, session: dict[str, Any], outcome: str) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self.outcomes.insert_one(
                {
                    "_id": session["_id"],
                    "conversation_id": session["conversation_id"],
                    "customer_id": session["customer_id"],
                    "intent": _main_intent(session),
                    "outcome": outcome,
                    "channel": session["channel"],
                    "at": utcnow(),
                }
            )

    async def run_sweeper(self, every: float) -> None:
        """Sweep forever (a task of the web process; every node may run it — each end is guarded)."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("bot.sweep_failed", error=repr(exc))


def _main_intent(session: dict[str, Any]) -> str:
    intents = [intent for intent in session.get("intents", []) if intent not in _QUIET_INTENTS]
    if intents:
        return str(intents[-1])
    known = [intent for intent in session.get("intents", []) if intent != "unknown"]
    return str(known[-1]) if known else "unknown"


def _describe_ticket(ticket: Ticket, lang: Lang) -> str:
    label = TICKET_STATUS_LABELS.get(
        ticket.status.value, {"zh": ticket.status.value, "en": ticket.status.value}
    )
    if lang == "zh":
        return f"您的工单 {ticket.number}（{ticket.subject}）当前状态：{label['zh']}。"
    return f"Your ticket {ticket.number} ({ticket.subject}) is {label['en']}."


def _summary(intent: str, entities: dict[str, str], answered: list[str], reason: str, text: str) -> str:
    parts = [f"意图 Intent: {intent}"]
    if entities:
        parts.append("信息 Entities: " + ", ".join(f"{key}={value}" for key, value in entities.items()))
    if answered:
        parts.append("机器人已答 Bot answered: " + "; ".join(answered[-5:]))
    labels = HANDOFF_REASONS.get(reason, {"zh": reason, "en": reason})
    parts.append(f"转人工原因 Reason: {labels['zh']} / {labels['en']}")
    if text:
        parts.append(f"最后一句 Last message: {text[:200]}")
    return " · ".join(parts)
