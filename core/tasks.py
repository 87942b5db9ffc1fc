"""Core periodic tasks. Tasks use synchronous clients (Celery runs them in worker threads)."""

from __future__ import annotations

from functools import cache
from typing import Any

import redis
from pymongo import MongoClient
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from core.bus import relay_outbox as relay
from core.settings import Settings
from core.worker import app


@cache
def _clients(settings: Settings) -> tuple[Any, Any]:
    assert settings.mongo_url is not None and settings.redis_url is not None
    mongo: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongo_url, tz_aware=True, serverSelectionTimeoutMS=settings.mongo_timeout_ms
    )
    # Like core.bus.connect_redis: the first command after a Redis restart is retried on a fresh connection.
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=2,
        socket_connect_timeout=2,
        health_check_interval=15,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    )
    return mongo[settings.db_name], client


@app.task(name="core.tasks.relay_outbox", ignore_result=True)  # type: ignore[untyped-decorator]
def relay_outbox() -> int:
    """Publish bus events whose first publish failed (Redis was down); safe to run concurrently twice:
    subscribers drop a repeated event id."""
    db, redis_client = _clients(app.conf.huiliu_settings)
    return relay(db, redis_client)
