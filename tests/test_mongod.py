"""The embedded MongoDB launcher's planning rule (``core.mongod.point_lookup_guards``): a guard naming ``_id``
and other fields is served by an ``_id`` lookup — and still answers exactly what MongoDB would, because the
other fields are checked on the document. Run over the wire against the real embedded server."""

from __future__ import annotations

from bson import ObjectId
from pymongo import ASCENDING, IndexModel

from core.db import Database, update_returning
from core.mongod import point_lookup_guards


def test_the_rule_applies_to_the_pinned_server() -> None:
    # When SecantusDB is upgraded this fails: re-read Storage._try_index_id_keys and its callers (every one
    # must apply matches() to the candidates) before moving PATCHED_SECANTUS.
    assert point_lookup_guards()


async def test_guards_with_an_id_answer_like_mongodb(db: Database) -> None:
    contacts = db["guard_contacts"]
    await contacts.create_indexes([IndexModel([("status", ASCENDING), ("at", ASCENDING)])])
    ids = [ObjectId() for _ in range(6)]
    await contacts.insert_many(
        [
            {"_id": oid, "status": "ended" if n < 4 else "waiting", "at": n, "tags": ["a"]}
            for n, oid in enumerate(ids)
        ]
    )
    waiting = ids[4]

    # the guard holds: exactly that document changes
    claimed = await update_returning(
        contacts, {"_id": waiting, "status": "waiting"}, {"$set": {"status": "routing"}}
    )
    assert claimed is not None and claimed["status"] == "routing"
    # the guard no longer holds (another node won): nothing changes, even though the _id exists
    assert await update_returning(contacts, {"_id": waiting, "status": "waiting"}, {"$set": {"x": 1}}) is None
    assert (await contacts.find_one({"_id": waiting}))["status"] == "routing"
    assert "x" not in (await contacts.find_one({"_id": waiting}))
    # operators and array fields in the rest of the guard are still applied
    result = await contacts.update_one({"_id": ids[0], "at": {"$gt": 0}}, {"$set": {"y": 1}})
    assert result.matched_count == 0
    result = await contacts.update_one({"_id": ids[1], "at": {"$gt": 0}, "tags": "a"}, {"$set": {"y": 1}})
    assert result.matched_count == 1
    # an empty $in matches nothing; a $in of several ids with a field keeps only the matching ones
    assert (
        await contacts.update_many({"_id": {"$in": []}, "status": "ended"}, {"$set": {"z": 1}})
    ).matched_count == 0
    changed = await contacts.update_many({"_id": {"$in": ids[2:6]}, "status": "ended"}, {"$set": {"z": 1}})
    assert changed.matched_count == 2
    assert sorted([doc["at"] async for doc in contacts.find({"z": 1})]) == [2, 3]
    # findAndModify writes with {"_id": <found>, "$and": [<guard>]}: the same plan, the same answers
    assert await contacts.find_one_and_update({"_id": ids[5], "status": "ended"}, {"$set": {"w": 1}}) is None
    assert (
        await contacts.find_one_and_update(
            {"_id": ids[5], "$or": [{"status": "ended"}, {"at": {"$lt": 5}}]}, {"$set": {"w": 1}}
        )
        is None
    )
    before = await contacts.find_one_and_update(
        {"_id": ids[5], "$or": [{"status": "waiting"}, {"at": {"$lt": 5}}]}, {"$set": {"w": 1}}
    )
    assert before is not None and before["at"] == 5 and "w" not in before
    assert await contacts.count_documents({"w": 1}) == 1
    # reads and deletes take the same plan
    assert await contacts.find_one({"_id": ids[5], "status": "ended"}) is None
    assert (await contacts.find_one({"_id": ids[5], "status": "waiting"}))["at"] == 5
    assert (await contacts.delete_one({"_id": ids[3], "status": "waiting"})).deleted_count == 0
    assert (await contacts.delete_one({"_id": ids[3], "status": "ended"})).deleted_count == 1
    assert await contacts.count_documents({}) == 5
