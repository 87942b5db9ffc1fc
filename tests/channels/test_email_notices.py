"""Ticket notices by email, with real SMTP both ways: a mail makes a ticket, its notice goes out through the
provider's relay (a local aiosmtpd, which can be down), and the customer's reply to the notice comes back
through our listener."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller

from core.db import Database
from core.embedded import free_port
from core.settings import Settings
from tests.channels import test_email
from tests.channels.conftest import customer_with, eventually, timeline
from tests.channels.test_email import ADDRESS, CUSTOMER, Sink, mail, send
from tests.conftest import ApiClient
from tickets.http import TICKETS

listener = test_email.listener  # our SMTP listener, on this module's settings


class Relay:
    """The provider's SMTP relay: it can be down."""

    def __init__(self) -> None:
        self.sink = Sink()
        self.port = free_port()
        self.controller: Controller | None = None

    def up(self) -> None:
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    async def notices(self) -> list[EmailMessage]:
        found = [message_from_bytes(envelope.content, policy=default) for envelope in self.sink.received]
        return [message for message in found if isinstance(message, EmailMessage)]


@pytest.fixture
def relay() -> Iterator[Relay]:
    relay = Relay()
    relay.up()
    yield relay
    relay.down()


@pytest.fixture
def settings(settings: Settings, relay: Relay, tmp_path: Path) -> Settings:
    # A short outbox lease: a notice that failed is tried again by the sweep a second later.
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "var" / "tickets.yaml").write_text("effects_lease_seconds: 1\n")
    return settings.model_copy(
        update={"email_address": ADDRESS, "smtp_host": "127.0.0.1", "smtp_port": relay.port}
    )


async def test_a_reply_to_a_ticket_notice_lands_once_in_the_notices_conversation(
    listener: int, relay: Relay, admin: ApiClient
) -> None:
    await send(listener, mail("退货", "我要退货，订单号 12345", "<order@example.com>"))
    [notice] = await eventually(relay.notices, "the ticket notice at the relay")
    customer = await customer_with(admin, "email", CUSTOMER)

    reply = mail(f"Re: {notice['Subject']}", "好的，谢谢，我等快递员上门。", "<thanks@example.com>")
    reply["In-Reply-To"] = notice["Message-ID"]
    reply["References"] = notice["Message-ID"]
    await send(listener, reply)
    await send(listener, reply)  # the MTA retried

    events = await timeline(admin, customer["id"])
    [sent] = [e for e in events if e["kind"] == "message.out" and e["channel"] == "email"]
    assert sent["body"]["message_id"] == notice["Message-ID"]
    [answer] = [e for e in events if e["body"].get("message_id") == "<thanks@example.com>"]
    assert answer["kind"] == "message.in" and answer["customer_id"] == customer["id"]
    assert answer["conversation_id"] == sent["conversation_id"] is not None
    first = [e for e in events if e["body"].get("message_id") == "<order@example.com>"]
    assert first[0]["conversation_id"] != answer["conversation_id"]  # the notice began a thread of its own


async def test_a_reply_to_a_notice_remembered_without_a_conversation_still_lands(
    listener: int, admin: ApiClient, db: Database
) -> None:
    # What notices sent before they had a conversation left behind.
    await db["email_messages"].insert_one(
        {"_id": "<old-notice@shop.example>", "conversation_id": None, "direction": "out"}
    )
    reply = mail("Re: 您的工单已受理", "收到", "<late@example.com>", In_Reply_To="<old-notice@shop.example>")
    await send(listener, reply)
    customer = await customer_with(admin, "email", CUSTOMER)
    landed: Any = [e for e in await timeline(admin, customer["id"]) if e["kind"] == "message.in"]
    assert [e["body"]["message_id"] for e in landed] == ["<late@example.com>"]
    assert landed[0]["conversation_id"]


async def test_a_notice_held_up_by_a_relay_that_is_down_is_delivered_once_when_it_is_back(
    server: TestServer, listener: int, relay: Relay, db: Database
) -> None:
    relay.down()
    await send(listener, mail("退货", "我要退货，订单号 12345", "<order@example.com>"))
    await eventually(
        lambda: db["tickets"].find_one({"outbox_error": {"$type": "string"}}), "the notice failing"
    )
    relay.up()
    await asyncio.sleep(1.2)  # the outbox lease of the failed attempt runs out
    tickets = server.app[TICKETS]
    await tickets.sweep()
    [notice] = await relay.notices()
    assert notice["To"] == CUSTOMER
    await asyncio.sleep(1.2)
    await tickets.sweep()  # nothing left to send: the notice is not sent again
    assert len(await relay.notices()) == 1
    assert await db["tickets"].find_one({"outbox_since": {"$exists": True}}) is None
