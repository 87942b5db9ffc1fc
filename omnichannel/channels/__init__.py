"""Message channels: SMS (an HTTP gateway or a local sink) and the WeChat Official Account, with the intent
pipeline every inbound message runs through.

channels = create_channels(db, omni, redis, settings)   # web process; then channels.attach(tickets)
await channels.sms.send("+8613800138000", "…", transactional=True)
await channels.wechat.handle(request.query, raw_body)     # the passive reply or "success"
"""

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
from omnichannel.channels.wechat import (
    ApiWeChatClient,
    SinkWeChatClient,
    WeChatClient,
    WeChatConfig,
    WeChatService,
)
from omnichannel.channels.wiring import CHANNELS, Channels, create_channels

__all__ = [
    "CHANNELS",
    "ApiWeChatClient",
    "ChannelNotifier",
    "Channels",
    "HttpSmsProvider",
    "IntentPipeline",
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
    "create_channels",
]
