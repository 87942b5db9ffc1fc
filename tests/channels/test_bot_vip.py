"""A VIP customer never talks to the bot: their first SMS goes to a person at once, ahead of the queue, to an
agent who serves VIPs, and the agent's summary says why."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer

from core.db import Database
from omnichannel.channels.bot import TEXTS
from tests.channels.conftest import customer_with, eventually, post_sms_webhook, timeline
from tests.conftest import ApiClient
from tests.desktop.conftest import make_agent

VIP_NUMBER = "+8613900000051"
REGULAR_NUMBER = "+8613900000052"
CURIOUS_NUMBER = "+8613900000053"


async def contact_of(db: Database, customer_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await db["queue_contacts"].find_one({"customer_id": customer_id})
    return found


async def sms_to(db: Database, number: str) -> list[str]:
    return [doc["text"] async for doc in db["sms_sink"].find({"to": number}, sort=[("at", 1)])]


async def test_a_vip_customer_is_handed_to_a_vip_agent_at_once_ahead_of_earlier_chats(
    server: TestServer, http: ApiClient, admin: ApiClient, supervisor: ApiClient, db: Database
) -> None:
    vip_agent, vip_agent_token = await make_agent(
        server, "vip_desk", {"sms": 1, "lang_zh": 1, "vip": 1}, available=False, max_chats=1
    )
    # Someone else asked for a person first and is waiting.
    await post_sms_webhook(
        http, "/api/sms/inbound", {"id": "vip-0", "from": REGULAR_NUMBER, "text": "我要转人工"}
    )
    regular = await customer_with(admin, "phone", REGULAR_NUMBER)
    regular_contact = await eventually(
        lambda: contact_of(db, regular["id"]), "the regular customer's contact"
    )
    assert regular_contact["priority"] == "normal" and "vip" not in regular_contact["preferred_skills"]

    vip = await customer_with(admin, "phone", VIP_NUMBER)
    status, patched, _ = await supervisor.request("PATCH", f"/api/customers/{vip['id']}", json={"vip": True})
    assert status == 200 and patched["vip"] is True
    # A question the bot would answer for anyone else (control: it does, from the knowledge base).
    await post_sms_webhook(
        http, "/api/sms/inbound", {"id": "vip-c", "from": CURIOUS_NUMBER, "text": "你们几点上班？"}
    )
    [kb_answer] = await eventually(lambda: sms_to(db, CURIOUS_NUMBER), "the knowledge base answer")
    assert "9:00" in kb_answer
    await post_sms_webhook(
        http, "/api/sms/inbound", {"id": "vip-1", "from": VIP_NUMBER, "text": "你们几点上班？"}
    )

    [reply] = await eventually(lambda: sms_to(db, VIP_NUMBER), "the VIP's reply by SMS")
    assert reply == TEXTS["handoff"]["zh"]
    contact = await eventually(lambda: contact_of(db, vip["id"]), "the VIP's contact in the ACD")
    assert (contact["queue"], contact["priority"], contact["status"]) == ("chat", "high", "waiting")
    assert contact["preferred_skills"] == {"sms": 1, "lang_zh": 1, "vip": 1}
    assert contact["context"]["vip"] is True and contact["context"]["handoff_reason"] == "vip"
    assert "VIP 客户 / VIP customer" in contact["context"]["bot_summary"]

    events = await timeline(admin, vip["id"])
    [summary] = [event for event in events if event["kind"] == "bot.summary"]
    assert summary["body"]["reason"] == "vip" and "VIP 客户 / VIP customer" in summary["body"]["summary"]
    assert "最后一句 Last message: 你们几点上班？" in summary["body"]["summary"]
    [outcome] = [doc async for doc in db["bot_outcomes"].find({"customer_id": vip["id"]})]
    assert outcome["outcome"] == "handed_off"

    vip_id, regular_id = str(contact["_id"]), str(regular_contact["_id"])
    places = {}
    for contact_id in (vip_id, regular_id):
        status, position, _ = await supervisor.request("GET", f"/api/desktop/contacts/{contact_id}/position")
        assert status == 200, position
        places[contact_id] = position["position"]
    assert places == {vip_id: 1, regular_id: 2}

    desk = ApiClient(http.session, http.base, vip_agent_token)
    status, _, _ = await desk.request("PUT", "/api/desktop/me/state", json={"state": "available"})
    assert status == 200
    offered = await eventually(
        lambda: db["queue_contacts"].find_one({"_id": contact["_id"], "status": "offered"}), "the VIP's offer"
    )
    assert offered["offered_to"] == [vip_agent.id]
    # the earlier chat waits for the next free agent (the only one is busy with the VIP's offer)
    await eventually(
        lambda: db["queue_contacts"].find_one({"_id": regular_contact["_id"], "status": "waiting"}),
        "the regular customer back in line",
    )
    regular_now = await db["queue_contacts"].find_one({"_id": regular_contact["_id"]})
    assert regular_now["offered_to"] == []
