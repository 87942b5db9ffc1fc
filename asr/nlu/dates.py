"""Dates people say, resolved to calendar dates relative to "today" in the customer's time zone.

Chinese: 今天 明天 后天 大后天 昨天 前天 · 下周一 / 下星期一 / 下礼拜一 (that weekday of next week, weeks
start on Monday) · 这周五 / 本周五 (that weekday of this week) · 周五 / 星期五 (the next one, today included)
· 上周三 · 三天后 / 3天以后 / 两天前 · 11月25日 / 十一月二十五号 / 2026年11月25日 · 25号 (this month).
English: today tomorrow yesterday, "the day after tomorrow", "next Monday" (Monday of next week, as in
Chinese), "this Friday", "last Tuesday", "Friday" / "on Friday" (the next one, today included), "in 3 days",
"two days ago", "November 25" / "Nov 25th, 2026" / "25 November", and ISO ``2026-11-25`` (also with ``/``
or ``.``). A month and day without a year are in the current year. Impossible dates (2月30日) are skipped;
numeric day/month orders such as 11/25 are ambiguous and not read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .numerals import parse_chinese_integer, parse_english_number

_CN_NUM = "[0-9零〇一二两三四五六七八九十]"
_WEEKDAYS_ZH = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_WEEKDAYS_EN = {
    name: index
    for index, name in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    )
}
_MONTHS_EN = {
    name: index + 1
    for index, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        )
    )
    for name in names
}
_RELATIVE_DAYS = {
    "大前天": -3,
    "前天": -2,
    "昨天": -1,
    "昨日": -1,
    "今天": 0,
    "今日": 0,
    "今晚": 0,
    "明天": 1,
    "明日": 1,
    "明早": 1,
    "明晚": 1,
    "后天": 2,
    "大后天": 3,
    "the day before yesterday": -2,
    "day before yesterday": -2,
    "yesterday": -1,
    "today": 0,
    "tonight": 0,
    "the day after tomorrow": 2,
    "day after tomorrow": 2,
    "tomorrow": 1,
}
_ENGLISH_COUNT = (
    r"\d{1,3}|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fourteen|twenty|thirty"
)
_MONTH_NAME = "|".join(sorted(_MONTHS_EN, key=len, reverse=True))
_WEEKDAY_NAME = "|".join(_WEEKDAYS_EN)


@dataclass(frozen=True, slots=True)
class FoundDate:
    start: int
    end: int
    value: dt.date


def _date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _week_start(today: dt.date) -> dt.date:
    return today - dt.timedelta(days=today.weekday())


def _weekday(today: dt.date, weekday: int, which: str) -> dt.date:
    """``which``: ``next``, ``this``, ``last`` or ``after_next`` week, or ``coming``: the next occurrence,
    today included."""
    if which == "coming":
        return today + dt.timedelta(days=(weekday - today.weekday()) % 7)
    weeks = {"next": 1, "this": 0, "last": -1, "after_next": 2}[which]
    return _week_start(today) + dt.timedelta(weeks=weeks, days=weekday)


Resolver = Callable[[re.Match[str], dt.date], dt.date | None]


def _iso(match: re.Match[str], today: dt.date) -> dt.date | None:
    return _date(int(match["y"]), int(match["m"]), int(match["d"]))


def _zh_month_day(match: re.Match[str], today: dt.date) -> dt.date | None:
    year = parse_chinese_integer(match["y"]) if match["y"] else today.year
    if year is not None and year < 100:
        year += 2000
    month, day = parse_chinese_integer(match["m"]), parse_chinese_integer(match["d"])
    if year is None or month is None or day is None:
        return None
    return _date(year, month, day)


def _zh_day_of_month(match: re.Match[str], today: dt.date) -> dt.date | None:
    day = parse_chinese_integer(match["d"])
    return _date(today.year, today.month, day) if day is not None else None


def _relative_day(match: re.Match[str], today: dt.date) -> dt.date | None:
    return today + dt.timedelta(days=_RELATIVE_DAYS[match.group().lower()])


def _zh_weekday(match: re.Match[str], today: dt.date) -> dt.date | None:
    which = {"下下": "after_next", "下": "next", "这": "this", "本": "this", "上": "last", "": "coming"}
    return _weekday(today, _WEEKDAYS_ZH[match["w"]], which[match["which"] or ""])


def _zh_days_offset(match: re.Match[str], today: dt.date) -> dt.date | None:
    count = parse_chinese_integer(match["n"])
    if count is None:
        return None
    sign = -1 if match["dir"] in ("前", "以前", "之前") else 1
    return today + dt.timedelta(
        days=sign * count * (7 if match["unit"] in ("周", "星期", "个星期", "礼拜") else 1)
    )


def _en_weekday(match: re.Match[str], today: dt.date) -> dt.date | None:
    which = {"next": "next", "this": "this", "last": "last", "coming": "coming", None: "coming"}
    return _weekday(today, _WEEKDAYS_EN[match["w"].lower()], which[match["which"] and match["which"].lower()])


def _en_offset(match: re.Match[str], today: dt.date) -> dt.date | None:
    """Offsets in English: "in 3 days", "two weeks from now", "3 days ago"."""
    words = match["n"] or match["n2"]
    count = (
        1 if words.lower() in ("a", "an") else int(words) if words.isdigit() else parse_english_number(words)
    )
    if count is None:
        return None
    unit = match["unit"] or match["unit2"]
    days = count * (7 if unit.lower().startswith("week") else 1)
    return today + dt.timedelta(days=-days if (match["dir2"] or "").lower() == "ago" else days)


def _en_month_day(match: re.Match[str], today: dt.date) -> dt.date | None:
    month = _MONTHS_EN[match["m"].lower()]
    return _date(int(match["y"]) if match["y"] else today.year, month, int(match["d"]))


# Patterns may overlap ("2026年12月1号" also holds "1号"); the entity extractor keeps the longest span.
_PATTERNS: list[tuple[re.Pattern[str], Resolver]] = [
    (re.compile(r"(?<!\d)(?P<y>20\d{2})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?!\d)"), _iso),
    (
        re.compile(
            rf"(?:(?P<y>(?:20)?\d{{2}}|二〇[一二三四五六七八九〇零]{{2}})年)?(?P<m>{_CN_NUM}{{1,3}})月"
            rf"(?P<d>{_CN_NUM}{{1,3}})[日号]"
        ),
        _zh_month_day,
    ),
    (
        re.compile(r"(?P<which>下下|下|这|本|上)?(?:个)?(?:周|星期|礼拜)(?P<w>[一二三四五六日天1-7])"),
        _zh_weekday,
    ),
    (
        re.compile(
            rf"(?P<n>{_CN_NUM}{{1,3}})(?P<unit>天|日|周|个星期|星期|礼拜)(?P<dir>以后|之后|后|以前|之前|前)"
        ),
        _zh_days_offset,
    ),
    (re.compile(r"大后天|大前天|后天|前天|昨天|昨日|今天|今日|今晚|明天|明日|明早|明晚"), _relative_day),
    (
        re.compile(r"(?<![0-9月])(?P<d>[0-9]{1,2}|[一二三四五六七八九十]{1,3})号(?![楼线门店房机码])"),
        _zh_day_of_month,
    ),
    (
        re.compile(
            r"\b(?:the day before yesterday|day before yesterday|the day after tomorrow|day after tomorrow|"
            r"yesterday|today|tonight|tomorrow)\b",
            re.IGNORECASE,
        ),
        _relative_day,
    ),
    (
        re.compile(rf"\b(?:(?P<which>next|this|last|coming)\s+)?(?P<w>{_WEEKDAY_NAME})\b", re.IGNORECASE),
        _en_weekday,
    ),
    (
        re.compile(
            rf"\b(?:in\s+(?P<n>{_ENGLISH_COUNT})\s+(?P<unit>days?|weeks?)|(?P<n2>{_ENGLISH_COUNT})\s+"
            rf"(?P<unit2>days?|weeks?)\s+(?P<dir2>ago|later|from now))\b",
            re.IGNORECASE,
        ),
        _en_offset,
    ),
    (
        re.compile(
            rf"\b(?P<m>{_MONTH_NAME})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y>20\d{{2}})\b)?",
            re.IGNORECASE,
        ),
        _en_month_day,
    ),
    (
        re.compile(
            rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<m>{_MONTH_NAME})\b(?:,?\s+(?P<y>20\d{{2}})\b)?",
            re.IGNORECASE,
        ),
        _en_month_day,
    ),
]


def find_dates(text: str, today: dt.date) -> Iterator[FoundDate]:
    """Every date expression in ``text`` (overlaps included; the caller keeps the longest)."""
    for pattern, resolve in _PATTERNS:
        for match in pattern.finditer(text):
            value = resolve(match, today)
            if value is not None:
                yield FoundDate(match.start(), match.end(), value)
