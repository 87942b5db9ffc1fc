"""The Celery application (``celery -A core.worker``): broker on Redis, tasks idempotent, acks late."""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps
from celery.beat import EmbeddedService

from core.settings import Settings, load_settings
from omnichannel.channels.wiring import beat_schedule as channels_beat_schedule
from tickets.config import beat_schedule as tickets_beat_schedule


class EmbeddedBeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """The beat scheduler as a thread of this worker (``huiliu worker --beat``, which ``huiliu run`` starts):
    the same schedule and schedule file as ``huiliu beat``, without a second process that imports the whole
    platform (~80 MB) to send a few tasks by name. Enabled by ``app.conf.huiliu_beat_schedule_file``."""

    label = "Embedded beat"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.enabled = bool(worker.app.conf.get("huiliu_beat_schedule_file"))

    def create(self, worker: Any) -> Any:
        # thread=True: celery's own `worker --beat` forks a process for it instead
        return EmbeddedService(
            worker.app, thread=True, schedule_filename=worker.app.conf.huiliu_beat_schedule_file
        )


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
    app.steps["worker"].add(EmbeddedBeat)
    return app


app = create_celery(load_settings())
