"""The ``flows`` collection: every uploaded version of every flow, one of them active per flow.

A document: ``{name, version, yaml, author, created_at, active, activated_at, activated_by,
previous_active, checksum}``; ``(name, version)`` is unique. Activation marks the new version first and
then clears older activations, so a reader never finds no active version; when two activations race, the
later ``activated_at`` wins and readers already prefer it.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.db import Database, as_utc, register_indexes, utcnow
from core.errors import Conflict, NotFound
from ivr_flows.models import FlowSummary, FlowVersion, HoursOverride

register_indexes(
    "flows",
    IndexModel([("name", ASCENDING), ("version", DESCENDING)], unique=True),
    IndexModel([("active", ASCENDING), ("name", ASCENDING), ("activated_at", DESCENDING)]),
)

_ADD_ATTEMPTS = 5


def _version_from_doc(doc: dict[str, Any]) -> FlowVersion:
    return FlowVersion(
        name=doc["name"],
        version=int(doc["version"]),
        yaml=doc["yaml"],
        author=doc["author"],
        created_at=as_utc(doc["created_at"]),
        active=bool(doc.get("active")),
        activated_at=as_utc(doc["activated_at"]) if doc.get("activated_at") else None,
        activated_by=doc.get("activated_by"),
        previous_active=doc.get("previous_active"),
        checksum=doc["checksum"],
    )


def _override_from_doc(doc: dict[str, Any]) -> HoursOverride:
    return HoursOverride(
        flow=doc["_id"],
        state=doc["state"],
        until=as_utc(doc["until"]),
        reason=doc["reason"],
        set_by=doc["set_by"],
        set_at=as_utc(doc["set_at"]),
    )


class FlowStore:
    def __init__(self, db: Database) -> None:
        self.flows = db["flows"]
        self.overrides = db["flow_hours_overrides"]  # one document a flow, _id = the flow's name

    async def add(
        self, name: str, yaml: str, author: str, checksum: str, *, version: int | None = None
    ) -> FlowVersion:
        """Store ``yaml`` as the next version of ``name`` (or exactly ``version``: ``Conflict`` if taken)."""
        for _ in range(_ADD_ATTEMPTS):
            number = version if version is not None else await self._latest(name) + 1
            doc = {
                "name": name,
                "version": number,
                "yaml": yaml,
                "author": author,
                "created_at": utcnow(),
                "active": False,
                "activated_at": None,
                "activated_by": None,
                "previous_active": None,
                "checksum": checksum,
            }
            try:
                await self.flows.insert_one(doc)
            except DuplicateKeyError:
                if version is not None:
                    break
                continue  # another upload took this number at the same moment
            return _version_from_doc(doc)
        raise Conflict(f"could not store a new version of {name!r}; retry", code="flow_version_taken")

    async def get(self, name: str, version: int) -> FlowVersion:
        doc = await self.flows.find_one({"name": name, "version": version})
        if doc is None:
            raise NotFound(f"flow {name!r} has no version {version}", code="flow_version_not_found")
        return _version_from_doc(doc)

    async def versions(self, name: str) -> list[FlowVersion]:
        """Every version of ``name``, newest first."""
        return [
            _version_from_doc(doc) async for doc in self.flows.find({"name": name}, sort=[("version", -1)])
        ]

    async def active(self, name: str) -> FlowVersion | None:
        doc = await self.flows.find_one({"name": name, "active": True}, sort=[("activated_at", -1)])
        return _version_from_doc(doc) if doc else None

    async def active_versions(self) -> dict[str, int]:
        """``{name: active version}`` for every flow that has one (cheap: what polling compares)."""
        found: dict[str, int] = {}
        cursor = self.flows.find(
            {"active": True}, projection={"name": 1, "version": 1}, sort=[("activated_at", 1)]
        )
        async for doc in cursor:
            found[doc["name"]] = int(doc["version"])  # ascending: the latest activation wins
        return found

    async def activate(self, name: str, version: int, by: str) -> FlowVersion:
        current = await self.active(name)
        if current is not None and current.version == version:
            return current
        now = utcnow()
        doc = await self.flows.find_one_and_update(
            {"name": name, "version": version},
            {
                "$set": {
                    "active": True,
                    "activated_at": now,
                    "activated_by": by,
                    "previous_active": current.version if current else None,
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise NotFound(f"flow {name!r} has no version {version}", code="flow_version_not_found")
        await self.flows.update_many(
            {"name": name, "active": True, "version": {"$ne": version}, "activated_at": {"$lte": now}},
            {"$set": {"active": False}},
        )
        return _version_from_doc(doc)

    async def summaries(self) -> list[FlowSummary]:
        rows: dict[str, dict[str, Any]] = {}
        cursor = self.flows.find({}, projection={"name": 1, "version": 1, "active": 1, "activated_at": 1})
        async for doc in cursor:
            row = rows.setdefault(doc["name"], {"latest": 0, "count": 0, "active": None, "at": None})
            row["latest"] = max(row["latest"], int(doc["version"]))
            row["count"] += 1
            if doc.get("active") and (row["at"] is None or as_utc(doc["activated_at"]) > row["at"]):
                row["active"], row["at"] = int(doc["version"]), as_utc(doc["activated_at"])
        return [
            FlowSummary(
                name=name, active_version=row["active"], latest_version=row["latest"], versions=row["count"]
            )
            for name, row in sorted(rows.items())
        ]

    async def set_hours_override(self, override: HoursOverride) -> HoursOverride:
        doc = override.model_dump(exclude={"flow"})
        await self.overrides.replace_one({"_id": override.flow}, doc, upsert=True)
        return override

    async def clear_hours_override(self, name: str) -> bool:
        """Remove ``name``'s override; False when it had none."""
        return bool((await self.overrides.delete_one({"_id": name})).deleted_count)

    async def hours_override(self, name: str) -> HoursOverride | None:
        """``name``'s stored override, expired or not (readers ask ``in_force``)."""
        doc = await self.overrides.find_one({"_id": name})
        return _override_from_doc(doc) if doc else None

    async def hours_overrides(self) -> dict[str, HoursOverride]:
        """Every stored override by flow name, expired ones included (readers ask ``in_force``)."""
        return {doc["_id"]: _override_from_doc(doc) async for doc in self.overrides.find({})}

    async def _latest(self, name: str) -> int:
        doc = await self.flows.find_one({"name": name}, projection={"version": 1}, sort=[("version", -1)])
        return int(doc["version"]) if doc else 0
