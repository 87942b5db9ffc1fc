"""Identity linking by email: a web-chat visitor gives an address, the code goes out through our outbound SMTP
(a local aiosmtpd standing in for the provider's relay, which can be down), and the right code joins the
visitor to the customer who wrote to us from that address: one timeline."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage

import pytest
from aiohttp.test_utils import TestServer

from core.app import REDIS
from core.settings import Settings
from omnichannel.channels.linking import CODES_PER_ADDRESS, MAX_ATTEMPTS
from tests.channels import test_email
from tests.channels.conftest import customer_with, eventually, timeline
from tests.channels.test_email import ADDRESS, mail, send
from tests.channels.test_email_notices import Relay
from tests.channels.webchat_client import Visitor, new_visitor_token
from tests.conftest import ApiClient

listener = test_email.listener  # our inbound SMTP listener, on this module's settings

KNOWN = "li.na@example.com"


@pytest.fixture
def relay() -> Iterator[Relay]:
    relay = Relay()
    relay.up()
    yield relay
    relay.down()


@pytest.fixture
def settings(settings: Settings, relay: Relay) -> Settings:
    return settings.model_copy(
        update={"email_address": ADDRESS, "smtp_host": "127.0.0.1", "smtp_port": relay.port}
    )


@pytest.fixture
async def visitor(server: TestServer, http: ApiClient) -> AsyncIterator[Visitor]:
    opened = Visitor(server, await new_visitor_token(http))
    await opened.connect()
    yield opened
    await opened.disconnect()


async def code_mails(relay: Relay, to: str) -> list[EmailMessage]:
    """The verification mails the relay took for ``to`` (ticket notices may pass it too)."""
    return [
        message
        for message in await relay.notices()
        if message["To"] == to and "验证码" in str(message["Subject"])
    ]


def plain(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


async def code_mailed_to(relay: Relay, to: str) -> tuple[str, EmailMessage]:
    found = await eventually(lambda: code_mails(relay, to), f"the code mail to {to} at the relay")
    message = found[-1]
    [code] = re.findall(r"\b\d{6}\b", plain(message))[:1]
    return code, message


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


async def test_a_visitor_who_proves_their_email_joins_the_history_of_the_customer_who_wrote_from_it(
    listener: int, relay: Relay, visitor: Visitor, admin: ApiClient
) -> None:
    await send(listener, mail("营业时间", "你好，周末营业吗？", "<weekend@example.com>"))
    writer = await customer_with(admin, "email", KNOWN)
    await visitor.say("你好")
    await visitor.next_reply()

    ack = await visitor.call("verify_email", {"email": "  Li.Na@Example.COM "})
    assert ack == {"ok": {"sent_to": "l***@example.com"}}
    code, sent = await code_mailed_to(relay, KNOWN)
    assert str(sent["From"]) == ADDRESS
    assert str(sent["Subject"]).startswith(
        "【汇流】邮箱验证码"
    )  # the visitor chats in Chinese: Chinese first
    text = plain(sent)
    assert text.index("您的验证码是") < text.index("Your Huiliu verification code")

    refused = await visitor.call("verify_code", {"code": wrong(code)})
    assert refused["error"]["code"] == "verification_failed" and refused["error"]["attempts_left"] == 4
    linked = await visitor.call("verify_code", {"code": code})
    assert linked == {"ok": {"customer_id": writer["id"], "merged": True}}
    await visitor.say("我的订单到哪了？")  # what the visitor writes from now on lands there too

    events = await timeline(admin, writer["id"])
    said = {(e["channel"], e["kind"], e["body"].get("text")) for e in events}
    assert {
        ("email", "message.in", "你好，周末营业吗？"),
        ("webchat", "message.in", "你好"),
        ("webchat", "message.in", "我的订单到哪了？"),
    } <= said
    [verified] = [e for e in events if e["kind"] == "identity.verified"]
    assert verified["channel"] == "webchat"
    body = verified["body"]
    assert (body["identity"], body["value"], body["merged"]) == ("email", KNOWN, True)
    assert body["merge_id"] and body["from_customer_id"] != writer["id"]  # the visitor's own, merged in
    assert verified["conversation_id"] == next(
        e["conversation_id"] for e in events if e["body"].get("text") == "你好"
    )
    _, audit, _ = await admin.request(
        "GET", "/api/audit", params={"target": f"/api/customers/{writer['id']}"}
    )
    assert [(entry["action"], entry["details"]["email"]) for entry in audit] == [
        ("identity_verified", "l***@example.com")
    ]
    assert visitor.client.connected


async def test_an_address_nobody_has_is_added_to_the_visitor_and_the_mail_speaks_their_language(
    server: TestServer, http: ApiClient, relay: Relay, admin: ApiClient
) -> None:
    visitor = Visitor(server, await new_visitor_token(http), language="en")
    await visitor.connect()
    try:
        assert await visitor.call("verify_email", {"email": "Wang.Fang@Shop.Example"}) == {
            "ok": {"sent_to": "w***@shop.example"}
        }
        code, sent = await code_mailed_to(relay, "wang.fang@shop.example")
        assert str(sent["Subject"]).startswith("Your Huiliu verification code")
        linked = await visitor.call("verify_code", {"code": code})
    finally:
        await visitor.disconnect()

    assert linked["ok"]["merged"] is False
    found = await customer_with(admin, "email", "wang.fang@shop.example")
    assert found["id"] == linked["ok"]["customer_id"]
    kinds = {identity["kind"] for identity in found["identities"]}
    assert kinds == {"web_visitor", "email"}
    assert "identity.verified" in [e["kind"] for e in await timeline(admin, found["id"])]


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ({"email": "li.na@example"}, "invalid_email"),
        ({"email": "li.na@example.com, boss@example.com"}, "invalid_email"),
        ({"email": "<b>li</b>@example.com"}, "invalid_email"),
        ({"email": "   "}, "email_required"),
        ({"phone": "13800138000"}, "email_required"),
        ("li.na@example.com", "email_required"),
    ],
)
async def test_what_is_not_one_mailbox_is_refused_precisely_and_nothing_is_sent(
    visitor: Visitor, relay: Relay, given: object, code: str
) -> None:
    answer = await visitor.call("verify_email", given)
    assert answer["error"]["code"] == code
    # Not even the minute's wait was spent on it: the visitor's right address is taken at once.
    address = f"zhao.{uuid.uuid4().hex[:8]}@example.com"
    assert await visitor.call("verify_email", {"email": address}) == {"ok": {"sent_to": "z***@example.com"}}
    await code_mailed_to(relay, address)
    assert len(await relay.notices()) == 1


async def test_five_wrong_codes_lock_the_code_even_against_the_right_one(
    visitor: Visitor, relay: Relay, admin: ApiClient
) -> None:
    await visitor.call("verify_email", {"email": "guess@example.com"})
    code, _ = await code_mailed_to(relay, "guess@example.com")
    guesses = [f"{n:06d}" for n in range(20) if f"{n:06d}" != code][:MAX_ATTEMPTS]

    answers = await asyncio.gather(*(visitor.call("verify_code", {"code": guess}) for guess in guesses))

    assert sorted(a["error"].get("attempts_left", 0) for a in answers) == [0, 1, 2, 3, 4]
    assert [a["error"]["code"] for a in answers].count("verification_locked") == 1
    late = await visitor.call("verify_code", {"code": code})
    assert late["error"]["code"] == "verification_locked"
    status, body, _ = await admin.request(
        "POST",
        "/api/customers/resolve",
        json={"identities": [{"kind": "email", "value": "guess@example.com"}]},
    )
    assert status == 201, body  # the address was never given to the visitor: it is a new customer


async def test_new_visitors_cannot_pump_codes_to_one_mailbox(
    server: TestServer, http: ApiClient, relay: Relay
) -> None:
    address = "target@example.com"
    answers = []
    for _ in range(CODES_PER_ADDRESS + 2):
        fresh = Visitor(server, await new_visitor_token(http))  # a new customer each time
        await fresh.connect()
        try:
            answers.append(await fresh.call("verify_email", {"email": address}))
        finally:
            await fresh.disconnect()
        again = Visitor(server, await new_visitor_token(http))
        await again.connect()
        try:  # another visitor in the same minute
            limited = await again.call("verify_email", {"email": address.upper()})
            assert limited["error"]["code"] == "verification_rate_limited", limited
        finally:
            await again.disconnect()
        await server.app[REDIS].delete(f"huiliu:verify:email-wait:{address}")  # as if the minute had passed

    assert answers[:CODES_PER_ADDRESS] == [{"ok": {"sent_to": "t***@example.com"}}] * CODES_PER_ADDRESS
    for refused in answers[CODES_PER_ADDRESS:]:
        assert refused["error"]["code"] == "verification_email_limited"
        assert refused["error"]["detail"].startswith(f"{CODES_PER_ADDRESS} codes were sent to this address")
    assert len(await code_mails(relay, address)) == CODES_PER_ADDRESS


async def test_a_relay_that_is_down_is_said_plainly_and_leaves_no_code_waiting(
    visitor: Visitor, relay: Relay
) -> None:
    relay.down()
    answer = await visitor.call("verify_email", {"email": "down@example.com"})
    assert answer["error"]["code"] == "email_send_failed"
    late = await visitor.call("verify_code", {"code": "123456"})
    assert late["error"]["code"] == "no_verification"
