"""MongoDB access for tickets only: tickets, their history, staff profiles, SLA timers, collaboration
requests, admin-managed templates and intent rules, and the round-robin cursors of dispatch.

Ids are strings on the way out; ticket documents keep the customer and user ids as strings too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from core.db import Database, register_indexes, update_returning
from core.errors import NotFound
from core.pagination import before, encode_cursor

Doc = dict[str, Any]

register_indexes(
    "tickets",
    IndexModel([("number", ASCENDING)], unique=True),
    # One active ticket per customer and intent: the database refuses a second one, which makes
    # de-duplication atomic (the loser of a race appends to the winner's ticket). Sparse, not partial:
    # only active tickets have an ``open_key`` (never null), and the embedded server plans queries with
    # sparse indexes but scans the collection past partial ones.
    IndexModel(
        [("open_key", ASCENDING)], unique=True, sparse=True, name="one_active_ticket_per_customer_intent_v2"
    ),
    IndexModel([("customer_id", ASCENDING), ("created_at", DESCENDING)]),
    IndexModel([("assignee_id", ASCENDING), ("status", ASCENDING)]),
    IndexModel([("workflow_assignees", ASCENDING)]),
    IndexModel([("department", ASCENDING), ("status", ASCENDING)]),
    IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("signal_keys", ASCENDING)]),
    IndexModel([("customer_messages.key", ASCENDING)], sparse=True),
    IndexModel([("outbox_since", ASCENDING)], sparse=True),
)
register_indexes(
    "ticket_history", IndexModel([("ticket_id", ASCENDING), ("ts", ASCENDING), ("seq", ASCENDING)])
)
register_indexes(
    "sla_timers",
    IndexModel([("next_check_at", ASCENDING)], sparse=True),
    IndexModel([("effects_pending", ASCENDING)], sparse=True),
    IndexModel([("ticket_id", ASCENDING)]),
)
register_indexes(
    "ticket_staff",
    IndexModel([("username", ASCENDING)], unique=True),
    IndexModel([("departments", ASCENDING)]),
    IndexModel([("lead_of", ASCENDING)]),
    IndexModel([("supervisor_of", ASCENDING)]),
)


async def update_by_id(collection: Any, query: Doc, update: Doc) -> Doc | None:
    """Apply ``update`` to the one document ``query`` (which names its ``_id``) matches; that document after
    it, or None (see ``core.db.update_returning``: the embedded server's findAndModify scans the whole
    collection). Counters keep ``find_one_and_update``: they need the value their own increment made."""
    return await update_returning(collection, query, update)


# Statuses in which a ticket counts towards its assignee's load.
LOAD_STATUSES = ["new", "open", "pending-customer", "pending-internal", "reopened"]


class TicketStore:
    def __init__(self, db: Database) -> None:
        self.tickets = db["tickets"]
        self.counters = db["ticket_counters"]
        self.history = db["ticket_history"]
        self.timers = db["sla_timers"]
        self.staff = db["ticket_staff"]
        self.templates = db["ticket_templates"]
        self.rules = db["ticket_rules"]
        self.cursors = db["dispatch_cursors"]

    # ------------------------------------------------------------------------------------ tickets

    async def get(self, ref: str) -> Doc:
        """A ticket by id or by number (``T-20261125-0001``)."""
        query = {"_id": ObjectId(ref)} if ObjectId.is_valid(ref) else {"number": ref}
        doc = await self.tickets.find_one(query)
        if doc is None:
            raise NotFound(f"no ticket {ref}", code="ticket_not_found")
        return doc  # type: ignore[no-any-return]

    async def find_active(self, open_key: str) -> Doc | None:
        return await self.tickets.find_one({"open_key": open_key})  # type: ignore[no-any-return]

    async def find_by_signal(self, key: str) -> Doc | None:
        return await self.tickets.find_one({"signal_keys": key})  # type: ignore[no-any-return]

    async def find_by_customer_message(self, key: str) -> Doc | None:
        return await self.tickets.find_one({"customer_messages.key": key})  # type: ignore[no-any-return]

    async def awaiting_customer(self, customer_id: str) -> list[Doc]:
        """The customer's tickets a message from them may concern: resolved, or waiting for them."""
        query = {"customer_id": customer_id, "status": {"$in": ["resolved", "pending-customer"]}}
        return [doc async for doc in self.tickets.find(query, limit=50)]

    async def insert(self, doc: Doc) -> None:
        await self.tickets.insert_one(doc)

    async def update(self, query: Doc, update: Doc) -> Doc | None:
        """The ticket ``query`` (by ``_id``) matches, after ``update``; None if none matched."""
        return await update_by_id(self.tickets, query, update)

    async def page(self, query: Doc, limit: int, cursor: str | None) -> tuple[list[Doc], str | None]:
        if cursor:
            query = {"$and": [query, before(cursor, "created_at")]}
        docs = [
            doc
            async for doc in self.tickets.find(query, sort=[("created_at", -1), ("_id", -1)], limit=limit + 1)
        ]
        next_cursor = (
            encode_cursor(docs[limit - 1]["created_at"], docs[limit - 1]["_id"])
            if len(docs) > limit
            else None
        )
        return docs[:limit], next_cursor

    async def with_unflushed_events(self, older_than: dt.datetime, limit: int = 500) -> list[Doc]:
        cursor = self.tickets.find({"outbox_since": {"$lte": older_than}}, limit=limit)
        return [doc async for doc in cursor]

    async def history_of(self, ticket_id: str) -> list[Doc]:
        cursor = self.history.find({"ticket_id": ticket_id}, sort=[("ts", 1), ("seq", 1)])
        return [doc async for doc in cursor]

    async def open_load(self, user_ids: list[str]) -> dict[str, int]:
        """Active tickets per user: the ones they own plus the workflow steps they hold."""
        load = dict.fromkeys(user_ids, 0)
        pipeline: list[Doc] = [
            {"$match": {"assignee_id": {"$in": user_ids}, "status": {"$in": LOAD_STATUSES}}},
            {"$group": {"_id": "$assignee_id", "n": {"$sum": 1}}},
        ]
        async for row in await self.tickets.aggregate(pipeline):
            load[row["_id"]] += int(row["n"])
        steps: list[Doc] = [
            {"$match": {"workflow_assignees": {"$in": user_ids}}},
            {"$unwind": "$workflow_assignees"},
            {"$match": {"workflow_assignees": {"$in": user_ids}}},
            {"$group": {"_id": "$workflow_assignees", "n": {"$sum": 1}}},
        ]
        async for row in await self.tickets.aggregate(steps):
            load[row["_id"]] += int(row["n"])
        return load

    async def rotate(self, group: str) -> int:
        """The next turn of a round-robin group (atomic, shared by every process)."""
        doc = await self.cursors.find_one_and_update(
            {"_id": group}, {"$inc": {"turn": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        return int(doc["turn"]) if doc else 0

    # -------------------------------------------------------------------------------------- staff

    async def staff_member(self, user_id: str) -> Doc | None:
        return await self.staff.find_one({"_id": user_id})  # type: ignore[no-any-return]

    async def put_staff(self, user_id: str, doc: Doc) -> None:
        await self.staff.replace_one({"_id": user_id}, doc, upsert=True)

    async def staff_in(self, department: str) -> list[Doc]:
        cursor = self.staff.find({"departments": department, "active": True}, sort=[("_id", 1)])
        return [doc async for doc in cursor]

    async def leads_of(self, department: str) -> list[Doc]:
        cursor = self.staff.find({"lead_of": department, "active": True}, sort=[("_id", 1)])
        return [doc async for doc in cursor]

    async def supervisors_of(self, department: str) -> list[Doc]:
        query = {"supervisor_of": {"$in": [department, "*"]}, "active": True}
        return [doc async for doc in self.staff.find(query, sort=[("_id", 1)])]

    async def all_staff(self) -> list[Doc]:
        return [doc async for doc in self.staff.find({}, sort=[("username", 1)])]

    # ----------------------------------------------------------------------- templates and rules

    async def template(self, name: str) -> Doc | None:
        return await self.templates.find_one({"_id": name})  # type: ignore[no-any-return]

    async def put_template(self, name: str, definition: Doc, at: dt.datetime, by: str) -> None:
        await self.templates.replace_one(
            {"_id": name}, {"_id": name, "definition": definition, "updated_at": at, "by": by}, upsert=True
        )

    async def stored_templates(self) -> list[Doc]:
        return [doc async for doc in self.templates.find({}, sort=[("_id", 1)])]

    async def rule(self, intent: str) -> Doc | None:
        return await self.rules.find_one({"_id": intent})  # type: ignore[no-any-return]

    async def put_rule(self, intent: str, definition: Doc, at: dt.datetime, by: str) -> None:
        await self.rules.replace_one(
            {"_id": intent},
            {"_id": intent, "definition": definition, "updated_at": at, "by": by},
            upsert=True,
        )

    async def stored_rules(self) -> list[Doc]:
        return [doc async for doc in self.rules.find({}, sort=[("_id", 1)])]
