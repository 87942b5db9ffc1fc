"""What callers and chatters say, and what the contact center must understand from it."""

from __future__ import annotations

import datetime as dt
import json

from asr.nlu import Analysis, Analyzer, EntityKind, Priority


def order_numbers(analysis: Analysis) -> list[str]:
    return [entity.value for entity in analysis.entities_of(EntityKind.order_number)]


def test_caller_saying_return_with_order_number_gives_return_request_and_order_entity(
    analyzer: Analyzer,
) -> None:
    analysis = analyzer.analyze("我要退货，订单号 12345")

    assert analysis.intent == "return_request"
    assert analysis.label.zh == "退货" and analysis.label.en == "Return"
    assert analysis.confidence >= 0.6
    assert order_numbers(analysis) == ["12345"]
    assert analysis.language == "zh"
    assert [match.keyword for match in analysis.matched_keywords] == ["退货"]


def test_asr_transcript_with_homophone_spacing_and_spoken_digits_still_gives_the_return(
    analyzer: Analyzer,
) -> None:
    # What a recogniser may deliver for 我要退货，订单号一二三四五: 退火 for 退货, spaces everywhere.
    analysis = analyzer.analyze("我 要 退 火 订 单 号 一 二 三 四 五")

    assert analysis.intent == "return_request"
    assert analysis.text == "我要退火订单号12345"
    assert order_numbers(analysis) == ["12345"]
    (match,) = [m for m in analysis.matched_keywords if m.intent == "return_request"]
    assert (match.keyword, match.via, match.heard) == ("退货", "pinyin", "退火")


def test_same_customer_asking_on_wechat_about_return_progress_gives_return_request(
    analyzer: Analyzer,
) -> None:
    assert analyzer.analyze("我的退货进度怎么样？").intent == "return_request"


def test_english_chatter_asking_where_the_order_is_gives_order_status_with_the_order_id(
    analyzer: Analyzer,
) -> None:
    analysis = analyzer.analyze("Hi, where is my order #A2026-0042?")

    assert analysis.intent == "order_status"
    assert analysis.language == "en"
    assert order_numbers(analysis) == ["A2026-0042"]


def test_angry_complaint_demanding_immediate_action_is_urgent_with_reasons(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("我要投诉！你们太过分了，马上给我处理！！")

    assert analysis.intent == "complaint"
    assert analysis.priority is Priority.urgent
    codes = [reason.code for reason in analysis.reasons]
    assert codes[:1] == ["intent_default"]
    assert {"anger", "escalation_threat", "urgency", "exclamation"} <= set(codes)
    assert analysis.sentiment.label == "negative" and analysis.sentiment.angry


def test_caller_asking_for_a_person_gets_human_agent_in_either_language(analyzer: Analyzer) -> None:
    assert analyzer.analyze("给我转人工").intent == "human_agent"
    assert analyzer.analyze("I want to talk to a real person please").intent == "human_agent"


def test_greeting_is_recognised_and_suggests_low_priority(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("您好，在吗？")

    assert analysis.intent == "greeting"
    assert analysis.priority is Priority.low


def test_a_question_that_opens_with_a_greeting_is_about_the_question(analyzer: Analyzer) -> None:
    assert analyzer.analyze("你好，我要开发票").intent == "invoice"
    assert analyzer.analyze("hello, I need to cancel my order").intent == "cancel_order"


def test_off_topic_chat_gives_unknown_not_a_guess(analyzer: Analyzer) -> None:
    for text in ("今天天气怎么样", "tell me a joke", "我家狗狗会跳舞"):
        analysis = analyzer.analyze(text)
        assert analysis.intent == "unknown", (text, analysis.alternatives)
        assert analysis.confidence == 0.0
        assert analysis.unknown_reason is not None


def test_unknown_still_lists_the_top_three_alternatives_best_first(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("今天天气怎么样")

    assert len(analysis.alternatives) == 3
    scores = [candidate.confidence for candidate in analysis.alternatives]
    assert scores == sorted(scores, reverse=True)
    assert all(candidate.intent != "unknown" for candidate in analysis.alternatives)


def test_mixed_chinese_and_english_is_detected_and_understood(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("我想 return 这个 order，尺码不对")

    assert analysis.language == "mixed"
    assert analysis.intent == "return_request"


def test_product_names_do_not_make_chinese_text_mixed(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("我的iPhone 15坏了，能修吗")

    assert analysis.language == "zh"
    assert analysis.intent == "repair"
    assert [e.value for e in analysis.entities_of(EntityKind.product)] == ["iPhone 15"]


def test_caller_hint_overrides_language_detection(analyzer: Analyzer) -> None:
    assert analyzer.analyze("ok", language="zh").language == "zh"


def test_analysis_is_plain_json_and_round_trips(analyzer: Analyzer, now: dt.datetime) -> None:
    analysis = analyzer.analyze(
        "我要退货，订单号 12345，明天上午联系我 13812345678", now=now, recent_contacts=2
    )

    payload = json.loads(json.dumps(analysis.model_dump(mode="json"), ensure_ascii=False))

    assert payload["intent"] == "return_request"
    assert payload["priority"] == "normal"
    assert {entity["kind"] for entity in payload["entities"]} == {"order_number", "date", "phone"}
    assert Analysis.model_validate(payload) == analysis


def test_traditional_characters_still_match_simplified_keywords(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("發票抬頭寫錯了")

    assert analysis.intent == "invoice"
