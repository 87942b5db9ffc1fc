"""WeChat beyond plain text: a menu click is answered, a slow WeChat API does not cost the passive reply, and
an answer that missed the 5-second window is retried until it goes out (or noted for an agent). Callbacks
signed exactly as the platform signs them; the WeChat API is the sink client, made slow or failing."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from aiohttp.test_utils import TestServer

from core.db import Database
from omnichannel.channels.http import CHANNELS
from omnichannel.channels.wechat import SinkWeChatClient, WeChatService
from tests.channels.conftest import customer_with, eventually, post_wechat, timeline, wechat_text, wechat_xml
from tests.channels.test_bot_channels import passive_text, sent_on_wechat
from tests.conftest import ApiClient

OPENID = "oHuiliu_menu_0001"
TOKEN = "ACCESS-TOKEN-not-for-logs"


class SlowProfiles(SinkWeChatClient):
    """The user-info API answering after longer than the whole passive-reply window."""

    async def unionid_of(self, openid: str) -> str | None:
        await asyncio.sleep(5.0)
        return await super().unionid_of(openid)


class FailingSends(SinkWeChatClient):
    """Customer-service messages failing ``failures`` times the way wechatpy fails: with the URL."""

    def __init__(self, db: Database, failures: int) -> None:
        super().__init__(db)
        self.failures = failures
        self.tries = 0

    async def send_text(self, openid: str, text: str) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise ConnectionError(
                "HTTPSConnectionPool(host='api.weixin.qq.com', port=443): Max retries exceeded with url: "
                f"/cgi-bin/message/custom/send?access_token={TOKEN} (Connection reset by peer)"
            )
        await super().send_text(openid, text)


def wechat(server: TestServer) -> WeChatService:
    return server.app[CHANNELS].wechat


def answer_late(service: WeChatService) -> None:
    """Every answer misses the passive window (as a slow bot would), and retries come quickly."""
    service.config = dataclasses.replace(
        service.config, reply_timeout_seconds=0.001, late_reply_backoff_seconds=0.05
    )


def click(openid: str, key: str) -> str:
    return wechat_xml(
        openid, "event", None, f"<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[{key}]]></EventKey>"
    )


async def test_a_menu_click_is_answered_like_a_message_saying_its_key(
    http: ApiClient, admin: ApiClient
) -> None:
    status, answer, _ = await post_wechat(http, click(OPENID, "运费多少钱"))
    assert status == 200 and "包邮" in passive_text(answer)
    customer = await customer_with(admin, "wechat_openid", OPENID)
    events = await timeline(admin, customer["id"])
    [clicked] = [e for e in events if e["kind"] == "message.in"]
    assert clicked["body"]["event"] == "click" and clicked["body"]["key"] == "运费多少钱"
    assert [e["body"]["text"] for e in events if e["kind"] == "message.out"] == [passive_text(answer)]


async def test_a_slow_profile_lookup_leaves_the_passive_reply_alone_and_adds_the_unionid_after(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database
) -> None:
    wechat(server).client = SlowProfiles(db, {OPENID: "uHuiliu_union_0001"})
    started = time.monotonic()
    status, answer, _ = await post_wechat(http, wechat_text(OPENID, "运费多少钱？", "31001"))
    assert status == 200 and "包邮" in passive_text(answer)
    assert time.monotonic() - started < 3.0
    customer = await customer_with(admin, "wechat_openid", OPENID)
    await eventually(
        lambda: db["customers"].find_one({"identity_keys": "wechat_unionid:uHuiliu_union_0001"}),
        "the unionid on the customer",
    )
    again = await customer_with(admin, "wechat_unionid", "uHuiliu_union_0001")
    assert again["id"] == customer["id"]


async def test_a_late_answer_that_fails_to_send_is_retried_and_goes_out_once(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database
) -> None:
    service = wechat(server)
    answer_late(service)
    service.client = client = FailingSends(db, failures=2)
    status, answer, _ = await post_wechat(http, wechat_text(OPENID, "运费多少钱？", "32001"))
    assert (status, answer) == (200, "success")

    [sent] = await eventually(lambda: sent_on_wechat(db, OPENID), "the answer as a customer-service message")
    assert "包邮" in sent and client.tries == 3
    customer = await customer_with(admin, "wechat_openid", OPENID)
    kinds = [e["kind"] for e in await timeline(admin, customer["id"])]
    assert kinds.count("message.out") == 1 and "message.failed" not in kinds


async def test_a_late_answer_that_never_goes_out_is_logged_and_left_for_an_agent(
    server: TestServer, http: ApiClient, admin: ApiClient, db: Database
) -> None:
    service = wechat(server)
    answer_late(service)
    service.client = client = FailingSends(db, failures=100)
    await post_wechat(http, wechat_text(OPENID, "运费多少钱？", "33001"))

    customer = await customer_with(admin, "wechat_openid", OPENID)
    failed = await eventually(
        lambda: _events(admin, customer["id"], "message.failed"), "the failed answer on the timeline"
    )
    assert "包邮" in failed[0]["body"]["text"] and TOKEN not in failed[0]["body"]["error"]
    assert client.tries == service.config.late_reply_attempts
    assert await sent_on_wechat(db, OPENID) == []
    # what the timeline and the log say of the failure is the same redacted text (_redacted)
    assert "access_token=***" in failed[0]["body"]["error"]


async def _events(admin: ApiClient, customer_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in await timeline(admin, customer_id) if e["kind"] == kind]


def _logged(output: str, event: str) -> list[str]:
    return [line for line in output.splitlines() if f" {event} " in line]
