"""The Celery application (``celery -A core.worker``): broker on Redis, tasks idempotent, acks late."""

from __future__ import annotations

from celery import Celery

from core.settings import Settings, load_settings
from omnichannel.channels.wiring import beat_schedule as channels_beat_schedule
from tickets.config import beat_schedule as tickets_beat_schedule


def create_celery(settings: Settings) -> Celery:
    app = Celery(
        "huiliu",
        broker=settings.redis_url,
        include=["core.tasks", "tickets.tasks", "omnichannel.channels.tasks"],
    )
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        beat_schedule={
            "relay-outbox": {"task": "core.tasks.relay_outbox", "schedule": settings.outbox_relay_seconds},
            **tickets_beat_schedule(settings),
            **channels_beat_schedule(settings),
        },
    )
    app.conf.huiliu_settings = settings
    return app


app = create_celery(load_settings())
