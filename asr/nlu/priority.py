"""Sentiment and urgency → a priority suggestion with reasons a person can read (zh and en).

Signals and their points: anger words or emoji 3; threats to escalate (投诉, 12315, 曝光, lawyer) 3; urgency
words (马上, 立刻, ASAP) 2; negative words 1; two or more exclamation marks 1; shouting (mostly capital
letters) 1; repeated contact 1 for a second or third contact within the window, 2 from the fourth. Calm
phrases (不急, "no rush") remove the urgency words they contain. The intent's default priority (nlu.yaml
``intent_priority``) is the starting level; 2–3 points raise it one level, 4–5 two levels, 6 or more three
levels, never above ``urgent``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .config import SentimentLexicon
from .models import Priority, Reason, Sentiment

ANGER_POINTS = 3
ESCALATION_POINTS = 3
URGENCY_POINTS = 2
NEGATIVE_POINTS = 1
EXCLAMATION_POINTS = 1
SHOUTING_POINTS = 1
_EXCLAMATIONS = re.compile(r"[!！]")
_UPPER_WORD = re.compile(r"(?<![A-Za-z])[A-Z]{3,}(?![A-Za-z])")
_LATIN_LETTER = re.compile("[A-Za-z]")
_UPPER_LETTER = re.compile("[A-Z]")


class _WordList:
    """Finds listed words: Chinese and emoji anywhere, English as whole words (case-insensitive)."""

    def __init__(self, words: list[str]) -> None:
        latin = [
            word for word in words if re.fullmatch(r"[A-Za-z0-9' -]+", word) and re.search("[A-Za-z]", word)
        ]
        alternatives = "|".join(re.escape(word) for word in sorted(latin, key=len, reverse=True))
        # A listed English word must not be part of a longer English word; a Chinese character right next
        # to it is fine (我要complain).
        self._latin = re.compile(f"(?<![A-Za-z])(?:{alternatives})(?![A-Za-z])", re.I) if latin else None
        self._other = [word for word in words if word not in latin]

    def find(self, text: str) -> list[str]:
        found = [word for word in self._other if word in text]
        if self._latin is not None:
            found += [match.group().lower() for match in self._latin.finditer(text)]
        return list(dict.fromkeys(found))


def _joined(words: list[str], separator: str) -> str:
    return separator.join(words[:5])


@dataclass(frozen=True, slots=True)
class PriorityAssessment:
    sentiment: Sentiment
    priority: Priority
    reasons: list[Reason]


class PriorityRules:
    """Scores a text; built once from the sentiment lexicon, then read-only."""

    def __init__(self, lexicon: SentimentLexicon) -> None:
        self._anger = _WordList(lexicon.anger)
        self._negative = _WordList(lexicon.negative)
        self._positive = _WordList(lexicon.positive)
        self._urgency = _WordList(lexicon.urgency)
        self._escalation = _WordList(lexicon.escalation)
        self._calm = _WordList(lexicon.calm)

    def assess(
        self, text: str, *, base: Priority, base_label: tuple[str, str], recent_contacts: int
    ) -> PriorityAssessment:
        """``base`` is the intent's default priority (``base_label`` its zh/en name for the reason text);
        ``recent_contacts`` how many times this customer got in touch recently before this message."""
        lowered = text.lower()
        calm = self._calm.find(lowered)
        without_calm = lowered
        for phrase in calm:
            without_calm = without_calm.replace(phrase.lower(), " ")
        anger = self._anger.find(text)
        escalation = self._escalation.find(lowered)
        urgency = self._urgency.find(without_calm)
        negative = [word for word in self._negative.find(lowered) if word not in anger]
        positive = self._positive.find(lowered)
        exclamations = len(_EXCLAMATIONS.findall(text))
        shouting = self._is_shouting(text)

        points = 0
        reasons: list[Reason] = []
        if base is not Priority.normal:
            zh_name, en_name = base_label
            reasons.append(
                Reason(
                    code="intent_default",
                    zh=f"「{zh_name}」默认优先级为{_LEVEL_ZH[base]}",
                    en=f"{en_name} starts at {base.value} priority",
                )
            )
        if anger:
            points += ANGER_POINTS
            reasons.append(
                Reason(
                    code="anger",
                    zh=f"愤怒用语：{_joined(anger, '、')}",
                    en=f"Angry wording: {_joined(anger, ', ')}",
                )
            )
        if escalation:
            points += ESCALATION_POINTS
            reasons.append(
                Reason(
                    code="escalation_threat",
                    zh=f"投诉或升级意图：{_joined(escalation, '、')}",
                    en=f"Threatens to complain or escalate: {_joined(escalation, ', ')}",
                )
            )
        if urgency:
            points += URGENCY_POINTS
            reasons.append(
                Reason(
                    code="urgency",
                    zh=f"催促用语：{_joined(urgency, '、')}",
                    en=f"Asks for speed: {_joined(urgency, ', ')}",
                )
            )
        if negative:
            points += NEGATIVE_POINTS
            reasons.append(
                Reason(
                    code="negative",
                    zh=f"负面情绪：{_joined(negative, '、')}",
                    en=f"Negative wording: {_joined(negative, ', ')}",
                )
            )
        if exclamations >= 2:
            points += EXCLAMATION_POINTS
            reasons.append(
                Reason(
                    code="exclamation", zh=f"{exclamations} 个感叹号", en=f"{exclamations} exclamation marks"
                )
            )
        if shouting:
            points += SHOUTING_POINTS
            reasons.append(
                Reason(code="shouting", zh="大写字母（喊叫）", en="Written in capitals (shouting)")
            )
        if recent_contacts >= 1:
            points += 2 if recent_contacts >= 3 else 1
            reasons.append(
                Reason(
                    code="repeated_contact",
                    zh=f"近期已联系 {recent_contacts} 次",
                    en=f"Contacted us {recent_contacts} time{'s' if recent_contacts > 1 else ''} recently",
                )
            )
        if calm and not urgency:
            reasons.append(
                Reason(
                    code="calm",
                    zh=f"表示不急：{_joined(calm, '、')}",
                    en=f"Says it can wait: {_joined(calm, ', ')}",
                )
            )

        steps = 0 if points < 2 else 1 if points < 4 else 2 if points < 6 else 3
        priority = list(Priority)[min(base.rank + steps, Priority.urgent.rank)]
        return PriorityAssessment(
            sentiment=self._sentiment(
                len(anger), len(escalation), len(negative), len(positive), exclamations
            ),
            priority=priority,
            reasons=reasons,
        )

    @staticmethod
    def _is_shouting(text: str) -> bool:
        """Mostly capital letters (60 % of the English letters) in at least two words of three or more
        letters: "WHERE IS MY REFUND", not "a VAT invoice by SMS"."""
        letters = len(_LATIN_LETTER.findall(text))
        return len(_UPPER_WORD.findall(text)) >= 2 and len(_UPPER_LETTER.findall(text)) >= 0.6 * letters

    @staticmethod
    def _sentiment(anger: int, escalation: int, negative: int, positive: int, exclamations: int) -> Sentiment:
        negativity = (
            0.45 * anger + 0.3 * escalation + 0.2 * negative + (0.1 if exclamations >= 2 and anger else 0)
        )
        score = max(-1.0, min(1.0, 0.25 * positive - negativity))
        label: Literal["negative", "neutral", "positive"] = (
            "negative" if score <= -0.15 else "positive" if score >= 0.15 else "neutral"
        )
        return Sentiment(label=label, score=round(score, 3), angry=anger > 0)


_LEVEL_ZH = {Priority.low: "低", Priority.normal: "普通", Priority.high: "高", Priority.urgent: "紧急"}
