"""Wallboard alerts sent to the supervisors by SMS: each new alert episode once, in Chinese and English.

The supervisors are those of the tickets' staff profiles (``supervisor_of`` set, active, with a phone):
the people and phones an SLA escalation to a supervisor texts. The SMS goes the escalation's way too,
``SmsService.send_to_staff``: stored first, then delivered with retries, once per key
(``alert:<alert id>:<user id>``) — and only the node whose insert of the alert won sends it (see
``wallboard.WallboardService.evaluate``), so two web nodes raising the same alert text nobody twice.
"""

from __future__ import annotations

from aiohttp import web

from agent_desktop.models import Alert
from core.log import get_logger
from omnichannel.channels import SmsService
from omnichannel.channels.http import CHANNELS
from tickets import TicketService
from tickets.http import TICKETS

log = get_logger(__name__)


def _minutes(seconds: float) -> tuple[str, str]:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} 分 {rest} 秒", f"{minutes} min {rest} s"


def alert_text(alert: Alert) -> str:
    """One SMS saying what crossed which threshold, in Chinese then English."""
    subject = alert.subject
    if alert.rule == "queue_wait":
        (wait_zh, wait_en), (limit_zh, limit_en) = _minutes(alert.value), _minutes(alert.threshold)
        return (
            f"【汇流告警】队列 {subject} 最长等待 {wait_zh}，超过 {limit_zh}。"
            f"Huiliu alert: queue {subject} longest wait {wait_en}, over {limit_en}."
        )
    value, threshold = f"{alert.value:.0%}", f"{alert.threshold:.0%}"
    if alert.rule == "service_level":
        return (
            f"【汇流告警】队列 {subject} 服务水平 {value}，低于目标 {threshold}。"
            f"Huiliu alert: queue {subject} service level {value}, below the {threshold} target."
        )
    return (
        f"【汇流告警】机器人解决率 {value}，低于 {threshold}。"
        f"Huiliu alert: the bot resolves {value} of conversations, below {threshold}."
    )


class AlertTexter:
    def __init__(self, sms: SmsService, tickets: TicketService) -> None:
        self.sms = sms
        self.tickets = tickets

    async def send(self, alert: Alert) -> list[str]:
        """Text ``alert`` to every supervisor with a phone; returns the user ids texted."""
        text = alert_text(alert)
        texted = []
        for person in await self.tickets.staff():
            if not (person.active and person.supervisor_of and person.phone):
                continue
            await self.sms.send_to_staff(
                person.phone,
                text,
                about_customer_id="",  # about a queue, not a customer: no timeline to note it on
                idempotency_key=f"alert:{alert.id}:{person.user_id}",
            )
            texted.append(person.user_id)
        if not texted:
            log.warning("wallboard.alert_not_texted", alert=alert.id, reason="no supervisor has a phone")
        return texted


def alert_texter(app: web.Application) -> AlertTexter | None:
    """The texter of the web process (its channels' SMS and its tickets' staff), if it has both."""
    if CHANNELS not in app or TICKETS not in app:
        return None
    return AlertTexter(app[CHANNELS].sms, app[TICKETS])
