"""MongoDB access for telephony: ``calls`` (who owns each live call), ``telephony_workers`` (heartbeats)
and ``recordings`` (metadata; the audio is a WAV file on disk)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from core.db import Database, register_indexes
from core.settings import Settings

Document = dict[str, Any]

ACTIVE = "active"
ENDED = "ended"

register_indexes(
    "calls",
    IndexModel([("status", ASCENDING), ("worker_id", ASCENDING)]),
    IndexModel([("customer_id", ASCENDING), ("started_at", DESCENDING)]),
    IndexModel([("started_at", DESCENDING)]),
)
register_indexes("telephony_workers", IndexModel([("expires_at", ASCENDING)]))
register_indexes(
    "recordings",
    IndexModel([("call_id", ASCENDING)]),
    IndexModel([("created_at", ASCENDING)]),
)


def heartbeat_interval(settings: Settings) -> float:
    """How often workers beat: ``telephony_heartbeat_seconds``, but at most 1/2.5 of the node timeout, so
    two beats can be late before a worker counts as lost."""
    return min(settings.telephony_heartbeat_seconds, settings.telephony_node_timeout_seconds / 2.5)


class TelephonyStore:
    def __init__(self, db: Database) -> None:
        self.calls = db["calls"]
        self.workers = db["telephony_workers"]
        self.recordings = db["recordings"]

    # -- calls (``_id`` is the SIP Call-ID)

    async def insert_call(self, doc: Document, fields: Document | None = None) -> Document:
        """Store a new live call, with ``fields`` set even on one stored before; a retry (or a Call-ID seen
        before) returns what is stored."""
        update: Document = {
            "$setOnInsert": {key: value for key, value in doc.items() if key not in (fields or {})}
        }
        if fields:
            update["$set"] = fields
        try:
            stored = await self.calls.find_one_and_update(
                {"_id": doc["_id"]},
                update,
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            stored = None
        if stored is None:
            stored = await self.calls.find_one({"_id": doc["_id"]})
        return stored or doc

    async def update_call(self, call_id: str, fields: Document) -> None:
        await self.calls.update_one({"_id": call_id}, {"$set": fields})

    async def finish_call(self, call_id: str, fields: Document) -> Document | None:
        """Mark a live call ended; ``None`` when it had already ended (somebody else did it)."""
        result: Document | None = await self.calls.find_one_and_update(
            {"_id": call_id, "status": ACTIVE},
            {"$set": {**fields, "status": ENDED}},
            return_document=ReturnDocument.AFTER,
        )
        return result

    async def call(self, call_id: str) -> Document | None:
        result: Document | None = await self.calls.find_one({"_id": call_id})
        return result

    async def active_calls(self, limit: int = 500) -> list[Document]:
        cursor = self.calls.find({"status": ACTIVE}, sort=[("started_at", -1)], limit=limit)
        return [doc async for doc in cursor]

    async def orphaned_calls(self, live_workers: list[str]) -> list[Document]:
        """Live calls whose owning worker is not among ``live_workers``."""
        cursor = self.calls.find({"status": ACTIVE, "worker_id": {"$nin": live_workers}})
        return [doc async for doc in cursor]

    # -- worker heartbeats (``_id`` is the worker incarnation id)

    async def heartbeat(self, worker_id: str, fields: Document, expires_at: dt.datetime) -> None:
        await self.workers.update_one(
            {"_id": worker_id}, {"$set": {**fields, "expires_at": expires_at}}, upsert=True
        )

    async def heartbeats(self, beats: list[tuple[str, Document, dt.datetime]]) -> None:
        """Several workers' heartbeats (id, fields, expiry) in one command (a pool writes its workers')."""
        await self.workers.bulk_write(
            [
                UpdateOne({"_id": worker_id}, {"$set": {**fields, "expires_at": expires_at}}, upsert=True)
                for worker_id, fields, expires_at in beats
            ],
            ordered=False,
        )

    async def expire_worker(self, worker_id: str, at: dt.datetime) -> None:
        await self.workers.update_one({"_id": worker_id}, {"$set": {"expires_at": at}})

    async def live_workers(self, now: dt.datetime) -> list[Document]:
        return [doc async for doc in self.workers.find({"expires_at": {"$gt": now}})]

    async def worker(self, worker_id: str) -> Document | None:
        result: Document | None = await self.workers.find_one({"_id": worker_id})
        return result

    async def forget_workers(self, before: dt.datetime) -> None:
        await self.workers.delete_many({"expires_at": {"$lt": before}})

    # -- recordings

    async def add_recording(self, doc: Document) -> None:
        await self.recordings.update_one({"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True)

    async def find_recordings(
        self, *, call_id: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[Document]:
        """Recordings newest first, of one call and/or with one status (``complete`` or ``failed``)."""
        query: Document = {}
        if call_id is not None:
            query["call_id"] = call_id
        if status is not None:
            query["status"] = status
        cursor = self.recordings.find(query, sort=[("created_at", -1)], limit=limit)
        return [doc async for doc in cursor]

    async def recordings_older_than(self, before: dt.datetime, limit: int = 500) -> list[Document]:
        cursor = self.recordings.find(
            {"created_at": {"$lt": before}, "deleted_at": None}, sort=[("created_at", 1)], limit=limit
        )
        return [doc async for doc in cursor]

    async def mark_recording_deleted(self, recording_id: str, at: dt.datetime) -> None:
        await self.recordings.update_one({"_id": recording_id}, {"$set": {"deleted_at": at}})
