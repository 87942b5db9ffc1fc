"""Ticket notifications sent for real: the tickets package's ``Notifier`` over the SMS and WeChat channels.

Every notification is first recorded by ``fallback`` (the ticket engine's ``notification.queued`` on the
timeline); customer notifications on ``sms`` / ``wechat`` then go out on those channels as ``message.out``
(transactional: STOP does not block a message about the customer's own ticket). Staff, email and web
notifications stay with ``fallback`` until their senders exist.
"""

from __future__ import annotations

from omnichannel.channels.sms_service import SmsService
from omnichannel.channels.wechat import WeChatService
from tickets import Notification, Notifier


class ChannelNotifier:
    def __init__(self, sms: SmsService, wechat: WeChatService, fallback: Notifier) -> None:
        self.sms = sms
        self.wechat = wechat
        self.fallback = fallback

    async def send(self, notification: Notification) -> None:
        await self.fallback.send(notification)
        recipient = notification.recipient
        if recipient.kind != "customer" or not recipient.address:
            return
        if notification.channel == "sms":
            await self.sms.send(
                recipient.address,
                notification.text,
                transactional=True,
                customer_id=notification.customer_id,
                idempotency_key=f"notification:{notification.idempotency_key}",
            )
        elif notification.channel == "wechat":
            await self.wechat.notify(
                recipient.address,
                notification.text,
                customer_id=notification.customer_id,
                idempotency_key=f"notification:{notification.idempotency_key}",
                title=notification.template,
            )
