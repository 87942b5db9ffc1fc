"""Entities in a normalised text: order numbers, phone numbers (E.164), dates, amounts and products.

Each finder proposes spans; where spans overlap the more specific kind wins (an order number over a phone
number: a cue such as 订单号 / "order number" says what the digits are), then the longer span.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import phonenumbers

from .config import Product
from .dates import find_dates
from .models import Entity, EntityKind
from .numerals import CHINESE_NUMERAL_CHARS, parse_english_number, parse_number

_PRECEDENCE = [
    EntityKind.order_number,
    EntityKind.phone,
    EntityKind.amount,
    EntityKind.date,
    EntityKind.product,
]

_ORDER_CUE = (
    r"(?:订单编号|订单号码|订单号|运单号|快递单号|物流单号|退货单号|单号|订单|"
    r"(?<![A-Za-z])(?:order\s*(?:number|no\.?|id|#)?|tracking\s*(?:number|no\.?)?|reference\s*(?:number|no\.?)?"
    r"|ref\.?)(?![A-Za-z]))"
)
# ASR spaces digit by digit ("1 2 3 4 5"); otherwise an id is up to 4 letters, then digits, letters, dashes.
_ORDER_ID = r"(?P<id>\d(?: \d){3,}(?!\d)|[A-Za-z]{0,4}-?\d[0-9A-Za-z-]{2,30})"
_ORDER_PATTERNS = [
    re.compile(
        rf"{_ORDER_CUE}\s*(?:是|为|:|#|is|number|no\.?)?\s*(?:是|:)?\s*#?\s*{_ORDER_ID}", re.IGNORECASE
    ),
    re.compile(r"#\s?(?P<id>[A-Za-z0-9][A-Za-z0-9-]{3,30})"),
    re.compile(r"(?<![A-Za-z0-9])(?P<id>[A-Za-z]{1,4}\d{2,}-\d{2,})(?![A-Za-z0-9])"),
]

_CURRENCIES = {
    "¥": "CNY",
    "rmb": "CNY",
    "cny": "CNY",
    "元": "CNY",
    "圆": "CNY",
    "块": "CNY",
    "块钱": "CNY",
    "人民币": "CNY",
    "yuan": "CNY",
    "kuai": "CNY",
    "$": "USD",
    "us$": "USD",
    "usd": "USD",
    "dollar": "USD",
    "dollars": "USD",
    "buck": "USD",
    "bucks": "USD",
    "美元": "USD",
    "美金": "USD",
    "刀": "USD",
    "€": "EUR",
    "eur": "EUR",
    "euro": "EUR",
    "euros": "EUR",
    "欧元": "EUR",
    "£": "GBP",
    "gbp": "GBP",
    "pound": "GBP",
    "pounds": "GBP",
    "英镑": "GBP",
    "hk$": "HKD",
    "hkd": "HKD",
    "港币": "HKD",
    "港元": "HKD",
    "日元": "JPY",
}
_ASCII_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_ENGLISH_NUMBER_WORD = (
    r"(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
    r"thousand|million)"
)
_AMOUNT_PATTERNS = [
    re.compile(
        rf"(?P<cur>us\$|hk\$|[¥$€£]|rmb|cny|usd|hkd|eur|gbp)\s?(?P<num>{_ASCII_NUMBER})", re.IGNORECASE
    ),
    re.compile(
        rf"(?P<num>(?:{_ASCII_NUMBER})万?|[{CHINESE_NUMERAL_CHARS}点]+)\s?"
        r"(?P<cur>块钱|块|元|圆|人民币|美元|美金|刀|欧元|港币|港元|英镑|日元)"
        r"(?:(?P<jiao>[一二两三四五六七八九1-9])(?:毛|角)?)?"
    ),
    re.compile(
        rf"(?<![\w.])(?P<num>{_ASCII_NUMBER}|(?:an?|{_ENGLISH_NUMBER_WORD})(?:[\s-]+(?:and\s+)?"
        rf"{_ENGLISH_NUMBER_WORD})*)\s?(?P<cur>yuan|kuai|rmb|cny|usd|dollars?|bucks?|euros?|pounds?|hkd)\b",
        re.IGNORECASE,
    ),
]
_JIAO = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


@dataclass(frozen=True, slots=True)
class _Span:
    kind: EntityKind
    start: int
    end: int
    value: str
    currency: str | None = None

    def overlaps(self, other: _Span) -> bool:
        return self.start < other.end and other.start < self.end


def _money(value: Decimal) -> str:
    """An amount as a plain decimal string: whole amounts without decimals (200), others in cents (3.50)."""
    if value == value.to_integral_value():
        return str(int(value))
    return str(value.quantize(Decimal("0.01")))


class EntityExtractor:
    """Finds entities; built once from the product list, then read-only and thread-safe."""

    def __init__(self, products: list[Product], phone_region: str = "CN") -> None:
        self._phone_region = phone_region
        self._products: list[tuple[re.Pattern[str], str]] = []
        for product in products:
            for alias in sorted({product.name, *product.aliases}, key=len, reverse=True):
                self._products.append((self._alias_pattern(alias), product.name))

    @staticmethod
    def _alias_pattern(alias: str) -> re.Pattern[str]:
        compact = alias.replace(" ", "")
        # Spaces are optional between any two characters: "iPhone 15", "iphone15", "i phone 15".
        body = r"\s?".join(re.escape(ch) for ch in compact)
        head = r"(?<![A-Za-z0-9])" if compact[0].isascii() and compact[0].isalnum() else ""
        tail = r"(?![A-Za-z0-9])" if compact[-1].isascii() and compact[-1].isalnum() else ""
        return re.compile(f"{head}{body}{tail}", re.IGNORECASE)

    def extract(self, text: str, today: dt.date) -> list[Entity]:
        """Entities in ``text`` in order of appearance; ``today`` anchors relative dates."""
        spans = [
            *self._order_numbers(text),
            *self._phones(text),
            *self._amounts(text),
            *(_Span(EntityKind.date, d.start, d.end, d.value.isoformat()) for d in find_dates(text, today)),
            *self._product_spans(text),
        ]
        spans.sort(key=lambda span: (_PRECEDENCE.index(span.kind), span.start - span.end, span.start))
        kept: list[_Span] = []
        for span in spans:
            if not any(span.overlaps(other) for other in kept):
                kept.append(span)
        kept.sort(key=lambda span: span.start)
        return [
            Entity(
                kind=span.kind,
                text=text[span.start : span.end],
                value=span.value,
                start=span.start,
                end=span.end,
                currency=span.currency,
            )
            for span in kept
        ]

    @staticmethod
    def _order_numbers(text: str) -> Iterator[_Span]:
        for pattern in _ORDER_PATTERNS:
            for match in pattern.finditer(text):
                raw = match["id"].rstrip("-")
                value = raw.replace(" ", "").upper()
                if sum(ch.isdigit() for ch in value) < 3:
                    continue
                # The whole cue + id is the span, so a phone finder cannot claim the id's digits.
                yield _Span(EntityKind.order_number, match.start(), match.start("id") + len(raw), value)

    def _phones(self, text: str) -> Iterator[_Span]:
        matcher = phonenumbers.PhoneNumberMatcher(
            text, self._phone_region, leniency=phonenumbers.Leniency.VALID
        )
        for match in matcher:
            e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            yield _Span(EntityKind.phone, match.start, match.end, e164)

    @staticmethod
    def _amounts(text: str) -> Iterator[_Span]:
        for pattern in _AMOUNT_PATTERNS:
            for match in pattern.finditer(text):
                number, unit = match["num"], match["cur"].lower()
                if unit == "块" and number == "一" and not match["jiao"]:
                    continue  # 一块 is also "together" (我们一块去)
                value = parse_number(number)
                if value is None:
                    english = parse_english_number(number)
                    value = Decimal(english) if english is not None else None
                if value is None:
                    continue
                if match.groupdict().get("jiao"):
                    jiao = match["jiao"]
                    value += Decimal(int(jiao) if jiao.isdigit() else _JIAO[jiao]) / 10
                yield _Span(EntityKind.amount, match.start(), match.end(), _money(value), _CURRENCIES[unit])

    def _product_spans(self, text: str) -> Iterator[_Span]:
        for pattern, name in self._products:
            for match in pattern.finditer(text):
                yield _Span(EntityKind.product, match.start(), match.end(), name)
