"""Order numbers, phone numbers, dates, amounts and products as customers say or type them."""

from __future__ import annotations

import datetime as dt

import pytest

from asr.nlu import Analyzer, EntityKind
from asr.nlu.numerals import parse_chinese_integer, parse_english_number, parse_number


def values(analyzer: Analyzer, text: str, kind: EntityKind, now: dt.datetime | None = None) -> list[str]:
    return [entity.value for entity in analyzer.analyze(text, now=now).entities_of(kind)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我要退货，订单号 12345", ["12345"]),
        ("订单号是：88990，帮我查查", ["88990"]),
        ("我的订单编号为A2026-0042", ["A2026-0042"]),
        ("order #A2026-0042 hasn't arrived", ["A2026-0042"]),
        ("my order number is 77412", ["77412"]),
        ("tracking number: sf1234567890", ["SF1234567890"]),
        ("订单号 一 二 三 四 五", ["12345"]),  # ASR reads digits one by one, with spaces
        ("订单号幺三五七九", ["13579"]),
        ("order number one two three four five", ["12345"]),
        ("order number 1 2 3 4 5 please", ["12345"]),
        ("please check #B1120-3344", ["B1120-3344"]),
        ("我买了两个东西", []),
        ("please reorder 12345", []),
        ("refund12345", []),
        ("订单3天了还没到", []),
    ],
)
def test_order_numbers(analyzer: Analyzer, text: str, expected: list[str]) -> None:
    assert values(analyzer, text, EntityKind.order_number) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的电话13812345678", ["+8613812345678"]),
        ("手机 138 1234 5678，打给我", ["+8613812345678"]),
        ("座机 010-62345678", ["+861062345678"]),
        ("call me at +1 415 555 2671", ["+14155552671"]),
        ("电话幺三八一二三四五六七八", ["+8613812345678"]),
        ("订单号13812345678", []),  # after an order cue the digits are the order number
        ("我付了199元", []),
    ],
)
def test_phone_numbers_are_e164_with_china_as_default_region(
    analyzer: Analyzer, text: str, expected: list[str]
) -> None:
    assert values(analyzer, text, EntityKind.phone) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("今天能到吗", ["2026-11-25"]),
        ("明天送货", ["2026-11-26"]),
        ("后天吧", ["2026-11-27"]),
        ("昨天签收的", ["2026-11-24"]),
        ("下周一送过来", ["2026-11-30"]),
        ("下星期三可以吗", ["2026-12-02"]),
        ("这周五", ["2026-11-27"]),
        ("周五送", ["2026-11-27"]),
        ("星期二来修", ["2026-12-01"]),  # the coming Tuesday, since this week's is past
        ("上周三买的", ["2026-11-18"]),
        ("11月25日下的单", ["2026-11-25"]),
        ("十二月三号送到", ["2026-12-03"]),
        ("2026年12月1号", ["2026-12-01"]),
        ("2026-11-25 买的", ["2026-11-25"]),
        ("2026/12/01", ["2026-12-01"]),
        ("三天后再联系", ["2026-11-28"]),
        ("28号送", ["2026-11-28"]),
        ("today please", ["2026-11-25"]),
        ("deliver tomorrow", ["2026-11-26"]),
        ("the day after tomorrow", ["2026-11-27"]),
        ("next Monday works", ["2026-11-30"]),
        ("this Friday", ["2026-11-27"]),
        ("on Friday", ["2026-11-27"]),
        ("last Tuesday", ["2026-11-17"]),
        ("in 3 days", ["2026-11-28"]),
        ("two weeks ago", ["2026-11-11"]),
        ("November 25", ["2026-11-25"]),
        ("Dec 3rd, 2026", ["2026-12-03"]),
        ("3 December", ["2026-12-03"]),
        ("2月30日", []),  # no such day: skipped, not guessed
        ("3号楼", []),
    ],
)
def test_dates_resolve_relative_to_now_in_the_customers_time_zone(
    analyzer: Analyzer, now: dt.datetime, text: str, expected: list[str]
) -> None:
    assert values(analyzer, text, EntityKind.date, now) == expected


def test_today_is_taken_in_the_configured_time_zone_not_utc(analyzer: Analyzer) -> None:
    # 20:00 UTC on the 25th is already 04:00 on the 26th in Shanghai.
    late_utc = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.UTC)

    assert values(analyzer, "今天", EntityKind.date, late_utc) == ["2026-11-26"]
    in_new_york = analyzer.analyze("today", now=late_utc, timezone="America/New_York")
    assert [e.value for e in in_new_york.entities_of(EntityKind.date)] == ["2026-11-25"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("¥199", [("199", "CNY")]),
        ("退我199元", [("199", "CNY")]),
        ("两百块", [("200", "CNY")]),
        ("一百九十九块钱", [("199", "CNY")]),
        ("三块五", [("3.50", "CNY")]),
        ("一千二百元", [("1200", "CNY")]),
        ("1.5万元", [("15000", "CNY")]),
        ("$20.50 twice", [("20.50", "USD")]),
        ("20 dollars", [("20", "USD")]),
        ("two hundred dollars", [("200", "USD")]),
        ("USD 1,299.00", [("1299", "USD")]),
        ("50美元", [("50", "USD")]),
        ("€30", [("30", "EUR")]),
        ("我们一块去吧", []),
    ],
)
def test_amounts_have_a_number_and_a_currency(
    analyzer: Analyzer, text: str, expected: list[tuple[str, str]]
) -> None:
    amounts = analyzer.analyze(text).entities_of(EntityKind.amount)
    assert [(entity.value, entity.currency) for entity in amounts] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的扫地机坏了", ["扫地机器人"]),
        ("iphone15 屏幕碎了", ["iPhone 15"]),
        ("my Robot Vacuum stopped", ["扫地机器人"]),
        ("滚筒洗衣机和电冰箱都要修", ["洗衣机", "冰箱"]),
        ("我的手机坏了", []),
    ],
)
def test_products_come_from_the_user_dictionary_with_their_canonical_name(
    analyzer: Analyzer, text: str, expected: list[str]
) -> None:
    assert values(analyzer, text, EntityKind.product) == expected


def test_entity_spans_index_the_normalised_text(analyzer: Analyzer, now: dt.datetime) -> None:
    analysis = analyzer.analyze("订单号 12345，下周一送，电话 13812345678，退我 ¥199", now=now)

    assert [entity.kind for entity in analysis.entities] == [
        EntityKind.order_number,
        EntityKind.date,
        EntityKind.phone,
        EntityKind.amount,
    ]
    for entity in analysis.entities:
        assert analysis.text[entity.start : entity.end] == entity.text


@pytest.mark.parametrize(
    ("numeral", "value"),
    [
        ("十五", 15),
        ("二十五", 25),
        ("两百五", 250),
        ("一千二", 1200),
        ("一百零五", 105),
        ("三万五", 35000),
        ("十万", 100000),
        ("一九九", 199),
        ("两", 2),
        ("零", 0),
        ("三四五六七", 34567),
        ("二十二三", None),
        ("", None),
    ],
)
def test_chinese_numerals_as_spoken(numeral: str, value: int | None) -> None:
    assert parse_chinese_integer(numeral) == value


def test_numbers_in_digits_words_and_mixed_forms() -> None:
    assert str(parse_number("三点五")) == "3.5"
    assert str(parse_number("1,299.50")) == "1299.50"
    assert parse_number("abc") is None
    assert parse_english_number("two hundred and fifty") == 250
    assert parse_english_number("a hundred") == 100
    assert parse_english_number("twenty-five") == 25
    assert parse_english_number("hundred apples") is None
