"""The limits of phone verification, over the widget's real socket: five tries per code however many guesses
arrive at once, and a cap on the codes texted to one number however many visitors ask for them."""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp.test_utils import TestServer

from core.app import REDIS
from core.db import Database
from omnichannel.channels.linking import CODES_PER_ADDRESS, MAX_ATTEMPTS
from tests.channels import test_identity_linking
from tests.channels.conftest import eventually
from tests.channels.test_identity_linking import code_sent_to
from tests.channels.webchat_client import Visitor, new_visitor_token
from tests.conftest import ApiClient

visitor = test_identity_linking.visitor  # a connected web-chat visitor


async def test_a_hundred_parallel_guesses_get_five_tries_and_then_a_lock(
    visitor: Visitor, db: Database
) -> None:
    assert await visitor.call("verify_phone", {"phone": "13900139001"}) == {
        "ok": {"sent_to": "+86139****9001"}
    }
    code = await code_sent_to(db, "+8613900139001")
    wrong = [f"{n:06d}" for n in range(100) if f"{n:06d}" != code]

    answers = await asyncio.gather(*(visitor.call("verify_code", {"code": guess}) for guess in wrong))

    codes = Counter(answer["error"]["code"] for answer in answers)
    assert codes == {
        "verification_failed": MAX_ATTEMPTS - 1,
        "verification_locked": len(wrong) - MAX_ATTEMPTS + 1,
    }
    left = sorted(a["error"]["attempts_left"] for a in answers if a["error"]["code"] == "verification_failed")
    assert left == [1, 2, 3, 4]
    # The tries are spent: even the right code is refused now, with the same precise error.
    late = await visitor.call("verify_code", {"code": code})
    assert late["error"]["code"] == "verification_locked"


async def test_new_visitors_cannot_pump_codes_to_one_number(
    server: TestServer, http: ApiClient, db: Database
) -> None:
    phone, raw = "+8613900139002", "13900139002"
    redis = server.app[REDIS]
    answers = []
    for _ in range(CODES_PER_ADDRESS + 2):
        fresh = Visitor(server, await new_visitor_token(http))  # a new customer each time
        await fresh.connect()
        try:
            answers.append(await fresh.call("verify_phone", {"phone": raw}))
            again = Visitor(server, await new_visitor_token(http))
            await again.connect()
            try:  # another visitor in the same minute
                limited = await again.call("verify_phone", {"phone": raw})
                assert limited["error"]["code"] == "verification_rate_limited", limited
            finally:
                await again.disconnect()
        finally:
            await fresh.disconnect()
        await redis.delete(f"huiliu:verify:number-wait:{phone}")  # as if the minute had passed

    assert answers[:CODES_PER_ADDRESS] == [{"ok": {"sent_to": "+86139****9002"}}] * CODES_PER_ADDRESS
    for refused in answers[CODES_PER_ADDRESS:]:
        assert refused["error"]["code"] == "verification_number_limited"
    texted = await eventually(
        lambda: _count_at_least(db, phone, CODES_PER_ADDRESS), "the codes at the SMS sink"
    )
    await asyncio.sleep(0.5)
    assert texted == await db["sms_sink"].count_documents({"to": phone}) == CODES_PER_ADDRESS


async def _count_at_least(db: Database, phone: str, wanted: int) -> int | None:
    count: int = await db["sms_sink"].count_documents({"to": phone})
    return count if count >= wanted else None
