"""Text normalisation and language detection: what every later step (segmentation, model, rules, entities)
sees. Pure functions, no state.

Normalisation, in order: truncate to ``max_chars`` (first, so a 10 MB input costs no more than a short one);
Unicode NFKC (full-width letters, digits and punctuation become ASCII); control, format and lone-surrogate
characters removed; runs of whitespace collapsed; spaces between two Chinese characters removed (ASR engines
and some keyboards space every character: "我 要 退 货"); digit-by-digit readings turned into digits
(一二三四五 → 12345, "one two three four" → 1234). Case is kept (shouting is a signal).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .models import Language
from .numerals import digit_readings_to_ascii

HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN_CHAR = re.compile(f"[{HAN}]")
_SPACE_BETWEEN_HAN = re.compile(f"(?<=[{HAN}]) (?=[{HAN}])")
_WHITESPACE = re.compile(r"\s+")
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
# The minority language must carry at least this share of the words for the text to count as mixed.
MIXED_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class NormalisedText:
    text: str
    truncated: bool
    original_length: int


def normalise(raw: str, max_chars: int) -> NormalisedText:
    """Normalise ``raw`` as described in the module docstring; never slower than ``max_chars`` allows."""
    original_length = len(raw)
    truncated = original_length > max_chars
    text = raw[:max_chars] if truncated else raw
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" or ch in "\t\n\r" else "" for ch in text)
    text = _WHITESPACE.sub(" ", text).strip()
    text = _SPACE_BETWEEN_HAN.sub("", text)
    text = digit_readings_to_ascii(text)
    return NormalisedText(text=text, truncated=truncated, original_length=original_length)


def has_words(text: str) -> bool:
    """True when the text has a Chinese character or a Latin letter: something a classifier can read."""
    return bool(_HAN_CHAR.search(text) or _LATIN_WORD.search(text))


def word_count(text: str) -> float:
    """Roughly how many words: English words plus Chinese characters / 1.5 (a Chinese word is about
    1.5 characters)."""
    return len(_LATIN_WORD.findall(text)) + len(_HAN_CHAR.findall(text)) / 1.5


def detect_language(text: str, ignore_words: frozenset[str] = frozenset()) -> Language | None:
    """``zh``, ``en`` or ``mixed`` by the share of Chinese characters and English words; English words in
    ``ignore_words`` (lower case; product names such as iPhone) do not count. ``None`` without letters."""
    han = len(_HAN_CHAR.findall(text))
    english = sum(1 for word in _LATIN_WORD.findall(text) if word.lower() not in ignore_words)
    if han == 0 and english == 0:
        ignored = any(word.lower() in ignore_words for word in _LATIN_WORD.findall(text))
        return "en" if ignored else None
    han_words = han / 1.5  # as in word_count
    minority = min(han_words, english) / (han_words + english)
    if minority >= MIXED_SHARE:
        return "mixed"
    return "zh" if han_words > english else "en"
