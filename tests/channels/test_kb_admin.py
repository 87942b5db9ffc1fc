"""Knowledge base administration as the bot and its customers feel it: an admin's edit changes what search and
the bot answer at once, a deletion takes the article out of both, agents may not do either, and every
attempt is in the audit trail."""

from __future__ import annotations

from typing import Any

from core.db import Database
from core.settings import Settings
from tests.channels.conftest import eventually, post_sms_webhook
from tests.conftest import ApiClient
from tests.test_api import assert_problem

POINTS = {
    "language": "zh",
    "title": "会员积分",
    "body": "每消费 1 元累积 1 积分，100 积分可抵 1 元。",
    "questions": ["积分怎么用", "积分有什么用"],
}
GIFT_CARD_BODY = "礼品卡可在结算页输入卡号和密码抵扣，余额三年内有效。"


async def found_ids(client: ApiClient, question: str, threshold: float) -> list[str]:
    """The articles search offers for ``question`` with the confidence the bot needs to answer from them."""
    status, hits, _ = await client.request("GET", "/api/kb/search", params={"q": question})
    assert status == 200, hits
    return [hit["article"]["id"] for hit in hits if hit["confidence"] >= threshold]


async def sms_reply(db: Database, number: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await db["sms_sink"].find_one({"to": number})
    return found


async def test_an_edited_article_answers_with_its_new_text_and_a_deleted_one_answers_no_more(
    http: ApiClient, admin: ApiClient, agent: ApiClient, db: Database, settings: Settings
) -> None:
    status, article, _ = await admin.request("POST", "/api/kb/articles", json=POINTS)
    assert status == 201, article
    article_id = article["id"]
    assert (await found_ids(agent, "积分怎么用", settings.bot_kb_threshold))[:1] == [article_id]
    assert article_id not in await found_ids(agent, "礼品卡怎么用", settings.bot_kb_threshold)

    status, patched, _ = await admin.request(
        "PATCH",
        f"/api/kb/articles/{article_id}",
        json={"title": "礼品卡使用", "body": GIFT_CARD_BODY, "questions": ["礼品卡怎么用", "礼品卡余额"]},
    )
    assert status == 200, patched
    assert (patched["id"], patched["body"], patched["language"]) == (article_id, GIFT_CARD_BODY, "zh")
    assert patched["updated_at"] > article["updated_at"]
    assert article_id not in await found_ids(agent, "积分怎么用", settings.bot_kb_threshold)
    status, hits, _ = await agent.request("GET", "/api/kb/search", params={"q": "礼品卡怎么用"})
    assert status == 200 and hits[0]["article"]["id"] == article_id, hits
    assert hits[0]["article"]["body"] == GIFT_CARD_BODY and hits[0]["confidence"] == 1.0

    # the bot answers customers from the edited text
    await post_sms_webhook(
        http, "/api/sms/inbound", {"id": "kb-1", "from": "13900000031", "text": "礼品卡怎么用？"}
    )
    answer = await eventually(lambda: sms_reply(db, "+8613900000031"), "the bot's answer by SMS")
    assert answer["text"] == GIFT_CARD_BODY

    status, body, _ = await admin.request("DELETE", f"/api/kb/articles/{article_id}")
    assert status == 204, body
    assert article_id not in await found_ids(agent, "礼品卡怎么用", settings.bot_kb_threshold)
    status, body, headers = await agent.request("GET", f"/api/kb/articles/{article_id}")
    assert_problem(status, body, headers, 404, "kb_article_not_found")
    status, body, headers = await admin.request("DELETE", f"/api/kb/articles/{article_id}")
    assert_problem(status, body, headers, 404, "kb_article_not_found")
    status, body, headers = await admin.request("PATCH", f"/api/kb/articles/{article_id}", json={"body": "x"})
    assert_problem(status, body, headers, 404, "kb_article_not_found")

    await post_sms_webhook(
        http, "/api/sms/inbound", {"id": "kb-2", "from": "13900000032", "text": "礼品卡怎么用？"}
    )
    answer = await eventually(lambda: sms_reply(db, "+8613900000032"), "the bot's reply by SMS")
    assert GIFT_CARD_BODY not in answer["text"]


async def test_agents_may_not_change_or_delete_articles_and_every_attempt_is_audited(
    admin: ApiClient, agent: ApiClient, settings: Settings
) -> None:
    status, article, _ = await admin.request("POST", "/api/kb/articles", json=POINTS)
    assert status == 201, article
    target = f"/api/kb/articles/{article['id']}"

    status, body, headers = await agent.request("PATCH", target, json={"body": "积分已取消。"})
    assert_problem(status, body, headers, 403, "forbidden_role")
    status, body, headers = await agent.request("DELETE", target)
    assert_problem(status, body, headers, 403, "forbidden_role")
    status, unchanged, _ = await agent.request("GET", target)
    assert status == 200 and unchanged["body"] == POINTS["body"]
    assert (await found_ids(agent, "积分怎么用", settings.bot_kb_threshold))[:1] == [article["id"]]

    assert (await admin.request("PATCH", target, json={"tags": ["loyalty"]}))[0] == 200
    assert (await admin.request("DELETE", target))[0] == 204

    status, entries, _ = await admin.request("GET", "/api/audit", params={"target": target})
    assert status == 200, entries
    trail = sorted(
        (entry["action"], entry["actor"]["username"], entry["status"], entry["details"]["method"])
        for entry in entries
    )
    assert trail == [
        ("delete_kb_article", "admin", 204, "DELETE"),
        ("delete_kb_article", "agent1", 403, "DELETE"),
        ("update_kb_article", "admin", 200, "PATCH"),
        ("update_kb_article", "agent1", 403, "PATCH"),
    ]
    assert all(entry["details"]["params"] == {"article_id": article["id"]} for entry in entries)
