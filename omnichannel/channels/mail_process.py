"""``huiliu email``: the inbound SMTP listener (and, with ``HUILIU_IMAP_HOST``, the IMAP poller) as its own
process (started by ``huiliu run`` when ``HUILIU_EMAIL_ENABLED=true``). A separate process, not the web
process, so that port 25 traffic and a burst of large mails never slow the chat sockets, and so that it scales
(or is firewalled) on its own."""

from __future__ import annotations

import asyncio
import signal

from core.bus import EventBus, connect_redis
from core.db import Database
from core.log import get_logger
from core.settings import Settings
from omnichannel import Omnichannel
from omnichannel.channels.imap import ImapPoller, imap_config
from omnichannel.channels.mail import start_listener
from omnichannel.channels.wiring import create_channels
from tickets import create_service

log = get_logger(__name__)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    assert settings.mongo_url is not None and settings.redis_url is not None
    db = Database.connect(settings.mongo_url, settings.db_name, settings.mongo_timeout_ms)
    redis = connect_redis(settings.redis_url)
    omni = Omnichannel.create(db, EventBus(redis, db), default_region=settings.default_region)
    channels = create_channels(db, omni, redis, settings)
    channels.attach(create_service(db, omni, settings, notifier=channels.notifier))
    server = await start_listener(channels.email, settings.email_listen_host, settings.email_listen_port)
    log.info("email.listening", host=settings.email_listen_host, port=settings.email_listen_port)
    imap = imap_config(settings)
    polling = asyncio.create_task(ImapPoller(channels.email, imap).run(stop)) if imap else None
    try:
        await stop.wait()
    finally:
        if polling is not None:
            # The poller stops between messages: a mail being stored is finished and flagged first.
            await polling
        server.close()
        await server.wait_closed()
        await channels.close()
        await redis.aclose()
        await db.close()


def main(settings: Settings) -> int:
    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(settings, stop)

    asyncio.run(run())
    return 0
