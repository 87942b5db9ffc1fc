"""Core periodic tasks. Tasks use synchronous clients (Celery runs them in worker threads)."""

from __future__ import annotations

from functools import cache
from typing import Any

import redis
from pymongo import MongoClient

from core.bus import relay_outbox as relay
from core.settings import Settings
from core.worker import app


@cache
def _clients(settings: Settings) -> tuple[Any, Any]:
    assert settings.mongo_url is not None and settings.redis_url is not None
    mongo: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url, tz_aware=True, serverSelectionTimeoutMS=settings.mongo_timeout_ms
    )
    return mongo[settings.db_name], redis.Redis.from_url(settings.redis_url)


@app.task(name="core.tasks.relay_outbox", ignore_result=True)  # type: ignore[untyped-decorator]
def relay_outbox() -> int:
    """Publish bus events whose first publish failed (Redis was down); safe to run concurrently twice:
    subscribers drop a repeated event id."""
    db, redis_client = _clients(app.conf.huiliu_settings)
    return relay(db, redis_client)
