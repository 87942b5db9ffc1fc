"""Inbound email by IMAP polling, for mailboxes at a provider that will not forward over SMTP.

``huiliu email`` runs an :class:`ImapPoller` beside the SMTP listener when ``HUILIU_IMAP_HOST`` is set. Every
``HUILIU_IMAP_INTERVAL_SECONDS`` it logs in, asks for the UIDs of unseen messages in ``HUILIU_IMAP_FOLDER``
and hands each one to :meth:`EmailService.receive` — the same path as SMTP mail (threading, nh3, attachments).

No loss, no duplicates. A message is fetched with ``BODY.PEEK[]`` (which, unlike ``RFC822``, leaves it
unseen) and flagged ``\\Seen`` only after it is stored. A crash in between leaves it unseen; the next poll
fetches it again and the Message-ID idempotency of ``receive`` lands it once. A message that can never be
taken (too large, no sender) is flagged seen so that it is not fetched forever; it stays in the mailbox.
A failure of our own (the database is down) leaves it unseen for the next poll and moves on to the next one.

imaplib is blocking, so every IMAP exchange runs in a worker thread; one connection per poll, used by one
thread at a time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import imaplib
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.errors import Invalid
from core.log import get_logger
from core.settings import Settings
from omnichannel.channels.mail import EmailService

log = get_logger(__name__)

ImapTls = Literal["implicit", "starttls", "none"]

_UID = re.compile(rb"UID (\d+)")


@dataclass(frozen=True)
class ImapConfig:
    host: str
    username: str
    password: str
    port: int = 993
    folder: str = "INBOX"
    interval_seconds: float = 30.0
    tls: ImapTls = "implicit"
    timeout_seconds: float = 30.0


class ImapError(Exception):
    """The server refused a command (the reply names which)."""


class ImapPoller:
    def __init__(self, service: EmailService, config: ImapConfig) -> None:
        self.service = service
        self.config = config

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; a failed poll is logged and retried at the next interval."""
        while not stop.is_set():
            try:
                landed = await self.poll_once(stop)
                if landed:
                    log.info("email.imap_polled", landed=landed)
            except Exception as exc:
                log.error("email.imap_poll_failed", host=self.config.host, error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.interval_seconds)

    async def poll_once(self, stop: asyncio.Event | None = None) -> int:
        """Take every unseen message of the folder (until ``stop`` is set); returns how many landed as new
        mail."""
        client = await asyncio.to_thread(self._connect)
        try:
            landed = 0
            for uid in await asyncio.to_thread(self._unseen, client):
                if stop is not None and stop.is_set():
                    break
                raw = await asyncio.to_thread(self._fetch, client, uid)
                if raw is None:  # expunged by someone else since the search
                    continue
                try:
                    landed += await self.service.receive(raw)
                except Invalid as exc:
                    log.warning("email.imap_refused", uid=uid, code=exc.code, detail=exc.detail)
                except Exception:
                    # Ours to fix (the database is away…): left unseen for the next poll, and the messages
                    # after it are still taken.
                    log.exception("email.imap_receive_failed", uid=uid)
                    continue
                await asyncio.to_thread(self._mark_seen, client, uid)
            return landed
        finally:
            await asyncio.to_thread(_logout, client)

    # Blocking IMAP, run in worker threads.

    def _connect(self) -> imaplib.IMAP4:
        config = self.config
        client: imaplib.IMAP4
        if config.tls == "implicit":
            client = imaplib.IMAP4_SSL(
                config.host,
                config.port,
                ssl_context=ssl.create_default_context(),
                timeout=config.timeout_seconds,
            )
        else:
            client = imaplib.IMAP4(config.host, config.port, timeout=config.timeout_seconds)
            if config.tls == "starttls":
                client.starttls(ssl.create_default_context())
        try:
            if (config.username + config.password).isascii():
                client.login(config.username, config.password)
            else:  # LOGIN is ASCII-only in imaplib; SASL PLAIN carries UTF-8
                credentials = f"\0{config.username}\0{config.password}".encode()
                client.authenticate("PLAIN", lambda _challenge: credentials)
            _ok(client.select(_quoted(mailbox_name(config.folder))), "SELECT")
        except BaseException:
            _logout(client)
            raise
        return client

    def _unseen(self, client: imaplib.IMAP4) -> list[str]:
        data = _ok(client.uid("SEARCH", "UNSEEN"), "UID SEARCH")
        return [uid.decode() for chunk in data if isinstance(chunk, bytes) for uid in chunk.split()]

    def _fetch(self, client: imaplib.IMAP4, uid: str) -> bytes | None:
        data = _ok(client.uid("FETCH", uid, "(BODY.PEEK[])"), "UID FETCH")
        for item in data:
            if isinstance(item, tuple) and (match := _UID.search(item[0])) and match.group(1).decode() == uid:
                return bytes(item[1])
        return None

    def _mark_seen(self, client: imaplib.IMAP4, uid: str) -> None:
        _ok(client.uid("STORE", uid, "+FLAGS", "(\\Seen)"), "UID STORE")


def _ok(reply: tuple[str, Sequence[object]], command: str) -> list[object]:
    status, data = reply
    if status != "OK":
        raise ImapError(f"{command}: {status} {data!r}")
    return list(data)


def mailbox_name(folder: str) -> str:
    """``folder`` in IMAP's modified UTF-7 (RFC 3501 5.1.3): how a name like 客服 goes on the wire."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + encoded.replace("/", ",") + "-")
            pending.clear()

    for char in folder:
        if "\x20" <= char <= "\x7e":
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _logout(client: imaplib.IMAP4) -> None:
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        client.logout()


def imap_config(settings: Settings) -> ImapConfig | None:
    """The poller's settings, or None when ``HUILIU_IMAP_HOST`` is unset."""
    if not settings.imap_host:
        return None
    if (
        not settings.imap_username
        or not settings.imap_password
        or not settings.imap_password.get_secret_value()
    ):
        raise ValueError("HUILIU_IMAP_USERNAME and HUILIU_IMAP_PASSWORD are required with HUILIU_IMAP_HOST")
    return ImapConfig(
        host=settings.imap_host,
        username=settings.imap_username,
        password=settings.imap_password.get_secret_value(),
        port=settings.imap_port,
        folder=settings.imap_folder,
        interval_seconds=settings.imap_interval_seconds,
        tls=settings.imap_tls,
    )
