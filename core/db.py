"""MongoDB access through PyMongo's async API: one client per process, indexes and schema migrations.

Each package declares its collections' indexes and its migrations here at import time (``register_indexes``,
``migration``); ``Database.prepare()`` creates the indexes and applies pending migrations once, in order,
under a lock document so two processes starting together do not run a migration twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from core.log import get_logger

log = get_logger(__name__)

Document = dict[str, Any]
Migration = Callable[[AsyncDatabase[Document]], Awaitable[None]]


@dataclass(frozen=True)
class _MigrationSpec:
    version: int
    name: str
    apply: Migration


_INDEXES: dict[str, list[IndexModel]] = {}
_MIGRATIONS: dict[int, _MigrationSpec] = {}
MigrationRegistry = dict[int, _MigrationSpec]


def register_indexes(collection: str, *indexes: IndexModel) -> None:
    """Declare indexes a collection needs; created (idempotently) by ``Database.prepare``."""
    _INDEXES.setdefault(collection, []).extend(indexes)


def migration(
    version: int, name: str, registry: MigrationRegistry | None = None
) -> Callable[[Migration], Migration]:
    """Register a data migration; versions are global integers, applied in ascending order once."""
    target = _MIGRATIONS if registry is None else registry

    def register(func: Migration) -> Migration:
        existing = target.get(version)
        if existing is not None and existing.apply is not func:
            raise RuntimeError(f"migration version {version} registered twice ({existing.name}, {name})")
        target[version] = _MigrationSpec(version, name, func)
        return func

    return register


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC, truncated to milliseconds (what BSON stores)."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


async def update_returning(collection: Any, guard: Document, update: Document) -> Document | None:
    """Apply ``update`` to the document ``guard`` matches and return it as written (findAndModify, one
    round trip, the post-image of this very write); None when the guard did not match. On the embedded
    server a guard naming the ``_id`` is an ``_id`` lookup (``core.mongod.point_lookup_guards``)."""
    found: Document | None = await collection.find_one_and_update(
        guard, update, return_document=ReturnDocument.AFTER
    )
    return found


# How long a new connection's handshake and the driver's server check may take. A busy server answers
# them slowly; a check that times out marks the server unknown and clears the connection pool, so every
# request in flight fails and reconnects at once, which makes the server busier still (measured with the
# telephony bench at 20 calls/s). A server that is down refuses at once and is noticed at once anyway.
MIN_CONNECT_TIMEOUT_MS = 10_000


def make_client(url: str, timeout_ms: int) -> AsyncMongoClient[Document]:
    """``timeout_ms``: how long a request waits for a usable server before it fails (the web's 503)."""
    return AsyncMongoClient(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=max(timeout_ms, MIN_CONNECT_TIMEOUT_MS),
        socketTimeoutMS=max(timeout_ms * 5, 10_000),
        maxIdleTimeMS=120_000,  # retire idle connections before a server drops them (SecantusDB: 300 s)
        appname="huiliu",
    )


class Database:
    """The process's MongoDB handle; ``db`` is the AsyncDatabase the stores use."""

    def __init__(self, client: AsyncMongoClient[Document], name: str) -> None:
        self.client = client
        self.db: AsyncDatabase[Document] = client[name]

    @classmethod
    def connect(cls, url: str, name: str, timeout_ms: int = 2000) -> Database:
        return cls(make_client(url, timeout_ms), name)

    def __getitem__(self, collection: str) -> Any:
        return self.db[collection]

    async def ping(self) -> None:
        await self.db.command("ping")

    async def close(self) -> None:
        await self.client.close()

    async def prepare(self, migrations: MigrationRegistry | None = None) -> list[str]:
        """Create declared indexes and apply pending migrations; returns the names of those applied."""
        for collection, indexes in _INDEXES.items():
            await self.db[collection].create_indexes(indexes)
        return await self._migrate(_MIGRATIONS if migrations is None else migrations)

    async def schema_version(self) -> int:
        latest = await self.db.schema_migrations.find_one({"_id": {"$type": "int"}}, sort=[("_id", -1)])
        return int(latest["_id"]) if latest else 0

    async def _migrate(self, migrations: MigrationRegistry) -> list[str]:
        applied: list[str] = []
        pending = sorted(migrations)
        if not pending:
            return applied
        await self._acquire_lock()
        try:
            done = {doc["_id"] async for doc in self.db.schema_migrations.find({"_id": {"$type": "int"}})}
            for version in pending:
                if version in done:
                    continue
                spec = migrations[version]
                log.info("migration.applying", version=version, name=spec.name)
                await spec.apply(self.db)
                await self.db.schema_migrations.insert_one(
                    {"_id": version, "name": spec.name, "applied_at": utcnow()}
                )
                applied.append(spec.name)
        finally:
            await self.db.schema_migrations.delete_one({"_id": "lock", "owner": _owner()})
        return applied

    async def _acquire_lock(self, stale_after: float = 300.0) -> None:
        while True:
            now = utcnow()
            try:
                await self.db.schema_migrations.insert_one({"_id": "lock", "owner": _owner(), "at": now})
                return
            except DuplicateKeyError:
                lock = await self.db.schema_migrations.find_one({"_id": "lock"})
                if lock and (now - as_utc(lock["at"])).total_seconds() > stale_after:
                    await self.db.schema_migrations.delete_one({"_id": "lock", "at": lock["at"]})
                    continue
                await asyncio.sleep(0.2)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
