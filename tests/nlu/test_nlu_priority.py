"""Sentiment and urgency become a priority suggestion with reasons an agent can read in zh and en."""

from __future__ import annotations

from asr.nlu import Analyzer, Priority


def codes(analyzer: Analyzer, text: str, recent_contacts: int = 0) -> list[str]:
    return [reason.code for reason in analyzer.analyze(text, recent_contacts=recent_contacts).reasons]


def test_a_calm_question_is_normal_priority_without_reasons(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("请问我的订单到哪了")

    assert analysis.priority is Priority.normal
    assert analysis.reasons == []
    assert analysis.sentiment.label == "neutral" and not analysis.sentiment.angry


def test_threatening_to_complain_raises_priority_and_says_why_in_both_languages(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("再不给我退款我就去12315投诉")

    assert analysis.intent == "refund"
    assert analysis.priority is Priority.high
    (reason,) = [r for r in analysis.reasons if r.code == "escalation_threat"]
    assert "12315" in reason.zh and "投诉" in reason.zh
    assert reason.en.startswith("Threatens to complain or escalate")


def test_asking_for_speed_alone_raises_one_level(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("麻烦马上帮我查一下物流")

    assert analysis.priority is Priority.high
    assert codes(analyzer, "麻烦马上帮我查一下物流") == ["urgency"]
    assert "马上" in analysis.reasons[0].zh


def test_saying_it_is_not_urgent_cancels_the_urgency_word_inside_it(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("不着急，有空帮我看下发票")

    assert "urgency" not in [reason.code for reason in analysis.reasons]
    assert "calm" in [reason.code for reason in analysis.reasons]
    assert analysis.priority is Priority.low  # invoice starts low and nothing raised it


def test_repeated_contact_is_a_reason_and_escalates_from_the_fourth_contact(analyzer: Analyzer) -> None:
    once = analyzer.analyze("我的订单到哪了", recent_contacts=1)
    fourth = analyzer.analyze("我的订单到哪了", recent_contacts=3)

    assert once.priority is Priority.normal
    assert [r.code for r in once.reasons] == ["repeated_contact"]
    assert fourth.priority is Priority.high
    assert fourth.reasons[0].zh == "近期已联系 3 次"
    assert fourth.reasons[0].en == "Contacted us 3 times recently"


def test_shouting_in_capitals_with_exclamations_and_anger_is_urgent(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("WHERE IS MY REFUND!!! This is RIDICULOUS")

    assert analysis.intent == "refund"
    assert {"shouting", "exclamation", "anger"} <= {reason.code for reason in analysis.reasons}
    assert analysis.priority is Priority.urgent
    assert analysis.sentiment.score < -0.3


def test_short_capital_codes_are_not_shouting(analyzer: Analyzer) -> None:
    assert "shouting" not in codes(analyzer, "I need a VAT invoice for my SMS plan, OK?")


def test_a_complaint_starts_high_and_an_angry_one_becomes_urgent(analyzer: Analyzer) -> None:
    plain = analyzer.analyze("我要投诉你们的快递员")
    angry = analyzer.analyze("你们这帮骗子，我要投诉你们的快递员，气死我了")

    assert plain.intent == angry.intent == "complaint"
    assert plain.priority is Priority.urgent or plain.priority is Priority.high
    assert angry.priority is Priority.urgent
    assert angry.sentiment.angry


def test_thanks_read_as_positive(analyzer: Analyzer) -> None:
    analysis = analyzer.analyze("好的，非常感谢，辛苦了")

    assert analysis.sentiment.label == "positive"
    assert analysis.priority is Priority.low
