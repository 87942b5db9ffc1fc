"""The per-number SMS budget (``sms_rate_per_minute``): messages beyond it in one minute wait for the next
minute — none lost, none sent twice — and another number is not slowed by it. Delivery runs inline, as the
channel conftest configures.

The budget is per wall-clock minute, so the service's clock is moved to a few seconds before a minute
ends (``ShiftedClock``) instead of the test sleeping up to a minute; Redis, MongoDB and delivery are real."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from core.db import Database, as_utc
from core.settings import Settings
from omnichannel.channels import sms_service
from tests.channels.conftest import eventually
from tests.conftest import ApiClient

RATE_PER_MINUTE = 2
SECONDS_LEFT_IN_MINUTE = 5.0
BUSY_NUMBER = "+8613900000061"
OTHER_NUMBER = "+8613900000062"


class ShiftedClock:
    """``time.time()`` as the SMS service reads it: moved so that its current minute ends ``seconds_left``
    from now."""

    def __init__(self, seconds_left: float) -> None:
        now = time.time()
        self.offset = (60.0 - seconds_left) - now % 60
        self.minute_ends_at = now + seconds_left  # real epoch seconds

    def time(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sms_rate_per_minute": RATE_PER_MINUTE})


async def sink(db: Database, number: str, count: int) -> list[dict[str, Any]] | None:
    entries = [doc async for doc in db["sms_sink"].find({"to": number}, sort=[("at", 1)])]
    return entries if len(entries) >= count else None


async def test_texts_beyond_the_per_minute_budget_wait_for_the_next_minute_and_are_sent_once(
    server: Any, agent: ApiClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ShiftedClock(SECONDS_LEFT_IN_MINUTE)
    monkeypatch.setattr(sms_service, "time", clock)

    async def send(number: str, text: str) -> str:
        status, message, _ = await agent.request(
            "POST", "/api/sms/messages", json={"to": number, "text": text, "transactional": True}
        )
        assert status == 202, message
        return str(message["id"])

    busy_texts = [f"您的包裹 {n} 已发出" for n in range(1, 5)]
    busy_ids = [await send(BUSY_NUMBER, text) for text in busy_texts]
    other_ids = [await send(OTHER_NUMBER, text) for text in ("验证码 111111", "验证码 222222")]

    # Within this minute: the other number gets both at once, the busy one only its budget.
    other_sent = await eventually(lambda: sink(db, OTHER_NUMBER, 2), "both texts to the other number")
    busy_sent = await eventually(lambda: sink(db, BUSY_NUMBER, RATE_PER_MINUTE), "the busy number's budget")
    assert time.time() < clock.minute_ends_at - 0.5, "the machine was too slow to send within the minute"
    await asyncio.sleep(0.5)
    assert len(await sink(db, BUSY_NUMBER, 0) or []) == RATE_PER_MINUTE
    assert all(as_utc(entry["at"]).timestamp() < clock.minute_ends_at for entry in [*other_sent, *busy_sent])
    waiting = []
    for message_id in busy_ids:
        status, message, _ = await agent.request("GET", f"/api/sms/messages/{message_id}")
        assert status == 200, message
        if message["status"] == "queued":
            waiting.append(message_id)
            assert message["attempts"] == 0
    assert len(waiting) == len(busy_ids) - RATE_PER_MINUTE

    # The next minute: the held texts go out, each once.
    entries = await eventually(
        lambda: sink(db, BUSY_NUMBER, len(busy_ids)),
        "the held texts in the next minute",
        within=SECONDS_LEFT_IN_MINUTE + 10,
    )
    assert sorted(entry["text"] for entry in entries) == sorted(busy_texts)
    held = [entry for entry in entries if entry["reference"] in waiting]
    assert len(held) == len(waiting)
    assert all(as_utc(entry["at"]).timestamp() >= clock.minute_ends_at - 0.01 for entry in held)
    for message_id in busy_ids + other_ids:
        status, message, _ = await agent.request("GET", f"/api/sms/messages/{message_id}")
        assert (message["status"], message["attempts"]) == ("sent", 1), message
