"""The unified timeline: idempotent appends, newest first, stable cursors, channel and kind filters."""

from __future__ import annotations

import datetime as dt

import pytest

from core.db import Database
from core.errors import Invalid, NotFound
from omnichannel import Actor, Channel, Identity, IdentityKind, NewEvent, Omnichannel

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
SYSTEM = Actor(type="system")


@pytest.fixture
async def omni_and_customer(db: Database) -> tuple[Omnichannel, str]:
    omni = Omnichannel.create(db, bus=None)
    customer, _ = await omni.customers.resolve([Identity(kind=IdentityKind.phone, value="13800138000")])
    return omni, customer.id


async def test_the_same_event_delivered_twice_is_stored_once(omni_and_customer, db: Database) -> None:
    omni, customer_id = omni_and_customer
    event = NewEvent(
        kind="message.in", channel=Channel.wechat, body={"text": "你好"}, idempotency_key="wx:msg:42"
    )
    first, created_first = await omni.timeline.append(customer_id, event, Actor(type="customer"))
    second, created_second = await omni.timeline.append(customer_id, event, Actor(type="customer"))
    assert created_first and not created_second
    assert second.id == first.id
    assert await db["timeline"].count_documents({"idempotency_key": "wx:msg:42"}) == 1


async def test_pages_are_newest_first_without_gaps_or_repeats(omni_and_customer) -> None:
    omni, customer_id = omni_and_customer
    channels = [Channel.voice, Channel.wechat, Channel.sms, Channel.email, Channel.webchat]
    for i in range(23):
        await omni.timeline.append(
            customer_id,
            NewEvent(
                kind="message.in",
                channel=channels[i % 5],
                ts=T0 + dt.timedelta(minutes=i // 2),
                body={"n": i},
                idempotency_key=f"e{i}",
            ),
            SYSTEM,
        )
    seen: list[int] = []
    cursor = None
    while True:
        page = await omni.timeline.page(customer_id, limit=5, cursor=cursor)
        seen.extend(event.body["n"] for event in page.events)
        # New events arriving while someone reads must not shift the pages already handed out.
        await omni.timeline.append(
            customer_id,
            NewEvent(kind="note.added", channel=Channel.internal, idempotency_key=f"late{len(seen)}"),
            SYSTEM,
        )
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == list(range(23))
    assert len(seen) == 23
    timestamps = [T0 + dt.timedelta(minutes=n // 2) for n in seen]
    assert timestamps == sorted(timestamps, reverse=True)


async def test_channel_and_kind_filters(omni_and_customer) -> None:
    omni, customer_id = omni_and_customer
    for i, (kind, channel) in enumerate(
        [
            ("call.started", Channel.voice),
            ("ivr.step", Channel.voice),
            ("message.in", Channel.wechat),
            ("ticket.created", Channel.internal),
            ("ticket.escalated", Channel.internal),
            ("call.ended", Channel.voice),
        ]
    ):
        await omni.timeline.append(
            customer_id,
            NewEvent(kind=kind, channel=channel, ts=T0 + dt.timedelta(seconds=i), idempotency_key=kind),
            SYSTEM,
        )
    voice = await omni.timeline.page(customer_id, channels=[Channel.voice])
    assert [e.kind for e in voice.events] == ["call.ended", "ivr.step", "call.started"]
    tickets = await omni.timeline.page(customer_id, kinds=["ticket.*"])
    assert [e.kind for e in tickets.events] == ["ticket.escalated", "ticket.created"]
    mixed = await omni.timeline.page(customer_id, kinds=["message.in", "call.*"], channels=[Channel.voice])
    assert [e.kind for e in mixed.events] == ["call.ended", "call.started"]


async def test_event_for_unknown_customer_or_conversation_is_refused(omni_and_customer) -> None:
    omni, customer_id = omni_and_customer
    with pytest.raises(NotFound):
        await omni.timeline.append(
            "6b0000000000000000000000", NewEvent(kind="a.b", channel=Channel.sms), SYSTEM
        )
    with pytest.raises(NotFound):
        await omni.timeline.append(
            customer_id,
            NewEvent(kind="a.b", channel=Channel.sms, conversation_id="6b0000000000000000000000"),
            SYSTEM,
        )
    with pytest.raises(Invalid):
        await omni.timeline.page(customer_id, cursor="not-a-cursor")


async def test_conversation_open_is_idempotent_by_channel_reference(omni_and_customer) -> None:
    from omnichannel import NewConversation

    omni, customer_id = omni_and_customer
    call = NewConversation(channel=Channel.voice, external_ref="sip-call-id-123@pbx")
    first, created = await omni.conversations.open(customer_id, call)
    again, created_again = await omni.conversations.open(customer_id, call)
    assert created and not created_again and again.id == first.id
    # a writer that expects the reference to be new (the call journal) and retries gets the same one too
    retried, created_by_retry = await omni.conversations.open(customer_id, call, expect_new=True)
    assert not created_by_retry and retried.id == first.id
    other = NewConversation(channel=Channel.voice, external_ref="sip-call-id-456@pbx")
    fresh, created_fresh = await omni.conversations.open(customer_id, other, expect_new=True)
    assert created_fresh and fresh.id != first.id
    await omni.timeline.append(
        customer_id,
        NewEvent(kind="call.started", channel=Channel.voice, conversation_id=first.id, idempotency_key="cs"),
        SYSTEM,
    )
    page = await omni.timeline.page(customer_id, conversation_id=first.id)
    assert [e.conversation_id for e in page.events] == [first.id]
    closed = await omni.conversations.close(first.id)
    assert closed.status == "closed" and closed.ended_at is not None
    assert (await omni.conversations.close(first.id)).ended_at == closed.ended_at


async def test_a_reused_key_for_another_customer_is_refused_not_leaked(omni_and_customer) -> None:
    from core.errors import Conflict

    omni, customer_id = omni_and_customer
    other, _ = await omni.customers.resolve([Identity(kind=IdentityKind.email, value="other@example.com")])
    secret = NewEvent(
        kind="message.in", channel=Channel.email, body={"text": "私人信息"}, idempotency_key="k"
    )
    await omni.timeline.append(customer_id, secret, SYSTEM)
    with pytest.raises(Conflict) as caught:
        await omni.timeline.append(other.id, secret, SYSTEM)
    assert caught.value.code == "idempotency_key_reused"
    assert "私人信息" not in str(caught.value.to_problem())
    assert (await omni.timeline.page(other.id)).events == []


async def test_a_batch_is_stored_in_one_go_and_a_retried_batch_once(omni_and_customer, db: Database) -> None:
    # A producer that fell behind (the telephony ledger) writes several events at once; if the write is
    # retried after part of it landed, every event is still there exactly once.
    omni, customer_id = omni_and_customer
    events = [
        (
            NewEvent(
                kind="ivr.step",
                channel=Channel.voice,
                ts=T0 + dt.timedelta(seconds=n),
                body={"node": f"n{n}"},
                idempotency_key=f"call:x:{n}",
            ),
            Actor(type="bot", name="ivr"),
        )
        for n in range(3)
    ]
    await omni.timeline.append(customer_id, *events[1])  # the middle one landed before
    results = await omni.timeline.append_many(customer_id, events)
    assert [created for _, created in results] == [True, False, True]
    assert [event.body["node"] for event, _ in results] == ["n0", "n1", "n2"]
    page = await omni.timeline.page(customer_id)
    assert [event.body["node"] for event in page.events] == ["n2", "n1", "n0"]
    assert await db["timeline"].count_documents({"idempotency_key": {"$regex": "^call:x:"}}) == 3
    # the same key for another kind of fact in a batch is a producer bug: refused, not hidden
    from core.errors import Conflict

    clash = NewEvent(kind="call.ended", channel=Channel.voice, idempotency_key="call:x:0")
    with pytest.raises(Conflict):
        await omni.timeline.append_many(customer_id, [(clash, SYSTEM)])
