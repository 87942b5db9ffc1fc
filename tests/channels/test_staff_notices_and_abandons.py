"""Two things the ticket and supervisor journeys rely on: an SLA escalation "by SMS" to a department lead or
supervisor really is texted to their phone (and is not a message to the customer), and a web-chat visitor
who leaves while waiting for an agent leaves the queue — an abandon on the wallboard, never an offer of a
chat nobody is on."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from omnichannel.channels.http import CHANNELS
from tests.channels.conftest import customer_with, eventually, timeline_kinds
from tests.channels.webchat_client import Visitor, new_visitor_token
from tests.conftest import ApiClient
from tickets.models import Notification, Recipient


def escalation(customer_id: str, channel: str = "sms") -> Notification:
    return Notification(
        idempotency_key="timer-1:level3:user-9",
        channel=channel,  # type: ignore[arg-type]
        recipient=Recipient(kind="staff", user_id="user-9", name="王班长", address="+8613900000009"),
        template="sla.escalated",
        language="zh",
        text="【升级】工单 T-20261126-0001 的首次响应已超时，请立即处理。",
        ticket_id="6b07be4ec22e10d57da24755",
        customer_id=customer_id,
    )


async def test_an_escalation_by_sms_is_texted_to_the_staff_member_once_and_not_to_the_customer(
    server: TestServer, admin: ApiClient
) -> None:
    customer = await customer_with(admin, "phone", "13800138004")
    notifier = server.app[CHANNELS].notifier
    await notifier.send(escalation(customer["id"]))
    await notifier.send(escalation(customer["id"]))  # the SLA engine repeating itself after a crash

    async def texted() -> list[dict[str, object]]:
        _, entries, _ = await admin.request("GET", "/api/sms/sink", params={"to": "13900000009"})
        return list(entries)

    [sent] = await eventually(texted, "the supervisor's SMS")
    assert "T-20261126-0001" in str(sent["text"])
    kinds = await timeline_kinds(admin, customer["id"])
    assert "notification.queued" in kinds and "message.out" not in kinds  # recorded, not sent to them
    _, all_sent, _ = await admin.request("GET", "/api/sms/sink")
    assert [entry["to"] for entry in all_sent] == ["+8613900000009"]


async def test_an_in_app_escalation_is_not_texted(server: TestServer, admin: ApiClient) -> None:
    customer = await customer_with(admin, "phone", "13800138005")
    await server.app[CHANNELS].notifier.send(escalation(customer["id"], channel="web"))
    _, entries, _ = await admin.request("GET", "/api/sms/sink")
    assert entries == []


async def test_a_visitor_who_leaves_while_waiting_is_an_abandon_not_an_offer(
    server: TestServer, http: ApiClient, supervisor: ApiClient
) -> None:
    visitor = Visitor(server, await new_visitor_token(http))
    await visitor.connect()
    try:
        await visitor.say("我要转人工")
        assert "人工" in (await visitor.next_reply())["text"]
        _, board, _ = await supervisor.request("GET", "/api/desktop/wallboard")
        [queue] = board["queues"]
        assert (queue["queue"], queue["waiting"]) == ("chat", 1)
        closed = await visitor.call("close")
        assert closed["ok"]["outcome"] == "handed_off"
    finally:
        await visitor.disconnect()
    _, board, _ = await supervisor.request("GET", "/api/desktop/wallboard")
    [queue] = board["queues"]
    assert (queue["waiting"], queue["abandoned"], queue["abandon_rate"]) == (0, 1, 1.0)
