"""Inbound email by IMAP polling, against a real IMAP server: Debian's Dovecot (``dovecot-imapd``, installed
by ``make``) on a loopback port with a throwaway maildir. Mail "arrives" the way a provider's MTA files it: an
IMAP APPEND into the inbox, unseen."""

from __future__ import annotations

import asyncio
import getpass
import grp
import imaplib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from core.db import Database
from core.embedded import free_port, spawn, wait_for_port
from core.settings import Settings
from omnichannel.channels.http import CHANNELS
from omnichannel.channels.imap import ImapConfig, ImapPoller, mailbox_name
from omnichannel.channels.mail import EmailService
from tests.channels.conftest import customer_with, eventually, timeline
from tests.channels.test_email import ADDRESS, CUSTOMER, mail
from tests.conftest import ApiClient

DOVECOT = "/usr/sbin/dovecot"
PASSWORD = "imap-secret-密码"


@dataclass
class Mailbox:
    port: int
    user: str = ADDRESS
    password: str = PASSWORD

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        credentials = f"\0{self.user}\0{self.password}".encode()  # SASL PLAIN: the password is UTF-8
        client.authenticate("PLAIN", lambda _challenge: credentials)
        return client

    def deliver(self, message: EmailMessage | bytes, folder: str = "INBOX") -> None:
        """File a message into ``folder``, unseen, as the provider's MTA would."""
        raw = message if isinstance(message, bytes) else bytes(message)
        client = self.client()
        try:
            if folder != "INBOX":
                client.create(mailbox_name(folder))
            status, data = client.append(mailbox_name(folder), None, None, raw)
            assert status == "OK", data
        finally:
            client.logout()

    def messages(self) -> tuple[int, int]:
        """(all messages, unseen messages) in INBOX."""
        client = self.client()
        try:
            client.select("INBOX")
            everything = client.uid("SEARCH", "ALL")[1][0].split()
            unseen = client.uid("SEARCH", "UNSEEN")[1][0].split()
            return len(everything), len(unseen)
        finally:
            client.logout()

    def config(self, **overrides: object) -> ImapConfig:
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": self.user,
            "password": self.password,
            "tls": "none",
            "interval_seconds": 1.0,
        }
        return ImapConfig(**(values | overrides))  # type: ignore[arg-type]


def _dovecot_conf(root: Path, port: int) -> str:
    # Root: Dovecot drops to its own users (mail as "dovecot"). Anyone else: Dovecot's rootless mode, every
    # process as the current user and no chroot.
    if os.getuid() == 0:
        mail_user, mail_group, rootless = "dovecot", "dovecot", ""
    else:
        mail_user = getpass.getuser()
        mail_group = grp.getgrgid(os.getgid()).gr_name
        rootless = (
            f"default_internal_user = {mail_user}\ndefault_internal_group = {mail_group}\n"
            f"default_login_user = {mail_user}\nservice anvil {{\n  chroot =\n}}\n"
        )
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
{rootless}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    root = Path(tempfile.mkdtemp(prefix="huiliu-dovecot-"))
    root.chmod(0o755)  # Dovecot's unprivileged processes walk into it
    (root / "home").mkdir()
    if os.getuid() == 0:
        uid = pwd.getpwnam("dovecot").pw_uid
        gid = grp.getgrnam("dovecot").gr_gid
        os.chown(root / "home", uid, gid)
    port = free_port()
    (root / "passwd").write_text(f"{ADDRESS}:{{PLAIN}}{PASSWORD}\n")
    (root / "dovecot.conf").write_text(_dovecot_conf(root, port))
    process = spawn([DOVECOT, "-F", "-c", str(root / "dovecot.conf")], log_path=root / "stdout.log")
    try:
        wait_for_port(port, process, "dovecot", 20)
        yield Mailbox(port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"email_address": ADDRESS})


async def test_unseen_mail_in_the_mailbox_lands_threaded_once_and_is_flagged_seen(
    server: TestServer, mailbox: Mailbox, admin: ApiClient
) -> None:
    first = mail("订单 12345 的发票", "你好，请帮我开发票。", "<i1@example.com>")
    first.add_alternative("<p>你好<script>alert(1)</script><b>发票</b></p>", subtype="html")
    first.add_attachment(b"%PDF-1.4 invoice", maintype="application", subtype="pdf", filename="发票.pdf")
    await asyncio.to_thread(mailbox.deliver, first)
    await asyncio.to_thread(
        mailbox.deliver,
        mail("Re: 订单 12345 的发票", "抬头是汇流公司", "<i2@example.com>", References="<i1@example.com>"),
    )
    poller = ImapPoller(server.app[CHANNELS].email, mailbox.config())

    assert await poller.poll_once() == 2
    assert await asyncio.to_thread(mailbox.messages) == (2, 0)  # still there, now seen
    assert await poller.poll_once() == 0  # nothing unseen: nothing fetched twice

    customer = await customer_with(admin, "email", CUSTOMER)
    inbound = [e for e in await timeline(admin, customer["id"]) if e["kind"] == "message.in"]
    assert [e["body"]["message_id"] for e in inbound] == ["<i1@example.com>", "<i2@example.com>"]
    assert inbound[0]["conversation_id"] == inbound[1]["conversation_id"]
    assert "<b>发票</b>" in inbound[0]["body"]["html"] and "script" not in inbound[0]["body"]["html"]
    [attachment] = inbound[0]["body"]["attachments"]
    assert attachment["name"] == "发票.pdf" and attachment["size"] == len(b"%PDF-1.4 invoice")


async def test_a_mail_stored_but_not_yet_flagged_before_a_crash_lands_once(
    server: TestServer, mailbox: Mailbox, admin: ApiClient
) -> None:
    message = mail("退货", "我想退货", "<crash@example.com>")
    await asyncio.to_thread(mailbox.deliver, message)
    service = server.app[CHANNELS].email
    # The previous process stored it and died before UID STORE \Seen: the mail is still unseen.
    assert await service.receive(bytes(message)) is True

    assert await ImapPoller(service, mailbox.config()).poll_once() == 0
    assert await asyncio.to_thread(mailbox.messages) == (1, 0)
    customer = await customer_with(admin, "email", CUSTOMER)
    kinds = [e["idempotency_key"] for e in await timeline(admin, customer["id"]) if e["kind"] == "message.in"]
    assert kinds == ["email:in:<crash@example.com>"]


async def test_mail_that_cannot_be_taken_is_flagged_seen_and_left_in_the_mailbox(
    server: TestServer, mailbox: Mailbox, db: Database
) -> None:
    no_sender = b"To: service@shop.example\r\nSubject: ?\r\nMessage-ID: <anon@example.com>\r\n\r\nhello\r\n"
    await asyncio.to_thread(mailbox.deliver, no_sender)
    await asyncio.to_thread(mailbox.deliver, mail("好的", "谢谢", "<ok@example.com>"))

    assert await ImapPoller(server.app[CHANNELS].email, mailbox.config()).poll_once() == 1
    assert await asyncio.to_thread(mailbox.messages) == (2, 0)  # not fetched forever, not deleted
    assert await db["email_messages"].find_one({"_id": "<anon@example.com>"}) is None


async def test_a_chinese_folder_and_a_utf8_password_work(
    server: TestServer, mailbox: Mailbox, db: Database
) -> None:
    assert mailbox_name("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"  # RFC 3501's example
    await asyncio.to_thread(mailbox.deliver, mail("投诉", "物流太慢", "<cn@example.com>"), "客服")
    poller = ImapPoller(server.app[CHANNELS].email, mailbox.config(folder="客服"))
    assert mailbox.password.isascii() is False
    assert await poller.poll_once() == 1
    assert await db["email_messages"].find_one({"_id": "<cn@example.com>"}) is not None


async def test_a_wrong_password_or_folder_stores_nothing_and_flags_nothing(
    server: TestServer, mailbox: Mailbox, db: Database
) -> None:
    await asyncio.to_thread(mailbox.deliver, mail("在吗", "在吗？", "<w1@example.com>"))
    service = server.app[CHANNELS].email
    with pytest.raises(imaplib.IMAP4.error):
        await ImapPoller(service, mailbox.config(password="wrong")).poll_once()
    with pytest.raises(Exception, match="SELECT"):
        await ImapPoller(service, mailbox.config(folder="没有这个文件夹")).poll_once()
    assert await asyncio.to_thread(mailbox.messages) == (1, 1)
    assert await db["email_messages"].count_documents({}) == 0


async def test_huiliu_email_polls_the_mailbox_when_imap_is_configured(
    settings: Settings, db: Database, mailbox: Mailbox, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "HUILIU_MONGO_URL": str(settings.mongo_url),
        "HUILIU_REDIS_URL": str(settings.redis_url),
        "HUILIU_DB_NAME": settings.db_name,
        "HUILIU_DATA_DIR": str(tmp_path / "var"),
        "HUILIU_SECRET_KEY": "test-secret-key-not-for-production",
        "HUILIU_EMAIL_ADDRESS": ADDRESS,
        "HUILIU_EMAIL_LISTEN_PORT": str(free_port()),
        "HUILIU_IMAP_HOST": "127.0.0.1",
        "HUILIU_IMAP_PORT": str(mailbox.port),
        "HUILIU_IMAP_USERNAME": mailbox.user,
        "HUILIU_IMAP_PASSWORD": mailbox.password,
        "HUILIU_IMAP_TLS": "none",
        "HUILIU_IMAP_INTERVAL_SECONDS": "1",
        "HUILIU_LOG_LEVEL": "WARNING",
    }
    process = spawn([sys.executable, "-m", "core.cli", "email"], env=env, log_path=tmp_path / "email.log")
    try:
        await asyncio.to_thread(mailbox.deliver, mail("发票", "请开发票", "<poll@example.com>"))
        landed = await eventually(
            lambda: db["timeline"].find_one({"idempotency_key": "email:in:<poll@example.com>"}),
            "the polled mail",
            within=30,
        )
        assert landed["channel"] == "email" and landed["body"]["subject"] == "发票"
        assert await eventually(
            lambda: asyncio.to_thread(lambda: mailbox.messages() == (1, 0)), "the mail flagged seen"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 15) == 0


async def test_a_mail_we_fail_to_store_stays_unseen_and_lands_on_a_later_poll(
    server: TestServer, mailbox: Mailbox, db: Database, tmp_path: Path
) -> None:
    with_attachment = mail("合同", "附件是合同", "<fail@example.com>")
    with_attachment.add_attachment(b"contract", maintype="application", subtype="pdf", filename="合同.pdf")
    await asyncio.to_thread(mailbox.deliver, with_attachment)
    await asyncio.to_thread(mailbox.deliver, mail("在吗", "在吗？", "<after@example.com>"))
    working = server.app[CHANNELS].email
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")  # attachments cannot be written under a file: our failure, not the sender's
    broken = EmailService(db, working.omni, working.config, blocked)

    assert await ImapPoller(broken, mailbox.config()).poll_once() == 1  # the next mail is still taken
    assert await asyncio.to_thread(mailbox.messages) == (2, 1)
    assert await ImapPoller(working, mailbox.config()).poll_once() == 1
    assert await asyncio.to_thread(mailbox.messages) == (2, 0)
    stored = await db["timeline"].find_one({"idempotency_key": "email:in:<fail@example.com>"})
    assert stored is not None and len(stored["body"]["attachments"]) == 1
    conversations = await db["conversations"].count_documents({"external_ref": "email:<fail@example.com>"})
    assert conversations == 1


async def test_a_crash_after_the_timeline_write_but_before_the_message_id_is_remembered_loses_nothing(
    server: TestServer, mailbox: Mailbox, db: Database
) -> None:
    message = mail("发票", "请开发票", "<half@example.com>")
    await asyncio.to_thread(mailbox.deliver, message)
    service = server.app[CHANNELS].email
    assert await service.receive(bytes(message)) is True
    await db["email_messages"].delete_one({"_id": "<half@example.com>"})  # the write the crash prevented

    await ImapPoller(service, mailbox.config()).poll_once()
    assert await asyncio.to_thread(mailbox.messages) == (1, 0)
    assert await db["timeline"].count_documents({"idempotency_key": "email:in:<half@example.com>"}) == 1
    assert await db["email_messages"].find_one({"_id": "<half@example.com>"}) is not None
