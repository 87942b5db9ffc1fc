"""The append-only audit trail: who did what, when, from where. Nothing in the code updates or deletes it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId
from pydantic import BaseModel
from pymongo import DESCENDING, IndexModel

from core.db import Database, as_utc, register_indexes, utcnow

register_indexes(
    "audit_log",
    IndexModel([("ts", DESCENDING)]),
    IndexModel([("actor.id", 1), ("ts", DESCENDING)]),
    IndexModel([("target", 1), ("ts", DESCENDING)]),
)


class AuditEntry(BaseModel):
    id: str
    ts: dt.datetime
    actor: dict[str, Any]
    action: str
    target: str | None
    status: int
    ip: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.collection = db["audit_log"]

    async def record(
        self,
        *,
        actor: dict[str, Any],
        action: str,
        status: int,
        target: str | None = None,
        ip: str | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        await self.collection.insert_one(
            {
                "_id": ObjectId(),
                "ts": utcnow(),
                "actor": actor,
                "action": action,
                "target": target,
                "status": status,
                "ip": ip,
                "request_id": request_id,
                "details": details or {},
            }
        )

    async def recent(
        self, *, limit: int = 100, actor_id: str | None = None, target: str | None = None
    ) -> list[AuditEntry]:
        query: dict[str, Any] = {}
        if actor_id:
            query["actor.id"] = actor_id
        if target:
            query["target"] = target
        cursor = self.collection.find(query, sort=[("ts", -1), ("_id", -1)], limit=limit)
        return [
            AuditEntry(
                id=str(doc["_id"]),
                ts=as_utc(doc["ts"]),
                actor=doc["actor"],
                action=doc["action"],
                target=doc.get("target"),
                status=doc["status"],
                ip=doc.get("ip"),
                request_id=doc.get("request_id"),
                details=doc.get("details", {}),
            )
            async for doc in cursor
        ]
