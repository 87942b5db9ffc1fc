"""Ticket notifications sent for real: the tickets package's ``Notifier`` over the SMS and WeChat channels.

Every notification is first recorded by ``fallback`` (the ticket engine's ``notification.queued`` on the
timeline); customer notifications on ``sms`` / ``wechat`` then go out on those channels as ``message.out``
(transactional: STOP does not block a message about the customer's own ticket). Staff notifications on
``sms`` (escalations to a department lead or a supervisor) are texted to the person's phone; staff ``web``
notifications stay with ``fallback`` (the ticket's history and the timeline).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnichannel import Actor
from omnichannel.channels.sms_service import SmsService
from omnichannel.channels.wechat import WeChatService
from tickets import Notification, Notifier

if TYPE_CHECKING:
    from omnichannel.channels.mail import EmailService
    from omnichannel.channels.webchat import WebChatService

_NOTICE = Actor(type="system", name="通知 Notice")


class ChannelNotifier:
    def __init__(self, sms: SmsService, wechat: WeChatService, fallback: Notifier) -> None:
        self.sms = sms
        self.wechat = wechat
        self.fallback = fallback
        self.webchat: WebChatService | None = None  # set once the web chat exists (Channels.attach)
        self.email: EmailService | None = None  # set when outbound SMTP is configured

    async def send(self, notification: Notification) -> None:
        await self.fallback.send(notification)
        recipient = notification.recipient
        if not recipient.address:
            return
        if recipient.kind == "staff":
            if notification.channel == "sms":
                await self.sms.send_to_staff(
                    recipient.address,
                    notification.text,
                    about_customer_id=notification.customer_id,
                    idempotency_key=f"notification:{notification.idempotency_key}",
                )
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
        elif notification.channel == "webchat" and self.webchat is not None:
            conversation_id = await self.webchat.conversation_of_visitor(recipient.address)
            if conversation_id is not None:
                await self.webchat.say(
                    conversation_id,
                    notification.text,
                    _NOTICE,
                    f"webchat:notice:{notification.idempotency_key}",
                )
        elif notification.channel == "email" and self.email is not None:
            await self.email.notify(
                recipient.address,
                notification.text,
                customer_id=notification.customer_id,
                idempotency_key=notification.idempotency_key,
                subject=notification.template,
            )
