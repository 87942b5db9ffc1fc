"""Customer identity: create-or-find in one atomic step, explicit merge and un-merge.

Each customer document carries ``identity_keys`` (``"phone:+8613800138000"``) under a unique index, so the
database itself guarantees one customer per identity: two first contacts from the same number race to insert,
and the loser's duplicate-key error sends it back to find the winner.
"""

from __future__ import annotations

import re
import time
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.bus import EventBus
from core.db import Database, as_utc, register_indexes, utcnow
from core.errors import Conflict, Invalid, NotFound
from core.pagination import before, encode_cursor
from omnichannel.identity import normalize
from omnichannel.models import Customer, CustomerPage, CustomerPatch, Identity, Merge

register_indexes(
    "customers",
    IndexModel(
        [("identity_keys", ASCENDING)],
        unique=True,
        # Sparse, not partial: merged-away customers have no identity_keys field at all, and SecantusDB's
        # planner uses sparse indexes but never partial ones (a partial index made every lookup a scan).
        sparse=True,
        name="one_customer_per_identity",
    ),
    IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)]),
    IndexModel([("merged_into", ASCENDING)]),
)
register_indexes("customer_merges", IndexModel([("source_id", ASCENDING), ("at", DESCENDING)]))

_RESOLVE_ATTEMPTS = 5
LIVE_ID_TTL_SECONDS = 30.0  # a call writes its timeline over ~10 s or more: one lookup, not one per 5 s
LIVE_ID_CACHE_LIMIT = 50_000

_PHONE_LIKE = re.compile(r"^[\d\s+\-().]+$")


def customer_from_doc(doc: dict[str, Any]) -> Customer:
    return Customer(
        id=str(doc["_id"]),
        name=doc.get("name") or "",
        language=doc.get("language"),
        identities=[Identity(**identity) for identity in doc.get("identities", [])],
        tags=doc.get("tags", []),
        vip=bool(doc.get("vip", False)),
        profile=doc.get("profile", {}),
        created_at=as_utc(doc["created_at"]),
        updated_at=as_utc(doc["updated_at"]),
        merged_into=str(doc["merged_into"]) if doc.get("merged_into") else None,
        merged_from=[str(source) for source in doc.get("merged_from", [])],
    )


def object_id(value: str, what: str = "customer") -> ObjectId:
    if not ObjectId.is_valid(value):
        raise NotFound(f"no {what} {value}", code=f"{what}_not_found")
    return ObjectId(value)


class CustomerService:
    def __init__(self, db: Database, bus: EventBus | None = None, *, default_region: str = "CN") -> None:
        self.db = db
        self.customers = db["customers"]
        self.merges = db["customer_merges"]
        self.bus = bus
        self.default_region = default_region
        # customer id -> (id of the customer holding it now, until when that answer is trusted): see live_id
        self._live_ids: dict[str, tuple[str, float]] = {}

    def normalize(self, identities: list[Identity]) -> list[Identity]:
        unique: dict[str, Identity] = {}
        for identity in identities:
            canonical = normalize(identity, self.default_region)
            unique.setdefault(canonical.key, canonical)
        return list(unique.values())

    async def resolve(
        self, identities: list[Identity], *, name: str | None = None, language: str | None = None
    ) -> tuple[Customer, bool]:
        """The customer owning any of ``identities``, created if none does; ``(customer, created)``.

        New identities are added to the found customer unless another customer already owns them — that is
        a merge decision for a person, never made silently.
        """
        found = self.normalize(identities)
        if not found:
            raise Invalid("at least one identity is required", code="identity_required")
        keys = [identity.key for identity in found]
        for _ in range(_RESOLVE_ATTEMPTS):
            existing = await self.customers.find_one({"identity_keys": {"$in": keys}})
            if existing is not None:
                self._trust_live(str(existing["_id"]), str(existing["_id"]))  # it holds identities: live
                return customer_from_doc(await self._attach_missing(existing, found)), False
            now = utcnow()
            doc = {
                "_id": ObjectId(),
                "name": name or "",
                "language": language,
                "identities": [identity.model_dump(mode="json") for identity in found],
                "identity_keys": keys,
                "tags": [],
                "vip": False,
                "profile": {},
                "created_at": now,
                "updated_at": now,
            }
            try:
                await self.customers.insert_one(doc)
            except DuplicateKeyError:
                continue  # a concurrent first contact won the insert; find theirs
            customer = customer_from_doc(doc)
            self._trust_live(customer.id, customer.id)
            await self._announce("customer.created", customer)
            return customer, True
        raise Conflict("identity is being changed concurrently; retry", code="identity_contention")

    async def _attach_missing(self, doc: dict[str, Any], identities: list[Identity]) -> dict[str, Any]:
        for identity in identities:
            if identity.key in doc.get("identity_keys", []):
                continue
            try:
                updated = await self.customers.find_one_and_update(
                    {"_id": doc["_id"], "identity_keys": {"$ne": identity.key}},
                    {
                        "$push": {"identities": identity.model_dump(mode="json")},
                        "$addToSet": {"identity_keys": identity.key},
                        "$set": {"updated_at": utcnow()},
                    },
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue  # owned by another customer: left for an explicit merge
            if updated is not None:
                doc = updated
        return doc

    async def get(self, customer_id: str) -> Customer:
        doc = await self.customers.find_one({"_id": object_id(customer_id)})
        if doc is None:
            raise NotFound(f"no customer {customer_id}", code="customer_not_found")
        return customer_from_doc(doc)

    async def live(self, customer_id: str) -> Customer:
        """The customer, following merges to the one that now holds the identities."""
        customer = await self.get(customer_id)
        for _ in range(10):
            if customer.merged_into is None:
                return customer
            customer = await self.get(customer.merged_into)
        raise Conflict(f"merge chain of {customer_id} is too long", code="merge_chain")

    async def live_id(self, customer_id: str) -> str:
        """``live(customer_id).id``, trusted for ``LIVE_ID_TTL_SECONDS``: one lookup per customer every half
        minute for writers that only need where to write (timeline events, conversations), not one per
        write. Customers are never deleted and merges are rare; a write in the seconds after a merge (in
        another process) that still lands on the merged-away customer is read back on the merged timeline
        all the same (``timeline_ids``)."""
        cached = self._live_ids.get(customer_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        live = (await self.live(customer_id)).id
        self._trust_live(customer_id, live)
        return live

    def _trust_live(self, customer_id: str, live_id: str) -> None:
        if len(self._live_ids) > LIVE_ID_CACHE_LIMIT:
            self._live_ids.clear()
        self._live_ids[customer_id] = (live_id, time.monotonic() + LIVE_ID_TTL_SECONDS)

    async def find_by_identity(self, identity: Identity) -> Customer | None:
        canonical = normalize(identity, self.default_region)
        doc = await self.customers.find_one({"identity_keys": canonical.key})
        return customer_from_doc(doc) if doc else None

    async def timeline_ids(self, customer_id: str) -> list[ObjectId]:
        """This customer and every customer merged into it (transitively): one timeline."""
        ids = [object_id(customer_id)]
        frontier = list(ids)
        while frontier:
            sources = [
                doc["_id"]
                async for doc in self.customers.find({"merged_into": {"$in": frontier}}, {"_id": 1})
            ]
            frontier = [source for source in sources if source not in ids]
            ids.extend(frontier)
        return ids

    async def search(
        self, *, q: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> CustomerPage:
        query: dict[str, Any] = {"merged_into": None, **before(cursor, "created_at")}
        if q:
            text = q.strip()
            pattern = re.escape(text)
            alternatives: list[dict[str, Any]] = [
                {"name": {"$regex": pattern, "$options": "i"}},
                {"identities.value": {"$regex": pattern, "$options": "i"}},
            ]
            digits = re.sub(r"\D", "", text)
            if len(digits) >= 4 and _PHONE_LIKE.match(text):
                # "138 0013 8000" finds +8613800138000: compare digits only
                alternatives.append(
                    {"identities": {"$elemMatch": {"kind": "phone", "value": {"$regex": digits}}}}
                )
            if ObjectId.is_valid(text):
                alternatives.append({"_id": ObjectId(text)})
            query = {"$and": [query, {"$or": alternatives}]}
        docs = [
            doc
            async for doc in self.customers.find(
                query, sort=[("created_at", -1), ("_id", -1)], limit=limit + 1
            )
        ]
        next_cursor = (
            encode_cursor(docs[limit - 1]["created_at"], docs[limit - 1]["_id"])
            if len(docs) > limit
            else None
        )
        return CustomerPage(
            customers=[customer_from_doc(doc) for doc in docs[:limit]], next_cursor=next_cursor
        )

    async def update(self, customer_id: str, patch: CustomerPatch) -> Customer:
        changes = patch.model_dump(exclude_none=True)
        changes["updated_at"] = utcnow()
        doc = await self.customers.find_one_and_update(
            {"_id": object_id(customer_id)}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise NotFound(f"no customer {customer_id}", code="customer_not_found")
        return customer_from_doc(doc)

    async def add_identity(self, customer_id: str, identity: Identity) -> Customer:
        canonical = normalize(identity, self.default_region)
        owner = await self.customers.find_one({"identity_keys": canonical.key}, {"_id": 1})
        if owner is not None and str(owner["_id"]) != customer_id:
            raise Conflict(
                f"{canonical.key} belongs to customer {owner['_id']}; merge the two customers instead",
                code="identity_in_use",
                owner_id=str(owner["_id"]),
            )
        await self.get(customer_id)
        try:
            doc = await self._attach_missing(
                await self.customers.find_one({"_id": object_id(customer_id)}), [canonical]
            )
        except DuplicateKeyError:
            raise Conflict(
                f"{canonical.key} was just taken by another customer", code="identity_in_use"
            ) from None
        return customer_from_doc(doc)

    async def merge(self, target_id: str, source_id: str, actor: dict[str, Any]) -> Merge:
        """Fold ``source`` into ``target``: identities move, timelines read as one; ``unmerge`` undoes it."""
        if target_id == source_id:
            raise Invalid("a customer cannot be merged into itself", code="merge_self")
        target = await self.get(target_id)
        source = await self.get(source_id)
        for customer in (target, source):
            if customer.merged_into:
                raise Conflict(
                    f"customer {customer.id} is already merged into {customer.merged_into}",
                    code="already_merged",
                )
        merge_id = ObjectId()
        now = utcnow()
        moved = [identity.model_dump(mode="json") for identity in source.identities]
        moved_keys = [identity.key for identity in source.identities]

        async def apply(session: Any) -> None:
            result = await self.customers.update_one(
                {"_id": object_id(source_id), "merged_into": None},
                {
                    "$set": {"merged_into": object_id(target_id), "identities": [], "updated_at": now},
                    "$unset": {"identity_keys": ""},
                },
                session=session,
            )
            if result.modified_count != 1:
                raise Conflict(
                    f"customer {source_id} changed during the merge; retry", code="merge_contention"
                )
            await self.customers.update_one(
                {"_id": object_id(target_id)},
                {
                    "$push": {"identities": {"$each": moved}, "merged_from": object_id(source_id)},
                    "$addToSet": {"identity_keys": {"$each": moved_keys}},
                    "$set": {"updated_at": now},
                },
                session=session,
            )
            await self.merges.insert_one(
                {
                    "_id": merge_id,
                    "target_id": object_id(target_id),
                    "source_id": object_id(source_id),
                    "moved_identities": moved,
                    "at": now,
                    "actor": actor,
                    "undone_at": None,
                },
                session=session,
            )

        await self._transaction(apply)
        self._live_ids.clear()  # this process writes to the merged customer at once
        merge = await self.get_merge(str(merge_id))
        await self._publish("customer.merged", merge.model_dump(mode="json"), str(merge_id))
        return merge

    async def unmerge(self, merge_id: str, actor: dict[str, Any]) -> Merge:
        """Undo a merge: the source gets its identities back and reads its own timeline again."""
        merge = await self.get_merge(merge_id)
        if merge.undone_at is not None:
            raise Conflict(f"merge {merge_id} was already undone", code="merge_already_undone")
        now = utcnow()
        moved = [identity.model_dump(mode="json") for identity in merge.moved_identities]
        moved_keys = [identity.key for identity in merge.moved_identities]

        async def apply(session: Any) -> None:
            result = await self.merges.update_one(
                {"_id": object_id(merge_id, "merge"), "undone_at": None},
                {"$set": {"undone_at": now, "undone_by": actor}},
                session=session,
            )
            if result.modified_count != 1:
                raise Conflict(f"merge {merge_id} was already undone", code="merge_already_undone")
            await self.customers.update_one(
                {"_id": object_id(merge.target_id)},
                {
                    "$pull": {
                        "identity_keys": {"$in": moved_keys},
                        "identities": {"$in": moved},
                        "merged_from": object_id(merge.source_id),
                    },
                    "$set": {"updated_at": now},
                },
                session=session,
            )
            await self.customers.update_one(
                {"_id": object_id(merge.source_id)},
                {
                    "$set": {
                        "merged_into": None,
                        "identities": moved,
                        "identity_keys": moved_keys,
                        "updated_at": now,
                    }
                },
                session=session,
            )

        await self._transaction(apply)
        self._live_ids.clear()
        undone = await self.get_merge(merge_id)
        await self._publish("customer.unmerged", undone.model_dump(mode="json"), f"{merge_id}:undo")
        return undone

    async def get_merge(self, merge_id: str) -> Merge:
        doc = await self.merges.find_one({"_id": object_id(merge_id, "merge")})
        if doc is None:
            raise NotFound(f"no merge {merge_id}", code="merge_not_found")
        return Merge(
            id=str(doc["_id"]),
            target_id=str(doc["target_id"]),
            source_id=str(doc["source_id"]),
            moved_identities=[Identity(**identity) for identity in doc["moved_identities"]],
            at=as_utc(doc["at"]),
            actor=doc["actor"],
            undone_at=as_utc(doc["undone_at"]) if doc.get("undone_at") else None,
        )

    async def merges_of(self, customer_id: str) -> list[Merge]:
        oid = object_id(customer_id)
        cursor = self.merges.find({"$or": [{"target_id": oid}, {"source_id": oid}]}, sort=[("at", -1)])
        return [await self.get_merge(str(doc["_id"])) async for doc in cursor]

    async def _transaction(self, apply: Any) -> None:
        async with self.db.client.start_session() as session:
            await session.with_transaction(apply)

    async def _announce(self, topic: str, customer: Customer) -> None:
        await self._publish(topic, customer.model_dump(mode="json"), customer.id)

    async def _publish(self, topic: str, payload: dict[str, Any], event_id: str) -> None:
        if self.bus is not None:
            await self.bus.publish(topic, {"id": f"{topic}:{event_id}", "ts": utcnow(), **payload})
