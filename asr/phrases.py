"""Transcript text: normalising engine output and comparing it with expected phrases."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# A space between two CJK characters is an artefact of word-segmented models (vosk zh): "我 要 退货".
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_SPACES = re.compile(r"\s+")
_PUNCTUATION_CATEGORIES = ("P", "S")


def tidy(text: str, language: str) -> str:
    """Engine output as people write it: single spaces, none between Chinese characters."""
    text = _SPACES.sub(" ", text).strip()
    if language.startswith("zh"):
        text = _SPACE_BETWEEN_CJK.sub("", text)
    return text


def comparable(text: str) -> str:
    """Lower case, without spaces or punctuation, width-folded: what a spoken comparison looks at."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return "".join(
        char
        for char in folded
        if not char.isspace() and not unicodedata.category(char).startswith(_PUNCTUATION_CATEGORIES)
    )


def edit_distance(reference: str, hypothesis: str) -> int:
    """Levenshtein distance in characters."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_char in enumerate(reference, 1):
        current = [i]
        for j, hyp_char in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_char != hyp_char)))
        previous = current
    return previous[-1]


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Edits per reference character, ignoring spaces, punctuation and case (0.0 is a perfect match)."""
    ref, hyp = comparable(reference), comparable(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def closest_phrase(text: str, phrases: Sequence[str], max_error: float = 0.34) -> str | None:
    """The phrase ``text`` says (grammar mode): the longest phrase it contains, else the closest one within
    ``max_error`` CER, else None."""
    said = comparable(text)
    if not said:
        return None
    contained = [phrase for phrase in phrases if comparable(phrase) and comparable(phrase) in said]
    if contained:
        return max(contained, key=lambda phrase: len(comparable(phrase)))
    scored = sorted((character_error_rate(phrase, text), index) for index, phrase in enumerate(phrases))
    if not scored or scored[0][0] > max_error:
        return None
    return phrases[scored[0][1]]
