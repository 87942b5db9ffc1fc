"""Numbers as people say them: Chinese numerals (两百五, 一千二, 三点五), digit-by-digit readings
(一二三四五, 幺三八…, "one two three four five") and English number words ("twenty five")."""

from __future__ import annotations

import re
from decimal import Decimal

CHINESE_DIGITS = {
    "零": 0,
    "〇": 0,
    "洞": 0,
    "一": 1,
    "幺": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_SMALL_UNITS = {"十": 10, "百": 100, "千": 1000}
_LARGE_UNITS = {"万": 10_000, "亿": 100_000_000}
CHINESE_NUMERAL_CHARS = "".join(CHINESE_DIGITS) + "".join(_SMALL_UNITS) + "".join(_LARGE_UNITS)

# A digit-by-digit reading: at least four digit characters in a row (ASR spacing already removed), so that
# ordinary words such as 一二 or 三四天 stay as they are. 两 is a quantity word, never read digit by digit.
_DIGIT_READING = re.compile("[零〇洞一幺二三四五六七八九]{4,}")
_ENGLISH_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
# Four or more digit words in a row ("one two three four five"); "oh" may not start the run ("oh no").
_ENGLISH_DIGIT_READING = re.compile(
    r"\b(?:zero|one|two|three|four|five|six|seven|eight|nine)(?:[\s,-]+(?:zero|oh|one|two|three|four|five|six|"
    r"seven|eight|nine)\b){3,}",
    re.IGNORECASE,
)


def digit_readings_to_ascii(text: str) -> str:
    """Replace digit-by-digit readings with ASCII digits: 一二三四五 → 12345, "one two three four" → 1234."""
    text = _DIGIT_READING.sub(lambda match: "".join(str(CHINESE_DIGITS[ch]) for ch in match.group()), text)
    return _ENGLISH_DIGIT_READING.sub(
        lambda match: "".join(
            _ENGLISH_DIGIT_WORDS[word.lower()] for word in re.findall(r"[a-z]+", match.group(), re.I)
        ),
        text,
    )


def parse_chinese_integer(numeral: str) -> int | None:
    """Value of a Chinese integer numeral, with the spoken elision of a trailing unit (两百五 = 250,
    一千二 = 1200, 三万五 = 35000); ASCII digits pass through; ``None`` when it is not a numeral."""
    if numeral.isascii() and numeral.isdigit():
        return int(numeral)
    if not numeral or any(ch not in CHINESE_NUMERAL_CHARS for ch in numeral):
        return None
    if all(ch in CHINESE_DIGITS for ch in numeral) and len(numeral) > 1:
        return int("".join(str(CHINESE_DIGITS[ch]) for ch in numeral))
    total = section = 0
    digit: int | None = None
    last_unit = 0  # the unit right before a trailing digit, for the spoken elision
    for ch in numeral:
        if ch in CHINESE_DIGITS:
            if digit is not None and CHINESE_DIGITS[ch] != 0:
                return None  # two digits in a row inside a unit numeral: not a number
            digit = CHINESE_DIGITS[ch]
            if digit == 0:
                last_unit = 0
                digit = None
        elif ch in _SMALL_UNITS:
            section += (1 if digit is None else digit) * _SMALL_UNITS[ch]
            digit, last_unit = None, _SMALL_UNITS[ch]
        else:
            section += digit or 0
            unit = _LARGE_UNITS[ch]
            total = (total + section) * unit if unit > 10_000 else total + section * unit
            section, digit, last_unit = 0, None, unit
    if digit is not None:
        section += digit * (last_unit // 10 if last_unit >= 100 else 1)
    return total + section


def parse_number(text: str) -> Decimal | None:
    """A number written in ASCII digits (``1,299.50``), as a Chinese numeral (一百九十九, 三点五) or
    ASCII digits with 万/千 (``1.5万``); ``None`` otherwise."""
    text = text.strip()
    multiplier = 1
    if len(text) > 1 and text[-1] in "万千" and re.fullmatch(r"[\d.,]+[万千]", text):
        multiplier = 10_000 if text[-1] == "万" else 1000
        text = text[:-1]
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?", text):
        return Decimal(text.replace(",", "")) * multiplier
    whole, _, fraction = text.partition("点")
    integer = parse_chinese_integer(whole)
    if integer is None:
        return None
    if not fraction:
        return Decimal(integer)
    if any(ch not in CHINESE_DIGITS for ch in fraction):
        return None
    return Decimal(f"{integer}.{''.join(str(CHINESE_DIGITS[ch]) for ch in fraction)}")


_ENGLISH_UNITS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen".split()
    )
}
_ENGLISH_TENS = {
    word: 10 * (index + 2)
    for index, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())
}
_ENGLISH_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}


def parse_english_number(words: str) -> int | None:
    """Value of English number words ("two hundred and fifty", "a hundred", "twenty-five"); else ``None``."""
    tokens = [token for token in re.split(r"[\s-]+", words.lower().strip()) if token]
    if not tokens or tokens[-1] in ("a", "and"):
        return None
    total = current = 0
    seen_number = False
    for token in tokens:
        if token == "and" and seen_number:
            continue
        if token == "a" and not seen_number:
            current, seen_number = 1, True
        elif token in _ENGLISH_UNITS:
            current += _ENGLISH_UNITS[token]
            seen_number = True
        elif token in _ENGLISH_TENS:
            current += _ENGLISH_TENS[token]
            seen_number = True
        elif token in _ENGLISH_SCALES and seen_number:
            scale = _ENGLISH_SCALES[token]
            if scale == 100:
                current *= 100
            else:
                total += current * scale
                current = 0
        else:
            return None
    return total + current if seen_number else None
