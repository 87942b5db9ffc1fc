"""What the analyzer returns: typed, frozen, JSON-serialisable with ``model_dump(mode="json")``. No I/O."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

UNKNOWN_INTENT = "unknown"

Language = Literal["zh", "en", "mixed"]
"""``mixed`` when both Chinese and English carry a real share of the words (product names do not count)."""


class Priority(enum.StrEnum):
    """A suggestion for the queue, in rising order."""

    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"

    @property
    def rank(self) -> int:
        return list(Priority).index(self)


class EntityKind(enum.StrEnum):
    order_number = "order_number"
    phone = "phone"
    date = "date"
    amount = "amount"
    product = "product"


class UnknownReason(enum.StrEnum):
    """Why an analysis ended in ``unknown``; absent when an intent was recognised."""

    empty = "empty"  # nothing left after normalisation (empty, whitespace, control characters)
    no_words = "no_words"  # only punctuation, emoji, symbols or digits: nothing to classify
    out_of_scope = "out_of_scope"  # the model's best class is the trained out-of-scope class
    low_confidence = "low_confidence"  # best intent below the configured threshold


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(_Frozen):
    """A display label in both languages."""

    zh: str
    en: str


class IntentCandidate(_Frozen):
    intent: str
    label: Label
    confidence: float = Field(ge=0.0, le=1.0)


class KeywordMatch(_Frozen):
    """A keyword rule that fired. ``via`` is ``pinyin`` when it matched by sound only (an ASR homophone such
    as 退火 for 退货); ``heard`` is then what the text actually says."""

    keyword: str
    intent: str
    via: Literal["text", "pinyin"]
    heard: str


class Entity(_Frozen):
    """One entity found in the analysed text.

    ``start``/``end`` index ``Analysis.text`` (the normalised text), ``text`` is that slice and ``value`` the
    normalised value: the order id in upper case, a phone number in E.164, an ISO date (``YYYY-MM-DD``),
    an amount as a plain decimal string with ``currency`` (ISO 4217), a product's canonical name.
    """

    kind: EntityKind
    text: str
    value: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    currency: str | None = None


class Reason(_Frozen):
    """Why the priority is what it is, for a person to read, in both languages."""

    code: str
    zh: str
    en: str


class Sentiment(_Frozen):
    label: Literal["negative", "neutral", "positive"]
    score: float = Field(ge=-1.0, le=1.0, description="-1 very negative … +1 very positive")
    angry: bool


class Analysis(_Frozen):
    """The result of ``Analyzer.analyze``.

    ``intent`` is ``"unknown"`` whenever the analyzer is not confident, and ``confidence`` (the combined
    model and keyword score of ``intent``) is then 0; ``alternatives`` still lists the best three intents
    with their scores, best first, so a person can see what it hesitated between.
    """

    text: str = Field(description="the normalised text that was analysed (after truncation)")
    intent: str
    label: Label
    confidence: float = Field(ge=0.0, le=1.0)
    alternatives: list[IntentCandidate]
    unknown_reason: UnknownReason | None = None
    language: Language | None = Field(description="None when the text has no letters of either language")
    matched_keywords: list[KeywordMatch]
    entities: list[Entity]
    sentiment: Sentiment
    priority: Priority
    reasons: list[Reason]
    truncated: bool = Field(description="True when the input was longer than max_chars and was cut")
    original_length: int = Field(ge=0, description="length of the input in characters, before truncation")

    def entities_of(self, kind: EntityKind) -> list[Entity]:
        return [entity for entity in self.entities if entity.kind is kind]
