"""Building the channel services from the settings, for the web process and the Celery worker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from celery import Celery

from core.audit import AuditLog
from core.db import Database
from core.settings import Settings
from omnichannel import Omnichannel
from omnichannel.channels.bot import Bot, BotConfig
from omnichannel.channels.kb import KnowledgeBase
from omnichannel.channels.linking import IdentityLinker
from omnichannel.channels.mail import EmailService, email_config
from omnichannel.channels.notifier import ChannelNotifier
from omnichannel.channels.pipeline import IntentPipeline, load_analyzer
from omnichannel.channels.voice import VoiceTranscriber
from omnichannel.channels.webchat import VisitorTokens, WebChatConfig, WebChatService, allowed_origins
from omnichannel.crm import CrmConnector, create_crm

if TYPE_CHECKING:
    from asr.nlu import Analyzer
    from omnichannel.channels.agent_replies import AgentReplies
from omnichannel.channels.sms import HttpSmsProvider, SinkSmsProvider, SmsProvider
from omnichannel.channels.sms_service import Enqueue, SmsConfig, SmsService
from omnichannel.channels.wechat import (
    ApiWeChatClient,
    SinkWeChatClient,
    WeChatClient,
    WeChatConfig,
    WeChatService,
)
from tickets import TicketService, TimelineNotifier

DELIVER_TASK = "omnichannel.channels.tasks.deliver_sms"
SWEEP_TASK = "omnichannel.channels.tasks.sweep_sms"


def beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    """The channels' periodic work for the Celery beat."""
    return {"sweep-sms": {"task": SWEEP_TASK, "schedule": 60.0}}


@dataclass
class Channels:
    sms: SmsService
    wechat: WeChatService
    notifier: ChannelNotifier
    webhook_secret: str | None
    tolerance_seconds: int
    wechat_max_body_bytes: int
    db: Database
    email: EmailService
    kb: KnowledgeBase
    crm: CrmConnector
    settings: Settings
    bot: Bot | None = None
    webchat: WebChatService | None = None
    replies: AgentReplies | None = None  # agents' replies on WeChat/SMS/email (the web process's)
    _warming: asyncio.Future[Analyzer] | None = None

    def attach(self, tickets: TicketService) -> None:
        """Inbound messages run the bot (and through it the intent pipeline into ``tickets``, which
        notifies through ``notifier``: the two are made for each other, hence the late attachment)."""
        pipeline = IntentPipeline(
            self.sms.omni.timeline, tickets, repeat_contact_hours=self.settings.nlu_repeat_contact_hours
        )
        self.sms.pipeline = pipeline
        self.wechat.pipeline = pipeline
        self.email.pipeline = pipeline
        settings = self.settings
        self.bot = Bot(
            self.db,
            self.sms.omni,
            pipeline,
            self.kb,
            self.crm,
            tickets,
            BotConfig(
                kb_threshold=settings.bot_kb_threshold,
                handoff_queue=settings.bot_handoff_queue,
                idle_resolve_seconds=settings.bot_idle_resolve_seconds,
            ),
        )
        if settings.bot_enabled:
            self.sms.bot = self.bot
            self.wechat.bot = self.bot
        else:  # no self-service: SMS and WeChat conversations go to the ACD like web chat's
            self.sms.handoff = self.bot
            self.wechat.handoff = self.bot
        self.webchat = WebChatService(
            self.db,
            self.sms.omni,
            self.bot,
            VisitorTokens(settings.secret(), settings.webchat_visitor_ttl_days * 86_400),
            self.sms.redis,
            WebChatConfig(
                max_chars=settings.webchat_max_chars,
                max_attachment_bytes=settings.webchat_max_attachment_bytes,
                visitors_per_minute=settings.webchat_visitors_per_minute,
                allowed_origins=allowed_origins(settings.webchat_allowed_origins),
                tenant=settings.db_name,
            ),
            settings.data_dir / "webchat" / "attachments",
            bot_enabled=settings.bot_enabled,
        )
        self.notifier.webchat = self.webchat
        linker = IdentityLinker(
            self.sms.omni,
            self.sms,
            self.sms.redis,
            AuditLog(self.db),
            settings.secret(),
            email=self.email if settings.smtp_host else None,  # codes by email need outbound SMTP
        )
        self.bot.linker = linker
        self.webchat.linker = linker
        # Load the NLU model now rather than in the first customer's 5-second WeChat window.
        self._warming = asyncio.get_running_loop().run_in_executor(None, load_analyzer)

    async def close(self) -> None:
        if self._warming is not None:
            await asyncio.gather(self._warming, return_exceptions=True)
        if self.webchat is not None:
            await self.webchat.stop()
        await self.email.close()
        await self.sms.close()
        await self.wechat.close()
        if isinstance(self.wechat.transcribe, VoiceTranscriber):
            await self.wechat.transcribe.aclose()
        await self.crm.close()


def sms_provider(db: Database, settings: Settings) -> SmsProvider:
    if settings.sms_provider == "http":
        if not settings.sms_http_base_url:
            raise ValueError("HUILIU_SMS_HTTP_BASE_URL is required with HUILIU_SMS_PROVIDER=http")
        key = settings.sms_http_api_key.get_secret_value() if settings.sms_http_api_key else None
        return HttpSmsProvider(settings.sms_http_base_url, key)
    return SinkSmsProvider(db)


def sms_config(settings: Settings) -> SmsConfig:
    return SmsConfig(
        sender=settings.sms_sender,
        max_attempts=settings.sms_max_attempts,
        backoff_seconds=settings.sms_retry_backoff_seconds,
        rate_per_minute=settings.sms_rate_per_minute,
        max_chars=settings.sms_max_chars,
        default_region=settings.default_region,
    )


def celery_enqueue(settings: Settings) -> Enqueue:
    producer = Celery("huiliu-channels", broker=settings.redis_url)
    producer.conf.update(
        broker_connection_retry_on_startup=False,
        broker_connection_retry=False,
        broker_connection_max_retries=0,
        broker_connection_timeout=1,
        broker_transport_options={"socket_connect_timeout": 1, "socket_timeout": 2, "max_retries": 0},
    )

    async def enqueue(message_id: str) -> None:
        await asyncio.to_thread(producer.send_task, DELIVER_TASK, args=[message_id])

    return enqueue


def create_channels(db: Database, omni: Omnichannel, redis: aioredis.Redis, settings: Settings) -> Channels:
    enqueue = celery_enqueue(settings) if settings.sms_delivery == "celery" else None
    sms = SmsService(db, omni, sms_provider(db, settings), redis, sms_config(settings), enqueue=enqueue)
    client: WeChatClient
    if settings.wechat_client == "api":
        if not settings.wechat_app_id or settings.wechat_app_secret is None:
            raise ValueError(
                "HUILIU_WECHAT_APP_ID and HUILIU_WECHAT_APP_SECRET are required for the API client"
            )
        client = ApiWeChatClient(settings.wechat_app_id, settings.wechat_app_secret.get_secret_value())
    else:
        client = SinkWeChatClient(db)
    wechat = WeChatService(
        db,
        omni,
        client,
        WeChatConfig(
            token=settings.wechat_token.get_secret_value() if settings.wechat_token else None,
            app_id=settings.wechat_app_id,
            encoding_aes_key=(
                settings.wechat_encoding_aes_key.get_secret_value()
                if settings.wechat_encoding_aes_key
                else None
            ),
            template_id=settings.wechat_template_id,
            reply_timeout_seconds=settings.wechat_reply_timeout_seconds,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        ),
    )
    wechat.transcribe = VoiceTranscriber(settings)  # builds the recognizer on the first voice message
    wechat.voice_language = settings.wechat_voice_language
    email = EmailService(db, omni, email_config(settings), settings.data_dir / "email" / "attachments")
    notifier = ChannelNotifier(sms, wechat, TimelineNotifier(omni.timeline))
    if settings.smtp_host:  # ticket notices by email, from the web process and the Celery worker alike
        notifier.email = email
    return Channels(
        sms=sms,
        wechat=wechat,
        notifier=notifier,
        webhook_secret=settings.sms_webhook_secret.get_secret_value()
        if settings.sms_webhook_secret
        else None,
        tolerance_seconds=settings.webhook_tolerance_seconds,
        wechat_max_body_bytes=settings.wechat_max_body_bytes,
        db=db,
        email=email,
        kb=KnowledgeBase(db),
        crm=create_crm(settings),
        settings=settings,
    )


async def worker_sms_service(settings: Settings) -> SmsService:
    """The SMS service as a Celery worker thread runs it: it only delivers."""
    assert settings.mongo_url is not None and settings.redis_url is not None
    from core.bus import EventBus, connect_redis

    db = Database.connect(settings.mongo_url, settings.db_name, settings.mongo_timeout_ms)
    redis = connect_redis(settings.redis_url)
    omni = Omnichannel.create(db, EventBus(redis, db), default_region=settings.default_region)
    return SmsService(db, omni, sms_provider(db, settings), redis, sms_config(settings))
