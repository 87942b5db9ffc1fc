"""The email channel with real SMTP both ways: smtplib into our aiosmtpd listener, and our outbound mail into
a local aiosmtpd sink standing in for the provider's relay."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import sys
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from core.db import Database
from core.embedded import free_port, spawn, wait_for_port
from core.settings import Settings
from omnichannel import Actor, Channel, NewEvent
from omnichannel.channels.http import CHANNELS
from omnichannel.channels.mail import start_listener
from tests.channels.conftest import customer_with, eventually, timeline
from tests.conftest import ApiClient
from tests.test_api import assert_problem

ADDRESS = "service@shop.example"
CUSTOMER = "li.na@example.com"


class Sink:
    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 OK"


@pytest.fixture
def relay() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@pytest.fixture
def settings(settings: Settings, relay: tuple[Sink, int]) -> Settings:
    return settings.model_copy(
        update={
            "email_address": ADDRESS,
            "email_max_bytes": 256 * 1024,
            "smtp_host": "127.0.0.1",
            "smtp_port": relay[1],
        }
    )


@pytest.fixture
async def listener(server: TestServer) -> AsyncIterator[int]:
    port = free_port()
    smtp = await start_listener(server.app[CHANNELS].email, "127.0.0.1", port)
    yield port
    smtp.close()
    await smtp.wait_closed()


def mail(subject: str, text: str, message_id: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"李娜 <{CUSTOMER}>"
    message["To"] = ADDRESS
    message["Subject"] = subject
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    return message


async def send(port: int, message: EmailMessage, to: str = ADDRESS) -> None:
    def deliver() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.send_message(message, to_addrs=[to])

    await asyncio.to_thread(deliver)


async def test_a_thread_of_mails_is_one_conversation_with_safe_html_and_attachments(
    listener: int, http: ApiClient, admin: ApiClient, agent: ApiClient
) -> None:
    first = mail("订单 12345 的发票", "你好，请帮我开发票。", "<m1@example.com>")
    first.add_alternative(
        "<p>你好，<b>请帮我开发票</b><script>alert(1)</script><img src='https://t.example/p.gif'>"
        "<a href='javascript:alert(2)' onclick='x()'>链接</a></p>",
        subtype="html",
    )
    first.add_attachment(b"%PDF-1.4 invoice", maintype="application", subtype="pdf", filename="../发票.pdf")
    await send(listener, first)
    await send(listener, first)  # the MTA retried: the same Message-ID lands once
    await send(
        listener,
        mail(
            "Re: 订单 12345 的发票",
            "补充：抬头是汇流公司",
            "<m2@example.com>",
            In_Reply_To="<m1@example.com>",
        ),
    )
    await send(listener, mail("另一个问题", "运费怎么算？", "<m3@example.com>"))

    customer = await customer_with(admin, "email", CUSTOMER)
    assert customer["name"] == "李娜"
    inbound = [e for e in await timeline(admin, customer["id"]) if e["kind"] == "message.in"]
    assert [e["body"]["message_id"] for e in inbound] == [
        "<m1@example.com>",
        "<m2@example.com>",
        "<m3@example.com>",
    ]
    assert inbound[0]["conversation_id"] == inbound[1]["conversation_id"] != inbound[2]["conversation_id"]
    html = inbound[0]["body"]["html"]
    assert "<b>请帮我开发票</b>" in html
    assert "script" not in html and "onclick" not in html and "javascript:" not in html and "<img" not in html
    [attachment] = inbound[0]["body"]["attachments"]
    assert attachment["name"] == ".._发票.pdf" and attachment["size"] == len(b"%PDF-1.4 invoice")
    status, body, headers = await http.request("GET", f"/api/email/attachments/{attachment['id']}")
    assert_problem(status, body, headers, 401, "unauthorized")
    async with agent.session.get(
        agent.base + f"/api/email/attachments/{attachment['id']}",
        headers={"Authorization": f"Bearer {agent.token}"},
    ) as response:
        assert response.status == 200 and await response.read() == b"%PDF-1.4 invoice"
        assert response.headers["Content-Disposition"].startswith("attachment")


async def test_mail_for_other_domains_and_oversized_mail_are_refused(listener: int) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await send(listener, mail("hi", "relay me", "<r1@example.com>"), to="victim@elsewhere.example")
    with pytest.raises(smtplib.SMTPResponseException) as refused:  # at MAIL FROM (SIZE) or after DATA
        await send(listener, mail("big", "长" * 200_000, "<big@example.com>"))
    assert refused.value.smtp_code == 552


async def test_an_agent_reply_goes_out_in_the_same_thread(
    server: TestServer, listener: int, admin: ApiClient, relay: tuple[Sink, int]
) -> None:
    await send(listener, mail("退货咨询", "我想退货", "<t1@example.com>"))
    customer = await customer_with(admin, "email", CUSTOMER)
    [inbound] = [e for e in await timeline(admin, customer["id"]) if e["kind"] == "message.in"]
    omni = server.app[CHANNELS].email.omni
    # What the desktop writes for an agent's reply (agent_desktop/chat.py): message.sent on the conversation.
    await omni.timeline.append(
        customer["id"],
        NewEvent(
            kind="message.sent",
            channel=Channel.email,
            conversation_id=inbound["conversation_id"],
            body={"text": "您好，退货已受理。"},
        ),
        Actor(type="agent", id="u1", name="李娜"),
    )
    sink, _ = relay
    envelope: Any = await eventually(lambda: _first(sink), "the reply at the relay")
    assert envelope.rcpt_tos == [CUSTOMER] and envelope.mail_from == ADDRESS
    reply = message_from_bytes(envelope.content, policy=default)
    assert reply["In-Reply-To"] == "<t1@example.com>" and reply["Subject"] == "Re: 退货咨询"
    assert reply.get_content().strip() == "您好，退货已受理。"
    await asyncio.sleep(0.3)
    assert len(sink.received) == 1
    said = [
        e["kind"]
        for e in await timeline(admin, customer["id"])
        if e["body"].get("text") == "您好，退货已受理。"
    ]
    assert said == ["message.sent"]  # one fact on the timeline, not a second message.out


async def _first(sink: Sink) -> Envelope | None:
    return sink.received[0] if sink.received else None


async def test_huiliu_email_runs_the_listener_as_its_own_process(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HUILIU_MONGO_URL": str(settings.mongo_url),
        "HUILIU_REDIS_URL": str(settings.redis_url),
        "HUILIU_DB_NAME": settings.db_name,
        "HUILIU_DATA_DIR": str(tmp_path / "var"),
        "HUILIU_SECRET_KEY": "test-secret-key-not-for-production",
        "HUILIU_EMAIL_ADDRESS": ADDRESS,
        "HUILIU_EMAIL_LISTEN_PORT": str(port),
        "HUILIU_LOG_LEVEL": "WARNING",
    }
    process = spawn([sys.executable, "-m", "core.cli", "email"], env=env, log_path=tmp_path / "email.log")
    try:
        await asyncio.to_thread(wait_for_port, port, process, "huiliu email", 60)
        await send(port, mail("发票", "请开发票", "<p1@example.com>"))
        landed = await eventually(
            lambda: db["timeline"].find_one({"idempotency_key": "email:in:<p1@example.com>"}), "the mail"
        )
        assert landed["channel"] == "email" and landed["body"]["subject"] == "发票"
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 15) == 0
