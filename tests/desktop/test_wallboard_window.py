"""The wallboard's contact window is read whole once, then only what changed: changes made by any node (two
stores, two wallboards on one database) still show at the next read, and contacts leave the window when it
passes them."""

from __future__ import annotations

import datetime as dt

from agent_desktop import ContactKind, NewContact, QueueConfig
from agent_desktop.models import ContactStatus, WallboardConfig
from agent_desktop.store import AcdStore, contact_oid
from agent_desktop.wallboard import WallboardService
from core.db import Database, utcnow


async def test_changes_from_another_node_show_at_the_next_read_and_old_contacts_leave(db: Database) -> None:
    here, there = AcdStore(db), AcdStore(db)
    board = WallboardService(db, here)
    await here.create_queue(QueueConfig(id="after_sales", skills={"after_sales": 1}))
    config = WallboardConfig()

    first = await there.add_contact(
        NewContact(queue="after_sales", kind=ContactKind.call, customer_id="c1"), {"after_sales": 1}
    )
    [queue] = await board.queue_boards(config)  # the whole read
    assert (queue.waiting, queue.answered) == (1, 0)

    second = await there.add_contact(
        NewContact(queue="after_sales", kind=ContactKind.call, customer_id="c2"), {"after_sales": 1}
    )
    await there.update_contact(
        {"_id": contact_oid(first.id)},
        {"$set": {"status": ContactStatus.connected.value, "connected_at": utcnow(), "agent_id": "a1"}},
    )
    [queue] = await board.queue_boards(config)  # only the changes
    assert (queue.waiting, queue.connected, queue.answered) == (1, 1, 1)

    await there.update_contact(
        {"_id": contact_oid(second.id)},
        {"$set": {"status": ContactStatus.withdrawn.value, "ended_at": utcnow()}},
    )
    [queue] = await board.queue_boards(config)
    assert (queue.waiting, queue.abandoned) == (0, 1)

    # an hour later (the window is one hour) the finished call has left; the connected one stays while live
    later = WallboardConfig(window_seconds=60)
    long_ago = utcnow() - dt.timedelta(hours=2)
    await there.update_contact(
        {"_id": contact_oid(second.id)}, {"$set": {"enqueued_at": long_ago, "ended_at": long_ago}}
    )
    await there.update_contact({"_id": contact_oid(first.id)}, {"$set": {"enqueued_at": long_ago}})
    [queue] = await board.queue_boards(later)
    assert (queue.waiting, queue.connected, queue.abandoned) == (0, 1, 0)
