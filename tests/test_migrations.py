"""Schema changes ship as numbered migrations, applied once, in order, even with several nodes starting."""

from __future__ import annotations

import asyncio
from typing import Any

from core.db import Database, MigrationRegistry, migration
from core.settings import Settings


async def test_migrations_apply_once_in_order_across_concurrent_starts(
    settings: Settings, db: Database
) -> None:
    registry: MigrationRegistry = {}
    calls: list[int] = []

    @migration(2, "backfill customer language", registry)
    async def second(database: Any) -> None:
        calls.append(2)
        await database.customers.update_many({"language": None}, {"$set": {"language": "zh"}})

    @migration(1, "seed a customer", registry)
    async def first(database: Any) -> None:
        calls.append(1)
        await asyncio.sleep(0.2)  # long enough for the other node to try at the same time
        await database.customers.insert_one({"name": "old", "identity_keys": [], "language": None})

    assert settings.mongo_url is not None
    nodes = [Database.connect(settings.mongo_url, settings.db_name) for _ in range(3)]
    try:
        results = await asyncio.gather(*(node.prepare(registry) for node in nodes))
    finally:
        for node in nodes:
            await node.close()
    assert calls == [1, 2]
    applied_names = sorted(name for applied in results for name in applied)
    assert applied_names == ["backfill customer language", "seed a customer"]
    assert await db.schema_version() == 2
    assert (await db["customers"].find_one({"name": "old"}))["language"] == "zh"
    assert await db.prepare(registry) == []
    assert await db["schema_migrations"].count_documents({"_id": "lock"}) == 0
