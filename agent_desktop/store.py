"""MongoDB access for the ACD: ``queues``, ``agents`` (live state), ``agent_state_history`` (reports) and
``queue_contacts`` (contacts waiting or served).

Every state change that two web nodes could race on is one guarded update whose filter is the guard
(``status: waiting``, ``offer: None``…), so exactly one writer wins (``core.db.update_returning``: an
``update_one`` and a read by ``_id``, because the embedded server's findAndModify scans the collection).
Filters are plain field conditions: SecantusDB scans the whole collection for a top-level ``$or``/``$and`` and
uses no partial indexes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from agent_desktop.models import (
    LIVE_CONTACT_STATUSES,
    Agent,
    AgentSkills,
    AgentState,
    Contact,
    ContactKind,
    ContactStatus,
    NewContact,
    Presence,
    QueueConfig,
    QueuePatch,
    StateEntry,
    StatePage,
)
from core.db import Database, as_utc, register_indexes, update_returning, utcnow
from core.errors import Conflict, NotFound
from core.pagination import decode_cursor, encode_cursor

Doc = dict[str, Any]

register_indexes(
    "agents",
    IndexModel([("presence", ASCENDING), ("idle_since", ASCENDING)]),
    IndexModel([("updated_at", ASCENDING)]),
)
register_indexes("agent_state_history", IndexModel([("user_id", ASCENDING), ("ts", ASCENDING)]))
register_indexes(
    "queue_contacts",
    IndexModel([("status", ASCENDING), ("enqueued_at", ASCENDING)]),
    IndexModel([("customer_id", ASCENDING), ("connected_at", DESCENDING)]),
    IndexModel([("external_ref", ASCENDING)], sparse=True),
    IndexModel([("agent_id", ASCENDING), ("status", ASCENDING)]),
    IndexModel([("conversation_id", ASCENDING), ("status", ASCENDING)]),
    IndexModel([("updated_at", ASCENDING)]),
)


def contact_oid(contact_id: str) -> ObjectId:
    try:
        return ObjectId(contact_id)
    except (InvalidId, TypeError):
        raise NotFound(f"no contact {contact_id!r}", code="contact_not_found") from None


def derived_state(doc: Doc) -> AgentState:
    presence = Presence(doc["presence"])
    if presence is Presence.offline:
        return AgentState.offline
    if doc.get("call"):
        return AgentState.on_call
    if doc.get("chats"):
        return AgentState.in_chat
    if presence is Presence.wrap_up:
        return AgentState.wrap_up
    if presence is Presence.break_:
        return AgentState.break_
    return AgentState.available


def _history_mark(doc: Doc) -> Doc:
    """What the state history records of an agent; a change of any of it is a new entry."""
    return {"state": derived_state(doc).value, "presence": doc["presence"], "reason": doc.get("reason")}


def agent_from_doc(doc: Doc) -> Agent:
    return Agent(
        user_id=doc["_id"],
        username=doc["username"],
        display_name=doc.get("display_name") or doc["username"],
        state=derived_state(doc),
        presence=Presence(doc["presence"]),
        reason=doc.get("reason"),
        since=as_utc(doc["since"]),
        idle_since=as_utc(doc["idle_since"]),
        skills=doc.get("skills", {}),
        max_chats=doc.get("max_chats", 3),
        call_blocks_chats=doc.get("call_blocks_chats", True),
        call=doc.get("call"),
        chats=doc.get("chats", []),
        offer=doc.get("offer"),
        wrap_up_until=as_utc(doc["wrap_up_until"]) if doc.get("wrap_up_until") else None,
    )


def contact_from_doc(doc: Doc) -> Contact:
    def when(key: str) -> dt.datetime | None:
        value = doc.get(key)
        return as_utc(value) if value else None

    return Contact(
        id=str(doc["_id"]),
        queue=doc["queue"],
        kind=doc["kind"],
        status=doc["status"],
        customer_id=doc["customer_id"],
        conversation_id=doc.get("conversation_id"),
        external_ref=doc.get("external_ref"),
        priority=doc["priority"],
        skills=doc.get("skills", {}),
        preferred_skills=doc.get("preferred_skills", {}),
        context=doc.get("context", {}),
        enqueued_at=as_utc(doc["enqueued_at"]),
        queue_entered_at=as_utc(doc.get("queue_entered_at") or doc["enqueued_at"]),
        offered_to=doc.get("offered_to", []),
        offer_expires_at=when("offer_expires_at"),
        declined_by=doc.get("declined_by", []),
        declined_at=when("declined_at"),
        agent_id=doc.get("agent_id"),
        connected_at=when("connected_at"),
        ended_at=when("ended_at"),
        end_cause=doc.get("end_cause"),
        overflow=doc.get("overflow"),
        overflow_notice=doc.get("overflow_notice"),
        callback_number=doc.get("callback_number"),
        callback_by=doc.get("callback_by"),
        wrap_up_codes=doc.get("wrap_up_codes", []),
    )


class AcdStore:
    def __init__(self, db: Database) -> None:
        self.queues = db["queues"]
        self.agents = db["agents"]
        self.history = db["agent_state_history"]
        self.contacts = db["queue_contacts"]

    # ----------------------------------------------------------------------------------------- queues

    async def create_queue(self, queue: QueueConfig) -> QueueConfig:
        doc = queue.model_dump(mode="json")
        doc["_id"] = doc.pop("id")
        try:
            await self.queues.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"queue {queue.id!r} exists", code="queue_exists") from None
        return queue

    async def queue(self, queue_id: str) -> QueueConfig:
        doc = await self.queues.find_one({"_id": queue_id})
        if doc is None:
            raise NotFound(f"no queue {queue_id!r}", code="queue_not_found")
        return _queue(doc)

    async def all_queues(self) -> list[QueueConfig]:
        return [_queue(doc) async for doc in self.queues.find({}, sort=[("_id", 1)])]

    async def update_queue(self, queue_id: str, patch: QueuePatch) -> QueueConfig:
        changes = patch.model_dump(mode="json", exclude_unset=True)
        current = (await self.queue(queue_id)).model_dump(mode="json")
        updated = QueueConfig.model_validate({**current, **changes})
        if changes:
            await self.queues.update_one({"_id": queue_id}, {"$set": changes})
        return updated

    async def delete_queue(self, queue_id: str) -> None:
        waiting = await self.contacts.find_one({"queue": queue_id, "status": ContactStatus.waiting.value})
        if waiting is not None:
            raise Conflict(f"queue {queue_id!r} still has contacts waiting", code="queue_not_empty")
        result = await self.queues.delete_one({"_id": queue_id})
        if result.deleted_count == 0:
            raise NotFound(f"no queue {queue_id!r}", code="queue_not_found")

    # ----------------------------------------------------------------------------------------- agents

    async def ensure_agent(self, user_id: str, username: str, display_name: str) -> Agent:
        now = utcnow()
        doc = await self.agents.find_one_and_update(
            {"_id": user_id},
            {
                "$set": {"username": username, "display_name": display_name, "updated_at": now},
                "$setOnInsert": {
                    "presence": Presence.offline.value,
                    "state": AgentState.offline.value,
                    "logged": {
                        "state": AgentState.offline.value,
                        "presence": Presence.offline.value,
                        "reason": None,
                    },
                    "since": now,
                    "idle_since": now,
                    "skills": {},
                    "max_chats": 3,
                    "call_blocks_chats": True,
                    "call": None,
                    "chats": [],
                    "chat_slots": 3,
                    "offer": None,
                },
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return agent_from_doc(doc)

    async def agent_doc(self, user_id: str) -> Doc:
        doc = await self.agents.find_one({"_id": user_id})
        if doc is None:
            raise NotFound(f"no agent {user_id!r}", code="agent_not_found")
        return dict(doc)

    async def agent(self, user_id: str) -> Agent:
        return agent_from_doc(await self.agent_doc(user_id))

    async def all_agents(self) -> list[Agent]:
        return [agent_from_doc(doc) async for doc in self.agents.find({}, sort=[("username", 1)])]

    async def agents_changed_since(self, since: dt.datetime) -> list[Agent]:
        """Agents written since ``since`` (every write stamps ``updated_at``)."""
        return [agent_from_doc(doc) async for doc in self.agents.find({"updated_at": {"$gte": since}})]

    async def set_skills(self, user_id: str, skills: AgentSkills) -> Agent:
        doc = await self.agent_doc(user_id)
        slots = max(skills.max_chats - len(doc.get("chats", [])), 0)
        updated = await update_returning(
            self.agents,
            {"_id": user_id},
            {
                "$set": {
                    "skills": skills.skills,
                    "max_chats": skills.max_chats,
                    "call_blocks_chats": skills.call_blocks_chats,
                    "chat_slots": slots,
                    "updated_at": utcnow(),
                }
            },
        )
        if updated is None:
            raise NotFound(f"no agent {user_id!r}", code="agent_not_found")
        return agent_from_doc(updated)

    async def update_agent(self, guard: Doc, update: Doc) -> Doc | None:
        """Apply ``update`` if ``guard`` still holds; the document after, or None when someone else won."""
        stamped = {**update, "$set": {**update.get("$set", {}), "updated_at": utcnow()}}
        doc = await update_returning(self.agents, guard, stamped)
        if doc is None:
            return None
        logged = _history_mark(doc)
        if doc.get("logged") != logged:
            # A report needs every change of what the agent is doing and why: the derived state, the
            # presence under it (wrap-up while in a chat) and the break reason (lunch, then a meeting).
            doc = await update_returning(
                self.agents, {"_id": doc["_id"]}, {"$set": {"state": logged["state"], "logged": logged}}
            )
            assert doc is not None  # agents are never deleted
            await self.history.insert_one({"user_id": doc["_id"], "ts": utcnow(), **logged})
        return dict(doc)

    async def candidates(self, guard: Doc, sort: list[tuple[str, int]]) -> list[Doc]:
        """The agents matching ``guard`` (``_id`` and ``skills``), in ``sort`` order."""
        return [dict(doc) async for doc in self.agents.find(guard, {"_id": 1, "skills": 1}, sort=sort)]

    async def any_agent(self, query: Doc) -> bool:
        return await self.agents.find_one(query, {"_id": 1}) is not None

    async def agents_where(self, query: Doc) -> list[Doc]:
        return [dict(doc) async for doc in self.agents.find(query)]

    async def state_history(
        self,
        user_id: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> StatePage:
        """An agent's state changes in ``[since, until)``, newest first; ``next_cursor`` continues."""
        query: Doc = {"user_id": user_id}
        window: Doc = {}
        if since is not None:
            window["$gte"] = since
        if until is not None:
            window["$lt"] = until
        if window:
            query["ts"] = window
        # Plain field conditions, no $or: SecantusDB scans the whole collection for a top-level $or.
        if cursor:
            ts, oid = decode_cursor(cursor)
            docs = await self._history({**query, "ts": ts, "_id": {"$lt": oid}}, limit + 1)
            if len(docs) <= limit:
                docs += await self._history({**query, "ts": {**window, "$lt": ts}}, limit + 1 - len(docs))
        else:
            docs = await self._history(query, limit + 1)
        next_cursor = (
            encode_cursor(docs[limit - 1]["ts"], docs[limit - 1]["_id"]) if len(docs) > limit else None
        )
        entries = [
            StateEntry(
                ts=as_utc(doc["ts"]),
                state=doc["state"],
                presence=doc["presence"],
                reason=doc.get("reason"),
            )
            for doc in docs[:limit]
        ]
        return StatePage(user_id=user_id, states=entries, next_cursor=next_cursor)

    async def _history(self, query: Doc, limit: int) -> list[Doc]:
        return [doc async for doc in self.history.find(query, sort=[("ts", -1), ("_id", -1)], limit=limit)]

    # --------------------------------------------------------------------------------------- contacts

    async def add_contact(self, new: NewContact, skills: dict[str, int]) -> Contact:
        """Queue ``new``; a retry (the same reference still in the same queue) gets the contact it made. A
        call queued again after it left a queue (withdrawn to another queue, back from an agent) is new."""
        if new.external_ref is not None:
            existing = await self.contacts.find_one(
                {
                    "external_ref": new.external_ref,
                    "queue": new.queue,
                    "status": {"$in": [status.value for status in LIVE_CONTACT_STATUSES]},
                }
            )
            if existing is not None:
                return contact_from_doc(existing)
        now = utcnow()
        doc: Doc = {
            **new.model_dump(mode="json"),
            "skills": skills,
            "status": ContactStatus.waiting.value,
            "enqueued_at": now,
            "queue_entered_at": now,
            "offered_to": [],
            "declined_by": [],
            "updated_at": now,
        }
        result = await self.contacts.insert_one(doc)
        doc["_id"] = result.inserted_id
        return contact_from_doc(doc)

    async def contact(self, contact_id: str) -> Contact:
        doc = await self.contacts.find_one({"_id": contact_oid(contact_id)})
        if doc is None:
            raise NotFound(f"no contact {contact_id!r}", code="contact_not_found")
        return contact_from_doc(doc)

    async def contact_by_ref(self, external_ref: str) -> Contact | None:
        """The latest contact of a call or chat (it may have been queued more than once)."""
        doc = await self.contacts.find_one({"external_ref": external_ref}, sort=[("enqueued_at", -1)])
        return contact_from_doc(doc) if doc else None

    async def connected_call(self, call_id: str) -> Contact | None:
        """The call contact an agent has connected for the call ``call_id``, if any."""
        doc = await self.contacts.find_one(
            {"external_ref": call_id, "kind": ContactKind.call.value, "status": ContactStatus.connected.value}
        )
        return contact_from_doc(doc) if doc else None

    async def update_contact(self, guard: Doc, update: Doc) -> Contact | None:
        """Apply ``update`` if ``guard`` still holds, stamping ``updated_at`` (the wallboard follows it)."""
        stamped = {**update, "$set": {**update.get("$set", {}), "updated_at": utcnow()}}
        doc = await update_returning(self.contacts, guard, stamped)
        return contact_from_doc(doc) if doc else None

    async def contacts_changed_since(self, since: dt.datetime, projection: Doc) -> list[Doc]:
        return [dict(doc) async for doc in self.contacts.find({"updated_at": {"$gte": since}}, projection)]

    async def contacts_with_status(self, *statuses: ContactStatus) -> list[Contact]:
        query: Doc = {"status": {"$in": [status.value for status in statuses]}}
        return [contact_from_doc(doc) async for doc in self.contacts.find(query)]

    async def pending_callbacks(self, queues: list[str] | None, limit: int = 200) -> list[Contact]:
        """Contacts overflowed to a callback nobody took yet (of ``queues``; None: all), oldest first."""
        query: Doc = {"status": ContactStatus.overflowed.value, "overflow": "callback", "callback_by": None}
        if queues is not None:
            query["queue"] = {"$in": queues}
        cursor = self.contacts.find(query, sort=[("enqueued_at", 1)], limit=limit)
        return [contact_from_doc(doc) async for doc in cursor]

    async def last_served_by(self, customer_id: str, since: dt.datetime) -> str | None:
        async for doc in self.contacts.find(
            {"customer_id": customer_id, "connected_at": {"$gte": since}},
            sort=[("connected_at", -1)],
            limit=1,
        ):
            return str(doc["agent_id"]) if doc.get("agent_id") else None
        return None

    async def recent_handle_seconds(self, queue_id: str, limit: int = 50) -> list[float]:
        durations: list[float] = []
        async for doc in self.contacts.find(
            {"queue": queue_id, "status": ContactStatus.ended.value}, sort=[("ended_at", -1)], limit=limit
        ):
            if doc.get("connected_at") and doc.get("ended_at"):
                durations.append((as_utc(doc["ended_at"]) - as_utc(doc["connected_at"])).total_seconds())
        return durations


def _queue(doc: Doc) -> QueueConfig:
    data = {key: value for key, value in doc.items() if key != "_id"}
    return QueueConfig.model_validate({**data, "id": doc["_id"]})
