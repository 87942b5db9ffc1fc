"""Journeys 2 (same customer, other channel) and 3 (web chat) end to end against real processes:
channels_journeys.py starts embedded MongoDB, redis-server, ``huiliu web`` and ``huiliu worker`` and plays
the customer, the visitor and the agent. Each test checks what the person involved would check."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).resolve().parent / "channels_journeys.py"
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts"
SCREENSHOTS = ("journey3-offer.png", "journey3-wrapped.png", "journey3-visitor.png")


def run_journey(name: str, workdir: Path) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, str(DRIVER), "--journey", name, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0 and lines, f"journey {name} failed ({run.returncode}):\n{run.stderr[-4000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    (workdir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for shot in SCREENSHOTS:
        if (workdir / shot).exists():
            shutil.copy(workdir / shot, ARTIFACTS / shot)
    return report


def order_of(timeline: list[dict[str, Any]], channel: str, kind: str, text: str) -> int:
    """Where on the timeline ``kind`` on ``channel`` whose text contains ``text`` is (exactly one such)."""
    [position] = [
        at
        for at, event in enumerate(timeline)
        if event["channel"] == channel and event["kind"] == kind and text in (event["text"] or "")
    ]
    return position


# ------------------------------------------------------------------- journey 2: same customer, WeChat


@pytest.fixture(scope="module")
def wechat(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_journey("wechat", tmp_path_factory.mktemp("journey2"))


def test_the_sms_return_request_made_a_ticket_for_order_12345_and_its_number_came_back_by_sms(
    wechat: dict[str, Any],
) -> None:
    ticket = wechat["ticket"]
    assert ticket["intent"] == "return_request" and ticket["channel"] == "sms"
    assert ticket["entities"]["order_number"] == "12345"
    assert any(ticket["number"] in sms["text"] for sms in wechat["sms"])


def test_on_wechat_the_customer_proves_their_number_and_the_bot_answers_the_return_status(
    wechat: dict[str, Any],
) -> None:
    linking, code, status, handoff = wechat["answers"]
    assert "+86138****8000" in linking["answer"]  # a code went to the number they gave
    assert "已验证" in code["answer"]
    ticket = wechat["ticket"]
    assert ticket["number"] in status["answer"] and "已受理" in status["answer"], status
    assert "人工" in handoff["answer"] and "无需重复" in handoff["answer"]


def test_sms_and_wechat_are_one_customer_with_both_identities(wechat: dict[str, Any]) -> None:
    assert wechat["customers_with_phone"] == [wechat["customer"]["id"]]
    assert wechat["customer_of_openid"] == wechat["customer"]["id"]
    assert wechat["openid_resolved_as_new"] is False
    identities = {(identity["kind"], identity["value"]) for identity in wechat["customer"]["identities"]}
    assert {("phone", "+8613800138000"), ("wechat_openid", "oHuiliu_journey2_customer")} <= identities
    [ticket] = wechat["tickets"]  # asking about it on WeChat did not open a second one
    assert ticket["number"] == wechat["ticket"]["number"]


def test_the_agents_offer_has_the_bot_summary_the_open_ticket_and_the_earlier_sms(
    wechat: dict[str, Any],
) -> None:
    offer = wechat["offer"]
    assert offer["contact"]["customer_id"] == wechat["customer"]["id"]
    assert offer["contact"]["context"]["channel"] == "wechat"
    assert offer["contact"]["context"]["handoff_reason"] == "requested"
    summary = offer["bot_summary"]
    assert "return_request" in summary and wechat["ticket"]["number"] in summary, summary
    assert [ticket["number"] for ticket in offer["open_tickets"]] == [wechat["ticket"]["number"]]
    said = [(event["channel"], event["text"]) for event in offer["history"] if event["kind"] == "message.in"]
    assert ("sms", "我要退货，订单号 12345") in said, said
    assert ("wechat", "我的退货进度怎么样？") in said, said


def test_the_agents_reply_reaches_the_customer_on_wechat(wechat: dict[str, Any]) -> None:
    assert wechat["wechat_texts"].count(wechat["agent_text"]) == 1


def test_the_timeline_is_one_customer_with_sms_then_wechat_in_order(wechat: dict[str, Any]) -> None:
    timeline = wechat["timeline"]
    number = wechat["ticket"]["number"]
    steps = [
        order_of(timeline, "sms", "message.in", "我要退货，订单号 12345"),
        order_of(timeline, "sms", "ticket.created", "我要退货"),
        order_of(timeline, "sms", "message.out", number),
        order_of(timeline, "wechat", "message.in", "我的手机号是13800138000"),
        order_of(timeline, "sms", "message.out", "验证码"),
        order_of(timeline, "wechat", "message.in", "我的退货进度怎么样？"),
        order_of(timeline, "wechat", "message.out", number),
        order_of(timeline, "wechat", "message.in", "转人工"),
        order_of(timeline, "wechat", "bot.summary", ""),
        order_of(timeline, "wechat", "contact.connected", ""),
        order_of(timeline, "wechat", "message.sent", wechat["agent_text"]),
    ]
    assert steps == sorted(steps), [timeline[step]["kind"] for step in steps]
    assert {event["channel"] for event in timeline} <= {"sms", "wechat", "internal"}
    assert len({event["id"] for event in timeline}) == len(timeline)


# ------------------------------------------------------------------------------ journey 3: web chat


@pytest.fixture(scope="module")
def webchat(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_journey("webchat", tmp_path_factory.mktemp("journey3"))


@pytest.mark.browser
def test_the_widget_on_another_origin_answers_the_faq_from_the_knowledge_base(
    webchat: dict[str, Any],
) -> None:
    assert webchat["page_origin"] != webchat["platform_origin"]
    answer, handoff = webchat["bot_said"]
    assert answer == webchat["article"]["body"]
    assert "人工" in handoff


@pytest.mark.browser
def test_the_agent_is_offered_the_chat_with_the_bots_summary_and_what_was_asked(
    webchat: dict[str, Any],
) -> None:
    assert "机器人摘要" in webchat["offer_text"]
    assert "会员积分" in webchat["offer_text"]  # what the bot answered, from the article
    assert "客户要求人工" in webchat["offer_text"]
    assert "请问积分有什么用？" in webchat["pop_text"]  # the visitor's question, in the history beside it


@pytest.mark.browser
def test_the_visitor_rates_5_and_the_rating_is_on_the_resolved_ticket(webchat: dict[str, Any]) -> None:
    [ticket] = webchat["tickets"]
    assert ticket["channel"] == "webchat" and ticket["status"] == "resolved"
    assert ticket["number"] in webchat["csat_text"]
    assert ticket["csat"]["channel"] == "webchat"
    assert ticket["csat"]["score"] == 5 and ticket["csat"]["comment"] == "很满意"
    kinds = [event["kind"] for event in webchat["timeline"]]
    assert kinds.count("ticket.csat_recorded") == 1


@pytest.mark.browser
def test_the_whole_chat_is_on_the_visitors_timeline_once_and_in_order(webchat: dict[str, Any]) -> None:
    timeline = webchat["timeline"]
    assert webchat["visitor_resolved_as_new"] is False
    assert len({event["id"] for event in timeline}) == len(timeline)
    chat = [
        (event["kind"], event["text"])
        for event in timeline
        if event["kind"] in ("message.in", "message.out", "message.sent")
    ]
    assert len(chat) == len(set(chat)), chat  # nothing twice
    steps = [
        order_of(timeline, "webchat", "message.in", "请问积分有什么用？"),
        order_of(timeline, "webchat", "message.out", webchat["article"]["body"]),
        order_of(timeline, "webchat", "bot.summary", ""),
        order_of(timeline, "webchat", "contact.connected", ""),
        order_of(timeline, "webchat", "message.sent", webchat["agent_text"]),
        order_of(timeline, "webchat", "message.in", "明白了，谢谢！"),
        order_of(timeline, "webchat", "message.out", "请为工单"),
        order_of(timeline, "webchat", "contact.wrapped_up", ""),
        order_of(timeline, "webchat", "message.in", "5 很满意"),
        order_of(timeline, "webchat", "message.out", "感谢您对工单"),
    ]
    assert steps == sorted(steps), [timeline[step]["kind"] for step in steps]
    # the widget shows every message once, and after a reload replays the same conversation from the server
    shown = webchat["widget_after_reload"]
    assert shown == webchat["widget_before_reload"] and len(shown) == len(set(shown)), shown
    assert sum(webchat["agent_text"] in message for message in shown) == 1
    assert webchat["page_errors"] == []
