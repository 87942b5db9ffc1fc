"""Deflection as the wallboard reads it (``bot_outcomes``) when visitors go quiet or leave — resolved only
when the bot helped, abandoned when it did not — and the limit on minting visitor tokens."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.db import Database
from core.settings import Settings
from tests.channels.conftest import eventually
from tests.channels.webchat_client import Visitor, new_visitor_token
from tests.conftest import ApiClient
from tests.test_api import assert_problem


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"bot_idle_resolve_seconds": 2.0, "webchat_visitors_per_minute": 3})


async def test_an_answered_visitor_who_goes_quiet_is_resolved_and_an_unanswered_one_abandoned(
    server: Any, http: ApiClient, db: Database
) -> None:
    answered = Visitor(server, await new_visitor_token(http))
    unanswered = Visitor(server, await new_visitor_token(http))
    await answered.connect()
    await unanswered.connect()
    try:
        await answered.say("你们几点上班？")
        assert "9:00" in (await answered.next_reply())["text"]
        await unanswered.say("zzzz qqqq")
        await unanswered.next_reply()
        outcomes = await eventually(lambda: _two(db), "the idle sweep ending both sessions", within=10)
        by_conversation = {doc["conversation_id"]: doc["outcome"] for doc in outcomes}
        assert by_conversation == {
            await _conversation(answered): "resolved",
            await _conversation(unanswered): "abandoned",
        }
        await asyncio.sleep(2.5)
        assert len(await _outcomes(db)) == 2  # each session ends once
    finally:
        await answered.disconnect()
        await unanswered.disconnect()


async def test_a_visitor_the_bot_could_not_help_who_ends_the_chat_is_abandoned(
    server: Any, http: ApiClient, db: Database
) -> None:
    visitor = Visitor(server, await new_visitor_token(http))
    await visitor.connect()
    try:
        await visitor.say("zzzz qqqq")
        await visitor.next_reply()
        conversation_id = await _conversation(visitor)
        ended = await visitor.call("close")
        assert ended["ok"]["outcome"] == "abandoned"
        [outcome] = await _outcomes(db)
        assert outcome["conversation_id"] == conversation_id and outcome["outcome"] == "abandoned"
        assert outcome["channel"] == "webchat"
    finally:
        await visitor.disconnect()


async def _conversation(visitor: Visitor) -> str:
    history = await visitor.call("history")
    return str(history["conversation_id"])


async def _outcomes(db: Database) -> list[dict[str, Any]]:
    return [doc async for doc in db["bot_outcomes"].find({})]


async def _two(db: Database) -> list[dict[str, Any]] | None:
    outcomes = await _outcomes(db)
    return outcomes if len(outcomes) >= 2 else None


async def test_minting_visitor_tokens_is_rate_limited_per_address(server: Any, http: ApiClient) -> None:
    statuses = [(await http.request("POST", "/api/webchat/visitors"))[0] for _ in range(3)]
    assert statuses == [201, 201, 201]
    status, body, headers = await http.request("POST", "/api/webchat/visitors")
    assert_problem(status, body, headers, 429, "visitor_rate_limited")
    assert headers["Retry-After"] == "60"
