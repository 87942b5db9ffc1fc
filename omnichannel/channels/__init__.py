"""Message channels: SMS (an HTTP gateway or a local sink), the WeChat Official Account, web chat (the
embeddable widget) and email, with the self-service bot (knowledge base, ticket status, orders through
``omnichannel.crm``, handoff to the ACD) and the intent pipeline every inbound message runs through.

channels = create_channels(db, omni, redis, settings)   # web process; then channels.attach(tickets)
await channels.sms.send("+8613800138000", "…", transactional=True)
await channels.wechat.handle(request.query, raw_body)     # the passive reply or "success"
await channels.webchat.send_to_visitor(conversation_id, "…", Actor(type="agent", name="李娜"))
"""

from omnichannel.channels.bot import Bot, BotConfig, BotReply
from omnichannel.channels.kb import KnowledgeBase
from omnichannel.channels.linking import IdentityLinker
from omnichannel.channels.mail import EmailService
from omnichannel.channels.models import SmsMessage, SmsStatus
from omnichannel.channels.notifier import ChannelNotifier
from omnichannel.channels.pipeline import IntentPipeline, PipelineResult
from omnichannel.channels.sms import (
    HttpSmsProvider,
    ProviderRejected,
    ProviderUnavailable,
    SinkSmsProvider,
    SmsProvider,
)
from omnichannel.channels.sms_service import SmsConfig, SmsService
from omnichannel.channels.webchat import WebChatService, agent_typing
from omnichannel.channels.wechat import (
    ApiWeChatClient,
    SinkWeChatClient,
    WeChatClient,
    WeChatConfig,
    WeChatService,
)
from omnichannel.channels.wiring import Channels, create_channels

__all__ = [
    "ApiWeChatClient",
    "Bot",
    "BotConfig",
    "BotReply",
    "ChannelNotifier",
    "Channels",
    "EmailService",
    "HttpSmsProvider",
    "IdentityLinker",
    "IntentPipeline",
    "KnowledgeBase",
    "PipelineResult",
    "ProviderRejected",
    "ProviderUnavailable",
    "SinkSmsProvider",
    "SinkWeChatClient",
    "SmsConfig",
    "SmsMessage",
    "SmsProvider",
    "SmsService",
    "SmsStatus",
    "WeChatClient",
    "WeChatConfig",
    "WeChatService",
    "WebChatService",
    "agent_typing",
    "create_channels",
]
