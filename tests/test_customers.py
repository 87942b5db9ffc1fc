"""One customer per person: concurrent first contacts, identities across channels, merge and un-merge."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from core.db import Database
from core.errors import Conflict, Invalid
from omnichannel import Actor, Channel, Identity, IdentityKind, NewEvent, Omnichannel

PHONE = Identity(kind=IdentityKind.phone, value="13800138000")


@pytest.fixture
def omni(db: Database) -> Omnichannel:
    return Omnichannel.create(db, bus=None)


async def test_fifty_concurrent_first_contacts_from_one_phone_make_one_customer(
    omni: Omnichannel, db: Database
) -> None:
    spellings = ["13800138000", "+86 138 0013 8000", "008613800138000", "138-0013-8000", "+8613800138000"]
    results = await asyncio.gather(
        *(
            omni.customers.resolve([Identity(kind=IdentityKind.phone, value=spellings[i % len(spellings)])])
            for i in range(50)
        )
    )
    assert len({customer.id for customer, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert await db["customers"].count_documents({}) == 1


async def test_concurrent_first_contacts_on_separate_connections_make_one_customer(
    settings, db: Database
) -> None:
    """Many processes (web nodes, telephony nodes) race, each with its own client."""
    clients = [Database.connect(settings.mongo_url, settings.db_name) for _ in range(5)]
    try:
        services = [Omnichannel.create(client, bus=None) for client in clients]
        results = await asyncio.gather(
            *(
                services[i % 5].customers.resolve([Identity(kind=IdentityKind.phone, value="13900139000")])
                for i in range(50)
            )
        )
    finally:
        for client in clients:
            await client.close()
    assert len({customer.id for customer, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert await db["customers"].count_documents({}) == 1


async def test_a_later_contact_adds_new_identities_to_the_same_customer(omni: Omnichannel) -> None:
    first, created = await omni.customers.resolve([PHONE], name="李娜")
    assert created
    again, created = await omni.customers.resolve(
        [Identity(kind=IdentityKind.email, value="Li.Na@example.com"), PHONE]
    )
    assert not created and again.id == first.id
    assert {i.key for i in again.identities} == {"phone:+8613800138000", "email:li.na@example.com"}
    by_email = await omni.customers.find_by_identity(
        Identity(kind=IdentityKind.email, value="li.na@EXAMPLE.com")
    )
    assert by_email is not None and by_email.id == first.id


async def test_an_identity_owned_by_someone_else_is_never_taken_silently(omni: Omnichannel) -> None:
    wechat = Identity(kind=IdentityKind.wechat_openid, value="oWx_abcdef123")
    owner, _ = await omni.customers.resolve([wechat])
    caller, _ = await omni.customers.resolve([PHONE])
    # A contact that carries both: found by one of them, the other stays where it is.
    found, created = await omni.customers.resolve([PHONE, wechat])
    assert not created
    assert found.id in {owner.id, caller.id}
    assert (await omni.customers.get(owner.id)).identities == [wechat]
    with pytest.raises(Conflict) as caught:
        await omni.customers.add_identity(caller.id, wechat)
    assert caught.value.code == "identity_in_use"


async def test_merge_joins_timelines_and_unmerge_splits_them_again(omni: Omnichannel) -> None:
    caller, _ = await omni.customers.resolve([PHONE])
    wechat_user, _ = await omni.customers.resolve(
        [Identity(kind=IdentityKind.wechat_openid, value="oWx_merge01")]
    )
    t0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
    await omni.timeline.append(
        caller.id,
        NewEvent(kind="call.started", channel=Channel.voice, ts=t0, idempotency_key="c1"),
        Actor(type="system"),
    )
    await omni.timeline.append(
        wechat_user.id,
        NewEvent(
            kind="message.in",
            channel=Channel.wechat,
            ts=t0 + dt.timedelta(hours=1),
            body={"text": "我的退货进度怎么样？"},
            idempotency_key="w1",
        ),
        Actor(type="customer"),
    )
    merge = await omni.customers.merge(caller.id, wechat_user.id, {"id": "u1", "username": "supervisor"})
    merged = await omni.customers.get(caller.id)
    assert {i.key for i in merged.identities} == {"phone:+8613800138000", "wechat_openid:oWx_merge01"}
    page = await omni.timeline.page(caller.id)
    assert [e.kind for e in page.events] == ["message.in", "call.started"]
    # The WeChat user now resolves to the caller, and new events land there.
    again, created = await omni.customers.resolve(
        [Identity(kind=IdentityKind.wechat_openid, value="oWx_merge01")]
    )
    assert again.id == caller.id and not created
    with pytest.raises(Conflict):
        await omni.customers.merge(caller.id, wechat_user.id, {"id": "u1"})

    await omni.customers.unmerge(merge.id, {"id": "u1", "username": "supervisor"})
    assert [e.kind for e in (await omni.timeline.page(caller.id)).events] == ["call.started"]
    assert [e.kind for e in (await omni.timeline.page(wechat_user.id)).events] == ["message.in"]
    back, _ = await omni.customers.resolve([Identity(kind=IdentityKind.wechat_openid, value="oWx_merge01")])
    assert back.id == wechat_user.id
    with pytest.raises(Conflict, match="already undone"):
        await omni.customers.unmerge(merge.id, {"id": "u1"})


async def test_merging_a_customer_into_itself_is_refused(omni: Omnichannel) -> None:
    customer, _ = await omni.customers.resolve([PHONE])
    with pytest.raises(Invalid):
        await omni.customers.merge(customer.id, customer.id, {"id": "u1"})


async def test_search_finds_by_name_phone_fragment_and_pages(omni: Omnichannel) -> None:
    for i in range(7):
        await omni.customers.resolve(
            [Identity(kind=IdentityKind.phone, value=f"1380013800{i}")], name=f"客户{i}"
        )
    found = await omni.customers.search(q="13800138003")
    assert [c.name for c in found.customers] == ["客户3"]
    first = await omni.customers.search(limit=4)
    second = await omni.customers.search(limit=4, cursor=first.next_cursor)
    names = [c.name for c in first.customers + second.customers]
    assert names == [f"客户{i}" for i in reversed(range(7))]
    assert second.next_cursor is None


async def test_search_by_phone_written_with_spaces(omni: Omnichannel) -> None:
    customer, _ = await omni.customers.resolve([PHONE], name="李娜")
    for typed in ("138 0013 8000", "0013-8000", "+86 138"):
        found = await omni.customers.search(q=typed)
        assert [c.id for c in found.customers] == [customer.id], typed
